"""Shared test helpers: a temp copy of the repo with tiny params, and subprocess runners.

Tests never depend on the workspace: params come from the schema's defaults (core/schema.py),
never from the workspace's params.yaml (`dvc exp run -S` rewrites it), and the user's environment
is scrubbed before any test runs (tests/session_env.py). The run fails if it leaves anything in
its temp folder.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import session_env
import yaml

from coverpop.core.params import defaults

# Before anything reads it: the user's environment out, this session's temp, cache and DVC
# config folders in, and nothing may reach the internet (no hub weights, no DVC analytics).
session_env.isolate()

# s3_server / s3_bucket: a real S3 server (Swift + s3api) on 127.0.0.1, see tests/s3/.
pytest_plugins = ["s3.plugin"]

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


def pytest_sessionfinish(session, exitstatus):
    """After every fixture's teardown: the suite's temp folders must be empty again (under xdist
    the controller checks every worker's, after they have all finished)."""
    if session_env.is_worker():
        return
    left = session_env.leftovers()
    if left:
        line = (f"error: the tests left {len(left)} entries in their temp folder: "
                f"{', '.join(left[:10])} (every test and fixture must remove what it makes)")
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.ensure_newline()
            reporter.write_line(line, red=True, bold=True)
        else:
            print(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    session_env.finish()


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
    """folder/params.yaml: the schema's defaults with `params` (nested sections) merged over
    them. Stages need a complete file: the params schema reports a missing key."""
    def merge(base: dict, new: dict) -> dict:
        return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict)
                           else v for k, v in new.items()}}

    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(merge(defaults(), params), sort_keys=False))
    return path


def make_repo_copy(dest: Path, params: dict | None = None) -> Path:
    """A fresh git + DVC repo holding this checkout's tracked files (as in the working tree),
    with the schema's default params made tiny (never the workspace's params.yaml, which the
    user's experiments rewrite): what a newcomer's clone looks like, minus the wait."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not name.startswith(("data/", "models/", "metrics/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / "dvc.lock").unlink(missing_ok=True)
    (dest / "params.yaml").write_text(yaml.safe_dump(defaults(), sort_keys=False))
    set_params(dest, {**TINY_PARAMS, **(params or {})})
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], dest)
    return dest


@pytest.fixture
def refused_port():
    """A port on 127.0.0.1 that refuses connections, deterministically: the socket stays bound
    (without listening) for the whole test, so no other process can take the port meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def fake():
    """The local stand-in for Spotify (API, accounts, oEmbed, image CDN) on 127.0.0.1."""
    from fakes.spotify_server import FakeSpotify

    with FakeSpotify() as f:
        yield f


@pytest.fixture
def tiny_repo(tmp_path) -> Path:
    return make_repo_copy(tmp_path / "repo")


def built_once(name: str, build) -> Path:
    """`build(folder)` once per test session, for every pytest-xdist worker: the first worker to
    ask builds it under a lock, the others wait for it and reuse it (a tiny pipeline from scratch
    costs ~40 CPU s: per worker, that was the suite's largest repeated cost). What is built is
    never changed; tests take copies."""
    from coverpop.core.lock import exclusive

    folder = session_env.shared() / name
    done = folder.parent / f"{name}.done"
    with exclusive(folder, f"{name} build", wait=True):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)   # a failed build's remains: from scratch
            folder.mkdir(parents=True)
            build(folder)
            done.touch()
    return folder


def build_tiny_demo(root: Path, params: dict | None = None) -> Path:
    """root/repo: the tiny demo after one `dvc repro` from scratch, with root/cache as its
    empty cover cache."""
    repo = make_repo_copy(root / "repo", params)
    run(["env", f"COVERPOP_CACHE={root / 'cache'}", "dvc", "repro"], repo)
    return repo


@pytest.fixture(scope="session")
def built_pristine() -> Path:
    """The tiny demo after one `dvc repro` from scratch (fresh repo, empty cover cache): built once
    per session and never changed; tests take copies (built_repo, copy_built)."""
    return built_once("pristine", build_tiny_demo) / "repo"


@pytest.fixture(scope="session")
def built_again() -> Path:
    """The tiny demo built a second time from scratch, in another folder with another empty
    cover cache, scraped with another worker count (8): what built_pristine must equal byte for
    byte (test_reproducible, test_scrape_pipeline). Never changed; copy it to change it."""
    assert TINY_PARAMS["scrape.workers"] != 8
    return built_once("again", lambda root: build_tiny_demo(root, {"scrape.workers": 8})) / "repo"


@pytest.fixture(scope="session")
def built_repo(built_pristine, tmp_path_factory) -> Path:
    """One tiny repo after a full `dvc repro`, shared by tests that read its outputs."""
    return copy_built(built_pristine, tmp_path_factory.mktemp("built") / "repo")


# The one grid the session queues on the built demo, as the README tells a user to run a sweep
# (`dvc exp run --queue -S model=a,b`, `dvc queue start`). Its first point is the commit's own
# config (restored from the run-cache, not trained again), its second EXPERIMENT, another model.
# Read by test_sweep (both ran through the queue), test_pipeline (`dvc exp show` with another
# model), test_plots_page (`dvc plots diff` of two runs), test_team_workflow (the author shares
# EXPERIMENT: the run-cache holds it). DVC names a named grid's points NAME-1, NAME-2, in order.
SWEEP = {"name": "sweep", "model": [TINY_PARAMS["model"], "mobilenetv3_small_050"]}
SWEEP_SET = ["-S", f"model={','.join(SWEEP['model'])}"]
EXPERIMENT = {"name": f"{SWEEP['name']}-2", "model": SWEEP["model"][1]}
EXPERIMENT_SET = ["-S", f"model={EXPERIMENT['model']}"]


def run_queue(repo: Path, names: list[str], timeout: float = 600) -> str:
    """`dvc queue start --jobs 1` (as the README tells a user) until the experiments `names`
    exist, then `dvc queue stop`; returns `dvc queue status`. Without the stop, DVC's idle worker
    waits for its next look at the queue (every 10 s) before it exits, and `dvc queue start`
    returns only then (the worker holds its output pipes)."""
    def finished() -> bool:   # each finished point is a git ref: a cheap look (a dvc start is not)
        refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], repo).stdout
        done = {ref.rsplit("/", 1)[1] for ref in refs.split()
                if not ref.startswith(("refs/exps/celery/", "refs/exps/exec/"))}
        return set(names) <= done

    deadline, look = time.time() + timeout, time.time() + 20
    with subprocess.Popen(["dvc", "queue", "start", "--jobs", "1"], cwd=repo, env=env(),
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as start:
        try:
            while not finished():
                if time.time() > look:   # a failed point makes no ref: ask DVC now and then
                    look = time.time() + 20
                    if "Failed" in run(["dvc", "queue", "status"], repo).stdout:
                        break
                if time.time() > deadline:
                    raise AssertionError(f"the queue did not finish {names} in {timeout:.0f} s:\n"
                                         + run(["dvc", "queue", "status"], repo).stdout)
                time.sleep(1)
            run(["dvc", "queue", "stop"], repo)   # graceful: a point still finishing finishes
            start.communicate(timeout=120)
        finally:
            if start.poll() is None:
                run(["dvc", "queue", "stop", "--kill"], repo, check=False)
                start.kill()
    return run(["dvc", "queue", "status"], repo).stdout


def exp_points(show: list) -> dict:
    """`dvc exp show --json` as {name (a commit's: its branch): (model, train metrics)}."""
    found = {}
    for row in show:
        if row["rev"] == "workspace":
            continue
        for rev in [row] + [r for exp in row.get("experiments") or [] for r in exp["revs"]]:
            data = rev["data"]
            found[rev["name"]] = (data["params"]["params.yaml"]["data"]["model"],
                                  data["metrics"]["metrics/train/metrics.json"]["data"])
    return found


@pytest.fixture(scope="session")
def built_with_experiment(built_pristine) -> Path:
    """A copy of the built tiny demo, committed on `main`, after the session's queued grid
    (SWEEP: the commit's model and another) ran through `dvc queue start`; the workspace is still
    `main`'s. Built once per session, never changed; tests that change it take a copy."""
    def build(root: Path) -> None:
        repo = copy_built(built_pristine, root / "repo")
        run("git add -A && git -c user.name=t -c user.email=t@t commit -qm built", repo)
        run(["dvc", "exp", "run", "--queue", "-n", SWEEP["name"], *SWEEP_SET], repo)
        queued = run(["dvc", "queue", "status"], repo).stdout
        assert queued.count("Queued") == len(SWEEP["model"]), queued
        status = run_queue(repo, [f"{SWEEP['name']}-{i + 1}" for i in range(len(SWEEP["model"]))])
        assert "Failed" not in status and status.count("Success") == len(SWEEP["model"]), status

    return built_once("experimented", build) / "repo"


def copy_built(pristine: Path, dest: Path) -> Path:
    """A private copy of the built tiny repo (git, DVC cache, run-cache, outputs): what the
    repo looks like right after a user's first `dvc repro`, without paying for it again."""
    shutil.copytree(pristine, dest, symlinks=True)
    return dest


def pack_covers(store: Path, files: dict) -> dict:
    """A cover store (covers/store.py) at `store` holding these files (cover id -> path), as the
    scrape leaves it; returns cover id -> sha256."""
    import hashlib

    from coverpop.covers.store import pack

    shas = {c: hashlib.sha256(Path(p).read_bytes()).hexdigest() for c, p in files.items()}
    pack(store, shas, lambda c: Path(files[c]).read_bytes())
    return shas
