"""What `make repro` costs, stage by stage: wall and CPU seconds of a from-scratch demo run.

Exports this working tree (or `--rev`) into a fresh git repo with an empty cover cache, then runs
`dvc repro --single-item STAGE` for each stage of dvc.yaml in order and prints, per stage, the wall
seconds and the CPU seconds of dvc and its children (CPU time is what a busy machine disturbs
least). The sum is what `make repro` costs with `.venv` in place, plus one dvc start-up per stage.
The params: `--rev`'s own params.yaml, or for the working tree the schema's defaults (never the
workspace's params.yaml, which an experiment may have changed), then the `--set`s.

    python bench/time_stages.py --work /tmp/coverpop-time                  # the demo as shipped
    python bench/time_stages.py --work /tmp/coverpop-time --rev 2a2f75a    # an older revision
    python bench/time_stages.py --work /tmp/coverpop-time --set train.epochs=1 --set data.demo.n_albums=100
    python bench/time_stages.py --smoke   # seconds: tiny data, first stages, a temporary --work
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the export of bench_noop_repro: rev's params.yaml, or for the working tree the schema's defaults
from bench_noop_repro import export  # noqa: E402


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
    ap.add_argument("--work", type=Path,
                    help="scratch folder (replaced); required unless --smoke (then a temporary one)")
    ap.add_argument("--rev", help="git revision to time instead of the working tree")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a param (YAML value), e.g. train.epochs=1")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--smoke", action="store_true",
                    help=f"a check that this script works: tiny data, stages up to {SMOKE_UNTIL}")
    args = ap.parse_args()
    if args.work is None and not args.smoke:
        ap.error("--work is required unless --smoke")
    if args.work is not None:
        return measure(args)
    with tempfile.TemporaryDirectory(prefix="coverpop-time-stages-") as work:
        args.work = Path(work)
        measure(args)


def measure(args) -> None:
    sets = {**(SMOKE if args.smoke else {}),
            **{k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}}
    repo, cache = args.work / "repo", args.work / "cache"
    export(args.rev, repo, {tuple(k.split(".")): v for k, v in sets.items()})
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
