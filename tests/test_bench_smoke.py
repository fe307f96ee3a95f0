"""Nothing in bench/ rots: every script runs in its smoke mode (seconds, tiny data) and uses the
library's public functions only. A new bench is covered by the glob, with nothing to register."""

import ast
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, built_once, env
from warm_python import WarmPython

from coverpop.core.lock import exclusive

pytestmark = pytest.mark.slow   # every bench starts its own processes: seconds each

BENCHES = sorted((ROOT / "bench").glob("*.py"))
# the ones that build a pipeline, a workspace or an S3 server first (tens of seconds)
SLOW = {"bench_noop_repro.py", "bench_real_covers.py", "bench_probe_variants.py",
        "team_remote.py"}
# these read bench_real_covers' tiny workspace: the first to run builds it in one shared --work,
# the others resume it (its stages are skipped when their outputs are there)
SHARED_WORK = {"bench_oof_features.py", "bench_probe_variants.py", "bench_real_covers.py"}
# run in their smoke mode by their own test, with more checks
OWN_TEST = {"time_stages.py": "tests/test_bench_time_stages.py"}


def private_uses(source: str) -> list[str]:
    """Names starting with `_` that a script imports from coverpop or reads off a coverpop
    module (`from coverpop.x import _f`, `loop._flag(...)`)."""
    tree = ast.parse(source)
    modules, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("coverpop"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{node.module}.{alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules |= {(a.asname or a.name).split(".")[0] for a in node.names
                        if a.name.startswith("coverpop")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in modules:
                found.append(f"{ast.unparse(node.value)}.{node.attr}")
    return found


def test_the_private_use_check_can_fail():
    code = ("from coverpop.train import loop as training\nfrom coverpop.core.params import _field\n"
            "import coverpop.core.cache\ntraining._flag(1, 2)\ncoverpop.core.cache._x\n"
            "from coverpop.train.loop import fit\nfit.__name__\n")
    assert sorted(private_uses(code)) == ["coverpop.core.cache._x", "coverpop.core.params._field",
                                          "training._flag"]


@pytest.mark.parametrize("script", BENCHES, ids=lambda p: p.name)
def test_benches_use_public_functions_only(script):
    assert private_uses(script.read_text()) == []


@pytest.fixture(scope="session")
def real_covers_work():
    """bench_real_covers' tiny workspace, built by its own smoke run once per session for every
    pytest-xdist worker (35 CPU s: the benches that read it ran on either worker and built it
    twice); each SHARED_WORK smoke then resumes it."""
    def build(folder: Path) -> None:
        (folder / "run").mkdir()
        run_smoke(ROOT / "bench" / "bench_real_covers.py", folder / "run", "--work",
                  str(folder / "work"))

    return built_once("bench-real-covers", build) / "work"


def smoke_env() -> dict:
    return {**env(), "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


@functools.cache
def warm_python() -> WarmPython:
    """This worker's warm Python (tests/warm_python.py), started on first use."""
    return WarmPython(smoke_env())


def run_smoke(script, tmp_path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    """`python bench/<script> --smoke ARGS` as a user runs it, in tmp_path (in a fork of a Python
    that has imported torch once: most of a torch bench's smoke was its imports); it must pass,
    leave nothing in its temp folder and write nothing into the repository."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    e = {**smoke_env(), "TMPDIR": str(tmp), "COVERPOP_CACHE": str(tmp_path / "cache"),
         **extra_env}
    out_dir = ROOT / "bench" / "out"
    before = sorted(out_dir.rglob("*")) if out_dir.exists() else []
    proc = warm_python().run(script, ["--smoke", *args], cwd=tmp_path, env=e, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp)) == [], "the bench left temp files behind"
    after = sorted(out_dir.rglob("*")) if out_dir.exists() else []
    assert after == before, "a smoke run wrote figures into the repository"
    return proc


@pytest.mark.parametrize("body, code, says", [
    ("import sys, tempfile, os\nprint(sys.argv[1:], os.environ['MARK'], tempfile.gettempdir())",
     0, None),
    ("raise ValueError('boom')", 1, "Traceback"),
    ("import sys\nsys.exit('stopped: no data')", 1, "stopped: no data"),
    ("import sys\nsys.exit(3)", 3, None)])
def test_the_warm_python_runs_a_script_as_python_would(body, code, says, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(body + "\n")
    (tmp_path / "t").mkdir()
    e = {**smoke_env(), "MARK": "x", "TMPDIR": str(tmp_path / "t")}
    got = warm_python().run(script, ["--smoke", "a b"], cwd=tmp_path, env=e, timeout=60)
    want = subprocess.run([sys.executable, str(script), "--smoke", "a b"], cwd=tmp_path, env=e,
                          text=True, capture_output=True)
    assert (got.returncode, got.stdout) == (want.returncode, want.stdout) == (code, want.stdout)
    if says:
        assert says in got.stderr and says in want.stderr
    if code == 0:
        assert got.stdout == f"['--smoke', 'a b'] x {tmp_path / 't'}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["script.py", "t"]


def test_every_bench_has_a_smoke_test():
    assert all((ROOT / test).is_file() for test in OWN_TEST.values())
    assert SHARED_WORK | set(OWN_TEST) <= {p.name for p in BENCHES}


@pytest.mark.parametrize("script", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW
                                    else p for p in BENCHES if p.name not in OWN_TEST],
                         ids=lambda p: p.name)
def test_every_bench_runs_in_its_smoke_mode(script, tmp_path, request):
    extra = {}
    if script.name in SHARED_WORK:
        work = request.getfixturevalue("real_covers_work")
        with exclusive(work.parent / "runs", "a bench reading the shared workspace", wait=True):
            run_smoke(script, tmp_path, "--work", str(work))   # one at a time: they write its cache
        return
    if script.name == "team_remote.py":   # the real S3 server of the S3 tests (CI's, or started)
        server = request.getfixturevalue("s3_server")
        extra = dict(COVERPOP_S3_ENDPOINT=server.endpoint, **server.credentials_env())
    run_smoke(script, tmp_path, **extra)
