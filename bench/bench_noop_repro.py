"""What the input tracking costs: a no-change `dvc repro` of the demo, before and after.

Builds two copies of the demo pipeline, one from a git revision without the `inputs` stage
(default: 46f6055, main before issue 10 landed) and one from this working tree, runs `dvc repro`
once in each to build, then times no-change `dvc repro` in the two alternately (so both see the
same machine load) and reports the medians: wall seconds and CPU seconds of dvc and its children.

    python bench/bench_noop_repro.py --work /tmp/bench-noop --rounds 7
    python bench/bench_noop_repro.py --smoke    # seconds: this tree only, a tiny demo up to
                                                # select_tracks, one round (does it still run?)

The demo runs with `train.epochs=1`: a no-change run reads no cover and trains nothing, so
fewer epochs only shorten the build.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from coverpop.core.params import defaults  # noqa: E402

BEFORE = "46f6055"
SKIP = ("data/", "models/", "metrics/")   # outputs: each copy builds its own
SETS = {("train", "epochs"): 1}
SMOKE_SETS = {("data", "demo", "n_albums"): 12, ("select", "n"): 20}


def export(rev: str | None, dest: Path, sets: dict = SETS) -> None:
    """The tracked files of `rev` (None: the working tree) into dest, as a fresh git repo."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    if rev:
        blob = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT,
                              capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(dest, members=[m for m in tar.getmembers()
                                          if not m.name.startswith(SKIP)], filter="data")
    else:
        names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                "--exclude-standard"], cwd=ROOT, capture_output=True,
                               check=True).stdout.decode().split("\0")
        for name in filter(None, names):
            if (ROOT / name).is_file() and not name.startswith(SKIP):
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, dest / name)
    (dest / "dvc.lock").unlink(missing_ok=True)
    # rev's own params.yaml; for the working tree the defaults (never an experiment's leftovers)
    params = yaml.safe_load((dest / "params.yaml").read_text()) if rev else defaults()
    for *parents, key in sets:
        node = params
        for part in parents:
            node = node[part]
        node[key] = sets[(*parents, key)]
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@coverpop"]
    for cmd in (["git", "init", "-q", "-b", "main"], [*git, "add", "-A"],
                [*git, "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)


def repro(repo: Path, env: dict, targets: tuple = ()) -> tuple[float, float, str]:
    """(wall s, CPU s, stdout) of one `dvc repro` in repo."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro", *targets], cwd=repo,
                          env={**env, "PYTHONPATH": str(repo / "src")},  # each copy's own code
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"dvc repro failed in {repo}:\n{proc.stdout}\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=BEFORE, help="git revision without the inputs stage")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-noop"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--smoke", action="store_true", help="seconds: does it still run?")
    args = ap.parse_args()
    if not args.smoke:
        return measure(args, ("before", "after"), SETS, ())
    args.rounds = 1
    with tempfile.TemporaryDirectory(prefix="coverpop-bench-noop-") as work:
        args.work = Path(work)
        measure(args, ("after",), {**SETS, **SMOKE_SETS}, ("select_tracks",))


def measure(args, names: tuple[str, ...], sets: dict, targets: tuple[str, ...]) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "COVERPOP_CACHE": str(args.work / "cache")}
    repos = {name: args.work / name for name in names}
    for name, repo in repos.items():
        if not (repo / "dvc.lock").is_file():
            export(args.before if name == "before" else None, repo, sets)
            t0 = time.perf_counter()
            repro(repo, env, targets)
            print(f"{name}: built in {time.perf_counter() - t0:.0f} s", flush=True)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in repos}
    for _ in range(args.rounds):
        for name, repo in repos.items():
            wall, cpu, out = repro(repo, env, targets)
            ran = [line for line in out.splitlines() if line.startswith("Running stage")]
            times[name].append((wall, cpu))
            print(f"{name}: {wall:.2f} s wall, {cpu:.2f} s CPU; ran: {ran or 'nothing'}",
                  flush=True)
    med = {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
           for name, t in times.items()}
    print(f"\nno-change dvc repro, median of {args.rounds} (load average now "
          f"{os.getloadavg()[0]:.1f}):")
    for name, (wall, cpu) in med.items():
        print(f"  {name:6}  {wall:6.2f} s wall  {cpu:6.2f} s CPU")
    if "before" in med:
        print(f"  added   {med['after'][0] - med['before'][0]:+6.2f} s wall  "
              f"{med['after'][1] - med['before'][1]:+6.2f} s CPU")


if __name__ == "__main__":
    main()
