"""The team workflow of the README ("Working with teammates"), on the demo pipeline, against a real S3 server.

An author runs the pipeline and an experiment and shares them (S3 bucket + a bare git repo);
a teammate clones, pulls, finds nothing to re-run, and restores the author's experiment from
the run-cache instead of training. What a bad credential or a missing bucket does (a clear error,
nothing local lost) is tests/test_remote.py's, on a toy repo: the same dvc and coverpop commands.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import BIN, EXPERIMENT_SET, copy_built, exp_points
from s3.dvc_cli import run
from s3.plugin import isolated_env

pytestmark = pytest.mark.slow

COVERPOP = [sys.executable, "-m", "coverpop.remote"]
NAME = "shared-try"   # the author's experiment on the commit that names the team's bucket


def user_env(**extra: str) -> dict[str, str]:
    """A user's shell: the venv first on PATH, offline, and no AWS credentials unless given."""
    env = isolated_env(HF_HUB_OFFLINE="1", **extra)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def share(repo: Path, env: dict) -> None:
    """`make push`: the workspace's data, the run-cache records, and the outputs they name."""
    run(["dvc", "push", "--run-cache"], repo, env)
    out = run(COVERPOP + ["push-run-cache"], repo, env).stdout
    assert out.startswith("run-cache: "), out


def clone(origin: Path, dest: Path, env: dict, key: str, secret: str) -> Path:
    run(["git", "clone", "-q", str(origin), str(dest)], dest.parent, env)
    run(["git", "config", "user.name", "teammate"], dest, env)
    run(["git", "config", "user.email", "teammate@coverpop.invalid"], dest, env)
    run(["dvc", "remote", "modify", "--local", "storage", "access_key_id", key], dest, env)
    run(["dvc", "remote", "modify", "--local", "storage", "secret_access_key", secret], dest, env)
    return dest


def poisoned_torch(folder: Path) -> str:
    """A PYTHONPATH entry whose `torch` cannot be imported: any stage that trains, evaluates
    or even loads the model fails loudly, whatever the clock says."""
    (folder / "torch").mkdir(parents=True)
    (folder / "torch" / "__init__.py").write_text(
        "raise ImportError('torch imported: a stage ran instead of being restored')\n")
    return str(folder)


def stages_run(output: str) -> list[str]:
    """The stages `dvc repro` / `dvc exp run` really ran. `inputs` always runs, by design: it
    looks at the files outside the repo (cheaply) so that the rest re-runs only when they change."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def exp_metrics(repo: Path, env: dict, name: str) -> dict:
    """The train metrics `dvc exp show` reports for experiment `name` (from git alone)."""
    found = exp_points(json.loads(run(["dvc", "exp", "show", "--json"], repo, env).stdout))
    if name not in found:
        raise AssertionError(f"experiment {name} not in dvc exp show")
    return found[name][1]


def test_teammate_pulls_and_restores_instead_of_rerunning(s3_bucket, built_with_experiment,
                                                          tmp_path):
    server = s3_bucket.server
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path, user_env())

    # 1. Author: the team's bucket in .dvc/config (committed), credentials from the env.
    author_env = user_env(**server.credentials_env())
    # a clone after `dvc repro` and one experiment (conftest.EXPERIMENT): its run is in the
    # author's run-cache, so here it is restored, not trained again (training is not the point)
    author = copy_built(built_with_experiment, tmp_path / "author")
    run(["git", "config", "user.name", "author"], author, author_env)
    run(["git", "config", "user.email", "author@coverpop.invalid"], author, author_env)
    run(["dvc", "remote", "modify", "storage", "url", s3_bucket.url()], author, author_env)
    run(["dvc", "remote", "modify", "storage", "endpointurl", server.endpoint], author,
        author_env)
    assert stages_run(run(["dvc", "repro"], author, author_env).stdout) == ["inputs"]
    run(["git", "add", "-A"], author, author_env)
    run(["git", "commit", "-qm", "team remote"], author, author_env)
    run(["git", "remote", "add", "origin", str(origin)], author, author_env)
    run(["git", "push", "-q", "origin", "main"], author, author_env)
    share(author, author_env)
    run(["dvc", "exp", "run", "-n", NAME, *EXPERIMENT_SET], author, author_env)
    run(["dvc", "exp", "push", "origin", NAME], author, author_env)
    share(author, author_env)
    authored = json.loads((author / "metrics/train/metrics.json").read_text())
    assert any(k.startswith("dvcstore/runs/") for k in s3_bucket.keys())

    # 2. Teammate: fresh clone, credentials only in .dvc/config.local; pull; nothing to re-run.
    env = user_env()
    mate = clone(origin, tmp_path / "teammate", env, server.access_key, server.secret_key)
    assert server.secret_key not in run(["git", "show", "HEAD:.dvc/config"], mate, env).stdout
    assert "reachable" in run(COVERPOP + ["check"], mate, env).stdout
    run(["dvc", "pull", "--run-cache"], mate, env)
    status = run(["dvc", "status"], mate, env).stdout
    assert status.split() == ["inputs:", "always", "changed"], status   # and nothing else
    repro = run(["dvc", "repro"], mate, env).stdout
    assert stages_run(repro) == ["inputs"], repro
    for stage in ("scrape_images", "train", "evaluate"):
        assert f"Stage '{stage}' didn't change, skipping" in repro, repro

    # The author's experiment comes through git alone: metrics before any of its data.
    assert NAME in run(["dvc", "exp", "list", "origin"], mate, env).stdout
    run(["dvc", "exp", "pull", "--no-cache", "origin", NAME], mate, env)
    assert exp_metrics(mate, env, NAME) == authored

    # 3. The same params again: restored from the run-cache; with torch unimportable, any
    # stage that really ran would have failed.
    before_runs = set((mate / ".dvc/cache/runs").rglob("*"))
    poisoned = user_env(PYTHONPATH=os.pathsep.join(
        [poisoned_torch(tmp_path / "poison"), os.environ.get("PYTHONPATH", "")]))
    done = run(["dvc", "exp", "run", "--pull", *EXPERIMENT_SET], mate, poisoned, check=False)
    assert done.returncode == 0, (
        "the teammate's exp run did not restore from the run-cache (a stage with a "
        "`cache: false` out under `outs:` gets no run-cache; see the README, 'Working with teammates'):\n" + done.stdout)
    assert stages_run(done.stdout) == ["inputs"], done.stdout
    for stage in ("train", "evaluate"):
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in done.stdout
    assert json.loads((mate / "metrics/train/metrics.json").read_text()) == authored
    assert set((mate / ".dvc/cache/runs").rglob("*")) == before_runs   # no new run recorded
