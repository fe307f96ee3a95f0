"""Peak memory of the training data path: decode N covers into the image cache, then read them
as training does (an epoch of shuffled batches, then a pass in order as the frozen-backbone
embeddings do). Not a test: the figures go to docs/training.md.

    python bench/bench_image_cache.py --n 40000 --size 128
    PYTHONPATH=/path/to/old/src python bench/bench_image_cache.py ...   # the same on other code
    python bench/bench_image_cache.py --smoke    # seconds, tiny data: does it still run?

Each phase runs in a fresh process and reports its peak RSS (ru_maxrss) next to the same
process's RSS after its imports (the baseline: torch alone is a few hundred MB), and its CPU
time. Synthetic covers (random blocks, JPEG at the stored size): what matters is their count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, torch
from coverpop.train.data import load_images
files, size = json.load(open(sys.argv[1])), int(sys.argv[2])
for phase in sys.argv[3].split(","):             # one phase (--smoke: both, one after the other)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    c0 = time.process_time()
    images = load_images(files, size, progress=False,
                         hashes=[f"bench-{i}" for i in range(len(files))])
    if phase == "read":
        g = torch.Generator().manual_seed(0)
        perm = torch.randperm(len(images), generator=g)
        for i in range(0, len(images), 64):          # an epoch of shuffled batches
            images[perm[i:i + 64]].float()
        for i in range(0, len(images), 128):         # a pass in order (embeddings)
            images[i:i + 128].float()
    print(json.dumps({"phase": phase, "baseline_rss_mb": base / 1024,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "cpu_s": time.process_time() - c0}))
"""


def make_covers(folder: Path, n: int, size: int) -> list[str]:
    """N small JPEGs (reused when the folder already holds them)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        path = folder / f"c{i:06d}.jpg"
        if not path.exists():   # cover i is the same whichever run makes it
            blocks = np.random.default_rng(i).integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(blocks).resize((size, size), Image.NEAREST).save(path, quality=90)
        files.append(str(path))
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--covers", default="", help="folder for the synthetic covers (kept)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds, tiny data: does it still run? (8 covers at 32 px, all "
                         "temporary; both phases in one process: its figures mean nothing)")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.size, args.covers = 8, 32, ""
    work = Path(tempfile.mkdtemp(prefix="coverpop-bench-cache-"))
    try:
        measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)   # the cache (and covers unless --covers)


def measure(args, work: Path) -> None:
    covers = Path(args.covers) if args.covers else work / "covers"
    t0 = time.perf_counter()
    files = make_covers(covers, args.n, args.size)
    list_file = work / "files.json"
    list_file.write_text(json.dumps(files))
    env = {**os.environ, "COVERPOP_CACHE": str(work / "cache")}
    out = {"covers": args.n, "size": args.size, "made_s": round(time.perf_counter() - t0, 1),
           "load_average": os.getloadavg()[0]}
    # each phase in a fresh process (its own peak RSS); --smoke: the two in one (one start-up)
    for phases in (["decode", "read"],) if args.smoke else (["decode"], ["read"]):
        proc = subprocess.run([sys.executable, "-c", CHILD, str(list_file), str(args.size),
                               ",".join(phases)], env=env, capture_output=True, text=True,
                              check=True)
        for phase, line in zip(phases, proc.stdout.splitlines()[-len(phases):]):
            out[phase] = {k: round(v, 1) if isinstance(v, float) else v
                          for k, v in json.loads(line).items()}
            print(f"{phase}: peak RSS {out[phase]['peak_rss_mb']:.0f} MB (after imports "
                  f"{out[phase]['baseline_rss_mb']:.0f} MB), CPU {out[phase]['cpu_s']:.1f} s",
                  flush=True)
    cache_bytes = sum(p.stat().st_size for p in (work / "cache").rglob("*") if p.is_file())
    out["cache_mb"] = round(cache_bytes / 2**20, 1)
    # --smoke: the covers really went into the cache (at least their pixels, uint8)
    if args.smoke and cache_bytes < args.n * 3 * args.size ** 2:
        raise SystemExit(f"bench_image_cache: {cache_bytes} bytes cached for {args.n} covers "
                         f"at {args.size} px")
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
