"""Scale: the real stages on N synthetic covers, per stage wall, CPU, peak RSS and growth with N.

For each N: N synthetic covers written as a `local` source (a share --near of them re-encoded,
resized, slightly brightened copies of another cover, so dedupe has real work), a scratch copy of
this checkout with a cheap recipe (frozen tf_efficientnet_lite0 with its packaged weights, ridge
head, no augmentation, no blank baseline, covers stored and fed at --size px), then each stage's
`cmd` from dvc.yaml in pipeline order: inputs -> fetch_csv -> select_tracks -> scrape_images ->
dedupe_split -> train -> evaluate.

    nice -n 10 python bench/bench_scale.py 10000 30000         # the issue's sizes (minutes each)
    nice -n 10 python bench/bench_scale.py 100000 --size 128   # the train stage at 128 px
    python bench/bench_scale.py --smoke                        # 200 covers at 32 px: checks it runs

Per stage: wall time, CPU time (user + sys of the stage's process tree, from wait4: less
disturbed by other users of a shared machine than wall time) and peak RSS (its largest process).
Between consecutive sizes the growth exponent log(t2/t1) / log(N2/N1) of CPU time (1 = linear;
wall in parentheses). Caches ($COVERPOP_CACHE, TMPDIR) are per run and cold: every stage does its
whole work. The stages run as their commands, not through `dvc repro`, so DVC's own hashing of
outputs is not in these numbers (docs/speed.md measures that).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from bench_noop_repro import export  # noqa: E402  (the same copy of the checkout)

REPO = Path(__file__).resolve().parents[1]
STAGES = ["inputs", "fetch_csv", "select_tracks", "scrape_images", "dedupe_split", "train",
          "evaluate"]
SMOKE_SIZES = [80]   # one small size: the whole chain runs (no exponent from one size)
SMOKE_SETS = {"evaluate.bootstrap": 20, "evaluate.cv_folds": 2, "scrape.workers": 2}


def make_covers(folder: Path, n: int, size: int, near: float, seed: int = 0) -> Path:
    """n covers as JPEG files plus the `local` source's CSV (track_id, popularity, image).
    Originals are smooth random 8x8 colour fields (distinct perceptual hashes); near copies are
    another cover re-encoded at lower quality, resized and brightened a little (within the
    dedupe threshold). Popularity follows brightness, plus noise: something to learn."""
    images = folder / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n_near = int(round(n * near))
    n_orig = n - n_near
    fields = rng.integers(0, 256, (n_orig, 8, 8, 3), dtype=np.uint8)
    source = np.r_[np.arange(n_orig), rng.integers(0, n_orig, n_near)]
    rows = []
    for i, j in enumerate(source):
        img = Image.fromarray(fields[j]).resize((size, size), Image.BICUBIC)
        quality = 92
        if i >= n_orig:   # a near copy of cover j
            small = max(8, size * 4 // 5)
            img = img.resize((small, small), Image.BILINEAR).point(lambda v: min(255, v + 6))
            quality = 60
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        name = f"c{i:07d}.jpg"
        (images / name).write_bytes(buf.getvalue())
        level = fields[j].mean() / 2.55
        rows.append({"track_id": f"t{i:07d}", "image": name,
                     "popularity": int(np.clip(round(level + rng.normal(0, 15)), 0, 100))})
    csv = folder / "tracks.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def scratch_repo(dest: Path, params: dict) -> Path:
    """This checkout's tracked files (as in the working tree, no data or outputs) as a fresh git
    repo, with the schema's defaults and `params` (dotted keys) as its params.yaml."""
    export(None, dest, {tuple(k.split(".")): v for k, v in params.items()})
    return dest


def stage_commands(repo: Path) -> dict[str, str]:
    """Each stage's cmd from dvc.yaml with ${paths.*} filled in (the only vars it uses)."""
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    paths = {k: v for entry in spec.get("vars", []) for k, v in entry.get("paths", {}).items()}
    out = {}
    for name, stage in spec["stages"].items():
        out[name] = re.sub(r"\$\{paths\.(\w+)\}", lambda m: str(paths[m.group(1)]), stage["cmd"])
    return out


def run_measured(cmd: str, cwd: Path, env: dict) -> dict:
    """Wall, CPU (user + sys of the process and its waited-for children) and peak RSS."""
    argv = cmd.split()
    if argv[0] == "python":
        argv[0] = sys.executable
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = out.decode(errors="replace")[-3000:]
        raise SystemExit(f"bench_scale: `{cmd}` failed ({proc.returncode}):\n{tail}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024,
            "last_line": out.decode(errors="replace").strip().splitlines()[-1:] or [""]}


def recipe(n: int, size: int, source: Path) -> dict:
    return {
        "model": "tf_efficientnet_lite0", "pretrained": "package", "normalization": "model",
        "image_size": size, "seed": 0,
        "data.source": "local", "data.local.csv": str(source / "tracks.csv"),
        "data.local.images": str(source / "images"),
        "select.n": n, "select.strategy": "random",
        "scrape.size": size, "scrape.min_source_px": 0, "scrape.workers": 4,
        "train.freeze_backbone": True, "train.head": "ridge", "train.augment": False,
        "train.blank_baseline": False,
        "evaluate.bootstrap": 200, "evaluate.gallery": 4,
    }


def bench_one(n: int, args, root: Path) -> dict:
    source = root / f"source-{n}"
    t0 = time.perf_counter()
    make_covers(source, n, args.size, args.near, seed=args.seed)
    made = time.perf_counter() - t0
    sets = {**recipe(n, args.size, source), **(SMOKE_SETS if args.smoke else {})}
    repo = scratch_repo(root / f"repo-{n}", sets)
    for folder in ("cache", "tmp"):
        (repo / folder).mkdir()
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "COVERPOP_CACHE": str(repo / "cache"),
           "TMPDIR": str(repo / "tmp"), "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    commands = stage_commands(repo)
    result = {"n": n, "make_covers_s": made, "stages": {}}
    print(f"N={n}: {n} covers made in {made:.1f} s ({args.near:.0%} near copies), "
          f"{args.size} px; load {os.getloadavg()[0]:.1f}", flush=True)
    for stage in STAGES:
        m = run_measured(commands[stage], repo, env)
        result["stages"][stage] = m
        print(f"  {stage:14s} wall {m['wall']:8.1f} s  cpu {m['cpu']:8.1f} s  "
              f"rss {m['rss_mb']:7.0f} MB   {m['last_line'][0][:70]}", flush=True)
    if args.smoke:   # the chain really ran: a test Spearman from the covers it made
        spearman = json.loads((repo / "metrics/eval/report.json").read_text())["model"]["spearman"]
        if not -1 <= spearman <= 1:
            raise SystemExit(f"bench_scale --smoke: test Spearman {spearman} is not in [-1, 1]")
    return result


def exponent(a: float, b: float, n1: int, n2: int) -> float:
    return math.log(max(b, 1e-3) / max(a, 1e-3)) / math.log(n2 / n1)


def table(results: list[dict]) -> str:
    sizes = [r["n"] for r in results]
    head = "| stage | " + " | ".join(f"N={n}: wall s / cpu s / RSS MB" for n in sizes)
    pairs = list(zip(results, results[1:]))
    head += "".join(f" | exponent {a['n']}->{b['n']}: cpu (wall)" for a, b in pairs) + " |"
    lines = [head, "|" + "---|" * (1 + len(sizes) + len(pairs))]
    for stage in [*STAGES, "total"]:
        def get(r, key, stage=stage):
            if stage == "total":
                return sum(s[key] for s in r["stages"].values())
            return r["stages"][stage][key]
        cells = [f"{get(r, 'wall'):.1f} / {get(r, 'cpu'):.1f} / "
                 + ("—" if stage == "total" else f"{get(r, 'rss_mb'):.0f}") for r in results]
        cells += [f"{exponent(get(a, 'cpu'), get(b, 'cpu'), a['n'], b['n']):.2f} "
                  f"({exponent(get(a, 'wall'), get(b, 'wall'), a['n'], b['n']):.2f})"
                  for a, b in pairs]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="*", type=int, help="numbers of covers, e.g. 10000 30000")
    ap.add_argument("--near", type=float, default=0.3, help="share of covers that are near copies")
    ap.add_argument("--size", type=int, default=64, help="cover and model input size, px")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true",
                    help=f"sizes {SMOKE_SIZES} at 32 px (mostly start-up: seven stage processes)")
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temp folder)")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    args = ap.parse_args(argv)
    if args.smoke:
        args.sizes, args.size = args.sizes or SMOKE_SIZES, 32
    if not args.sizes:
        ap.error("give at least one size (e.g. 10000 30000) or --smoke")
    sizes = sorted(set(args.sizes))
    with tempfile.TemporaryDirectory(prefix="bench_scale-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        results = [bench_one(n, args, root) for n in sizes]
    print()
    print(table(results))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
