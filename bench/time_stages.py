"""What `make repro` costs, stage by stage: wall and CPU seconds of a from-scratch demo run.

Exports this working tree (or `--rev`) into a fresh git repo with an empty cover cache, then runs
`dvc repro --single-item STAGE` for each stage of dvc.yaml in order and prints, per stage, the wall
seconds and the CPU seconds of dvc and its children (CPU time is what a busy machine disturbs
least). The sum is what `make repro` costs with `.venv` in place, plus one dvc start-up per stage.

    python bench/time_stages.py --work /tmp/coverpop-time                  # the demo as shipped
    python bench/time_stages.py --work /tmp/coverpop-time --rev 2a2f75a    # an older revision
    python bench/time_stages.py --work /tmp/coverpop-time --set train.epochs=1 --set data.demo.n_albums=100
    python bench/time_stages.py --work /tmp/coverpop-time --smoke   # seconds: tiny data, first stages
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SKIP = ("data/", "models/", "metrics/")  # outputs: the copy builds its own


def export(rev: str | None, dest: Path, sets: dict) -> None:
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
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for dotted, value in sets.items():
        node, (*parents, leaf) = params, dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@coverpop"]
    for cmd in (["git", "init", "-q", "-b", "main"], [*git, "add", "-A"],
                [*git, "commit", "-qm", "export"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


SMOKE = {"data.demo.n_albums": 10, "select.n": 10}  # tiny data, and only the stages up to:
SMOKE_UNTIL = "select_tracks"


def time_stages(repo: Path, env: dict, until: str | None = None) -> list[tuple[str, float, float]]:
    rows = []
    for stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]:
        if rows and rows[-1][0] == until:
            break
        t0, c0 = time.perf_counter(), children_cpu()
        proc = subprocess.run(["dvc", "repro", "--single-item", stage], cwd=repo, env=env,
                              capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"dvc repro -s {stage} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        rows.append((stage, time.perf_counter() - t0, children_cpu() - c0))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (replaced)")
    ap.add_argument("--rev", help="git revision to time instead of the working tree")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a param (YAML value), e.g. train.epochs=1")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--smoke", action="store_true",
                    help=f"a check that this script works: tiny data, stages up to {SMOKE_UNTIL}")
    args = ap.parse_args()
    sets = {**(SMOKE if args.smoke else {}),
            **{k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}}
    repo, cache = args.work / "repo", args.work / "cache"
    export(args.rev, repo, sets)
    shutil.rmtree(cache, ignore_errors=True)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "COVERPOP_CACHE": str(cache), "DVC_NO_ANALYTICS": "1",
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "PYTHONPATH": str(repo / "src")}  # the exported code, not the venv's install
    rows = time_stages(repo, env, SMOKE_UNTIL if args.smoke else None)
    load = os.getloadavg()[0]
    print(f"{'stage':<15}{'wall s':>9}{'CPU s':>9}   (load average {load:.1f}, "
          f"{os.cpu_count()} CPUs)")
    for stage, wall, cpu in rows:
        print(f"{stage:<15}{wall:9.1f}{cpu:9.1f}")
    print(f"{'total':<15}{sum(r[1] for r in rows):9.1f}{sum(r[2] for r in rows):9.1f}")
    if args.json:
        args.json.write_text(json.dumps({"load": load, "rev": args.rev, "sets": sets, "stages": [
            {"stage": s, "wall_s": round(w, 2), "cpu_s": round(c, 2)} for s, w, c in rows]}, indent=1))


if __name__ == "__main__":
    main()
