"""Shared test helpers: a temp copy of the repo with tiny params, and subprocess runners."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# s3_server / s3_bucket: a real S3 server (Swift + s3api) on 127.0.0.1, see tests/s3/.
pytest_plugins = ["s3.plugin"]

# Nothing may reach the internet from tests: no hub weights, no DVC update check or analytics.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["DVC_NO_ANALYTICS"] = "1"

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv running pytest: dvc and python live here

# About 200 covers at 32 px and 2 epochs: every stage runs, in well under a minute.
TINY_PARAMS = {
    "model": "resnet10t",
    "image_size": 32,
    "data.demo.n_albums": 140,
    "select.n": 200,
    "scrape.workers": 2,
    "train.epochs": 2,
    "train.batch_size": 32,
    "evaluate.bootstrap": 50,
    "evaluate.gallery": 4,
}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs the real pipeline (tens of seconds)")


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download in tests
    e["DVC_NO_ANALYTICS"] = "1"
    return e


def run(cmd: list[str] | str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command the way a user would (shell words, the venv first on PATH)."""
    proc = subprocess.run(cmd, cwd=cwd, env=env(), text=True, capture_output=True,
                          shell=isinstance(cmd, str))
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def set_params(repo: Path, updates: dict) -> None:
    """Set dotted keys in repo/params.yaml (e.g. {"train.epochs": 1})."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in updates.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def write_params(folder: Path, params: dict) -> Path:
    """folder/params.yaml: this checkout's params.yaml with `params` (nested sections) merged over
    it. Stages need a complete file: the params schema reports a missing key."""
    def merge(base: dict, new: dict) -> dict:
        return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict)
                           else v for k, v in new.items()}}

    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(merge(yaml.safe_load((ROOT / "params.yaml").read_text()), params),
                                   sort_keys=False))
    return path


def make_repo_copy(dest: Path, params: dict | None = None) -> Path:
    """A fresh git + DVC repo holding this checkout's tracked files (as in the working tree),
    with tiny params: what a newcomer's clone looks like, minus the wait."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not name.startswith(("data/", "models/", "metrics/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / "dvc.lock").unlink(missing_ok=True)
    set_params(dest, {**TINY_PARAMS, **(params or {})})
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], dest)
    return dest


@pytest.fixture
def fake():
    """The local stand-in for Spotify (API, accounts, oEmbed, image CDN) on 127.0.0.1."""
    from fakes.spotify_server import FakeSpotify

    with FakeSpotify() as f:
        yield f


@pytest.fixture
def tiny_repo(tmp_path) -> Path:
    return make_repo_copy(tmp_path / "repo")


@pytest.fixture(scope="session")
def built_pristine(tmp_path_factory) -> Path:
    """The tiny demo after one `dvc repro` from scratch (fresh repo, empty cover cache): built once
    per session and never changed; tests take copies (built_repo, copy_built)."""
    root = tmp_path_factory.mktemp("pristine")
    repo = make_repo_copy(root / "repo")
    run(["env", f"COVERPOP_CACHE={root / 'cache'}", "dvc", "repro"], repo)
    return repo


@pytest.fixture(scope="session")
def built_repo(built_pristine, tmp_path_factory) -> Path:
    """One tiny repo after a full `dvc repro`, shared by tests that read its outputs."""
    return copy_built(built_pristine, tmp_path_factory.mktemp("built") / "repo")


def copy_built(pristine: Path, dest: Path) -> Path:
    """A private copy of the built tiny repo (git, DVC cache, run-cache, outputs): what the
    repo looks like right after a user's first `dvc repro`, without paying for it again."""
    shutil.copytree(pristine, dest, symlinks=True)
    return dest
