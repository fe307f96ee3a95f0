"""DVC against a real S3 server (Swift + s3api on 127.0.0.1), on a toy repo: the remote config,
push/pull with env or --local credentials, and the errors a wrong credential or a missing bucket
give. The round trip itself (run-cache sharing, exp push/pull through a bare git remote, a
teammate's clone restoring instead of re-running) is tests/test_team_workflow.py's, on the demo
pipeline: the same dvc and coverpop commands."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from s3.dvc_cli import run, snapshot
from s3.plugin import isolated_env

REPO = Path(__file__).resolve().parents[1]

# A one-stage pipeline whose stage appends to $MARKER each time it really executes.
SQUARE = """\
import json, os, sys
x = int(open("params.yaml").read().split(":")[1])
json.dump({"y": x * x}, open("metrics.json", "w"))
open("out.bin", "wb").write(os.urandom(64) + bytes([x]))
open(os.environ["MARKER"], "a").write(f"x={x}\\n")
"""
DVC_YAML = """\
stages:
  square:
    cmd: python square.py
    deps: [square.py]
    params: [x]
    outs: [out.bin]
    metrics:
      # In git, so `dvc exp show` works before any pull. Stage-level, not under `outs:`:
      # dvc keeps no run-cache for a stage with a `cache: false` out (unless metric/plot).
      - metrics.json:
          cache: false
"""


def test_repo_declares_default_s3_remote_without_credentials():
    env = isolated_env()
    def config(key):   # .dvc/config alone: what every clone gets
        return run(["dvc", "config", "--project", key], REPO, env).stdout.strip()

    assert config("core.remote") == "storage"
    url = config("remote.storage.url")
    assert url.startswith("s3://"), url
    committed = (REPO / ".dvc" / "config").read_text()
    for secret in ("access_key_id", "secret_access_key", "session_token"):
        assert secret not in committed


def _toy_repo(path: Path, env: dict, bucket=None) -> Path:
    """The toy pipeline after one `dvc repro`; with `bucket`, its remote set by dvc's own
    commands and all committed."""
    path.mkdir()
    run(["git", "init", "-q", "-b", "main"], path, env)
    _git_identity(path, env)
    run(["dvc", "init", "-q"], path, env)
    (path / "square.py").write_text(SQUARE)
    (path / "dvc.yaml").write_text(DVC_YAML)
    (path / "params.yaml").write_text("x: 1\n")
    (path / ".gitignore").write_text("/marker*\n")
    if bucket is not None:
        run(["dvc", "remote", "add", "-d", "storage", bucket.url()], path, env)
        run(["dvc", "remote", "modify", "storage", "endpointurl", bucket.server.endpoint],
            path, env)
    run(["dvc", "repro", "-q"], path, env)
    if bucket is not None:
        run(["git", "add", "-A"], path, env)
        run(["git", "commit", "-qm", "toy pipeline"], path, env)
    return path


@pytest.fixture(scope="module")
def toy_built(tmp_path_factory) -> Path:
    """The toy repo after `dvc init` and one `dvc repro`, no remote yet, uncommitted: the fault
    cases take copies (every dvc start costs a second)."""
    root = tmp_path_factory.mktemp("toy")
    return _toy_repo(root / "repo", isolated_env(MARKER=str(root / "marker")))


def _remote_config(repo: Path, name: str, keys: dict, default: bool = False) -> None:
    """Append remote 'storage' settings to .dvc/<name> (config or config.local), as
    `dvc remote add/modify [--local]` writes them: test_team_workflow runs those commands;
    here each would only cost a dvc start."""
    lines = "".join(f"    {k} = {v}\n" for k, v in keys.items())
    with (repo / ".dvc" / name).open("a") as f:
        f.write(("[core]\n    remote = storage\n" if default else "") +
                f"['remote \"storage\"']\n{lines}")


def _git_identity(repo: Path, env: dict) -> None:
    # dvc exp run commits through its own git library: give it a repo-local identity.
    run(["git", "config", "user.name", "coverpop test"], repo, env)
    run(["git", "config", "user.email", "test@coverpop.invalid"], repo, env)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["wrong secret", "wrong user", "missing bucket"])
def test_remote_faults_fail_clearly_and_keep_local_data(fault, s3_bucket, toy_built, tmp_path):
    env = isolated_env(MARKER=str(tmp_path / "marker"))
    author = tmp_path / "author"
    shutil.copytree(toy_built, author, symlinks=True)
    _remote_config(author, "config", {"url": s3_bucket.url(),
                                      "endpointurl": s3_bucket.server.endpoint}, default=True)
    run(["git", "add", "-A"], author, env)
    run(["git", "commit", "-qm", "toy pipeline"], author, env)
    mate = tmp_path / "teammate"          # a fresh clone: nothing pulled yet
    run(["git", "clone", "-q", str(author), str(mate)], tmp_path, env)
    key, secret = s3_bucket.server.access_key, s3_bucket.server.secret_key
    for repo in (author, mate):
        if fault == "wrong secret":
            local = {"access_key_id": key, "secret_access_key": "not-the-secret"}
        elif fault == "wrong user":
            local = {"access_key_id": "test:nobody", "secret_access_key": secret}
        else:
            local = {"access_key_id": key, "secret_access_key": secret,
                     "url": "s3://coverpop-no-such-bucket/dvcstore"}
        _remote_config(repo, "config.local", local)
    expected = (["(403)", "Forbidden"] if fault.startswith("wrong")
                else ["NoSuchBucket", "The specified bucket does not exist"])

    coverpop = [sys.executable, "-m", "coverpop.remote"]
    clear = (["error: remote 'storage' (", "access denied"] if fault.startswith("wrong")
             else ["error: remote 'storage' (", "bucket 'coverpop-no-such-bucket' does not exist"])
    # `make push` is `dvc push --run-cache`: one fault runs that, the others a plain push
    push = ["dvc", "push", "--run-cache"] if fault == "wrong secret" else ["dvc", "push"]
    for repo, cmd, says in ((author, push, expected),
                            (author, coverpop + ["push-run-cache"], ["error: remote 'storage'"]),
                            (author, coverpop + ["check"], clear),
                            (mate, coverpop + ["check"], clear),
                            # dvc's own pull is clear about credentials, not about the bucket:
                            (mate, ["dvc", "pull"], expected if fault.startswith("wrong") else
                             ["do not exist neither locally nor on remote"])):
        before = snapshot(repo)
        done = run(cmd, repo, env, check=False)
        assert done.returncode != 0, done.stdout
        assert all(text in done.stdout for text in says), done.stdout
        assert snapshot(repo) == before, f"{' '.join(cmd)} changed local files"
    assert s3_bucket.keys() == []
