"""Benchmark: what a re-run with nothing new costs, and how much of it is checking finished covers.

Scrapes the demo once (data.demo.n_albums albums, covers at scrape.size), then times, in the same
invocation: a no-op re-run of the engine (read the journal, verify every finished cover, rewrite
nothing), the cheap check alone (one stat per cover) and the full check (stat + sha256 of every
file), so the choice "size first, then sha256" can be judged as a share of the re-run.

    python bench/bench_resume.py                    # 2000 albums, 300 px: the demo's defaults
    python bench/bench_resume.py --albums 500 --size 64
    python bench/bench_resume.py --smoke            # seconds, tiny data: does it still run?
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from coverpop.covers.engine import Scraper  # noqa: E402
from coverpop.covers.images import sha256  # noqa: E402
from coverpop.covers.journal import read_journal  # noqa: E402
from coverpop.covers.resolvers import DemoResolver  # noqa: E402
from coverpop.tracks import demo  # noqa: E402


def best_of(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--albums", type=int, default=2000)
    ap.add_argument("--size", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="seconds, tiny data: does it still run?")
    args = ap.parse_args()
    if args.smoke:
        args.albums, args.size = 8, 32
    tracks = demo.make_tracks(args.albums, seed=0)
    rows = tracks.to_dict("records")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "covers"   # its writer lock sits beside it: inside tmp, removed too
        t0 = time.perf_counter()
        Scraper(DemoResolver(tracks), out, args.size).run(rows, workers=args.workers,
                                                          progress=False)
        first = time.perf_counter() - t0
        files = sorted((out / "images").glob("*.jpg"))
        mb = sum(f.stat().st_size for f in files) / 1e6

        resolver = DemoResolver(tracks)

        def rerun():
            Scraper(resolver, out, args.size).run(rows, workers=args.workers, progress=False)

        def stat_only():
            for f in files:
                f.stat()

        def stat_and_hash():
            for f in files:
                f.stat()
                sha256(f.read_bytes())

        noop = best_of(rerun)
        journal = best_of(lambda: read_journal(out / "journal.jsonl"))
        cheap, full = best_of(stat_only), best_of(stat_and_hash)
    print(f"demo: {len(rows)} tracks, {len(files)} covers at {args.size} px ({mb:.1f} MB); "
          f"first scrape {first:.1f} s")
    print(f"no-op re-run of the engine    : {noop * 1000:7.0f} ms  (1.00)")
    print(f"  read the journal            : {journal * 1000:7.0f} ms  ({journal / noop:.2f})")
    print(f"  stat every cover (size)     : {cheap * 1000:7.0f} ms  ({cheap / noop:.2f})")
    print(f"  stat + sha256 every cover   : {full * 1000:7.0f} ms  ({full / noop:.2f})")


if __name__ == "__main__":
    main()
