"""Benchmark: covers/s of the scrape engine vs the seed's naive loop, side by side, one invocation.

Both run against the same local stand-in for Spotify (tests/fakes/spotify_server.py, in its own
process, like the real service) with an injected latency per request. The naive loop is the
seed's way: one spotipy call, then one requests.get of the cover, one track at a time. The engine
runs at the default settings (`spotify_api`, scrape.workers, no rate cap), then once more with a
rate cap that binds, to show it runs close to the cap.

Then a dry run at full size: a 1.16M-row CSV in the Kaggle schema, read and validated, and
select_tracks picking N of it.

    python bench/bench_scrape.py                          # defaults below
    python bench/bench_scrape.py --n-engine 1000 --cap 40 --rows 1159764
    python bench/bench_scrape.py --smoke                  # seconds, tiny data: does it still run?
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import requests
import spotipy
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.oauth2 import SpotifyClientCredentials

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from fakes.kaggle_csv import kaggle_like_csv  # noqa: E402
from fakes.spotify_server import make_track_ids  # noqa: E402

from coverpop.core.params import defaults  # noqa: E402
from coverpop.covers.engine import DEFAULT_WORKERS, Scraper  # noqa: E402
from coverpop.covers.resolvers import make_resolver  # noqa: E402
from coverpop.covers.settings import ScrapeSettings  # noqa: E402
from coverpop.tracks.selection import select_tracks  # noqa: E402
from coverpop.tracks.tables import read_tracks  # noqa: E402


def start_fake(latency: tuple[float, float]) -> tuple[subprocess.Popen, dict[str, str]]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests/fakes/spotify_server.py"),
                             "--latency", str(latency[0]), str(latency[1])],
                            stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()   # the URL
    env = {}
    while (line := proc.stdout.readline().strip()) != "ready":
        key, value = line.removeprefix("export ").split("=", 1)
        env[key] = value
    return proc, env


def naive(ids: list[str], env: dict[str, str], out: Path) -> float:
    """The seed's loop: spotipy as it comes, then a plain requests.get, one track at a time."""
    auth = SpotifyClientCredentials(env["SPOTIPY_CLIENT_ID"], env["SPOTIPY_CLIENT_SECRET"],
                                    cache_handler=MemoryCacheHandler())
    auth.OAUTH_TOKEN_URL = env["COVERPOP_SPOTIFY_TOKEN_URL"]
    sp = spotipy.Spotify(auth_manager=auth)
    sp.prefix = env["COVERPOP_SPOTIFY_API_URL"]
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for tid in ids:
        track = sp.track(tid)
        url = track["album"]["images"][1]["url"]          # the 300 px one
        (out / f"{tid}.jpg").write_bytes(requests.get(url, timeout=10).content)
    return len(ids) / (time.perf_counter() - start)


def engine(ids: list[str], env: dict[str, str], out: Path, overrides: dict) -> float:
    """The engine at the default scrape settings (with `overrides`), as the stage runs it."""
    tracks = pd.DataFrame({"track_id": ids, "popularity": 50})
    scrape = {**defaults()["scrape"], **overrides, "resolver": "spotify_api"}
    settings = ScrapeSettings.from_params(scrape, environ=env)
    resolver = make_resolver(settings, tracks, {"source": "kaggle"}, environ=env)
    scraper = Scraper(resolver, out, size=settings.size)
    start = time.perf_counter()
    recs = scraper.run(tracks.to_dict("records"), workers=settings.workers, progress=False)
    elapsed = time.perf_counter() - start
    ok = sum(r["status"] == "ok" for r in recs)
    assert ok == len(ids), f"only {ok} of {len(ids)} covers ok"
    return len(ids) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, nargs=2, default=(0.03, 0.05))
    ap.add_argument("--n-naive", type=int, default=150)
    ap.add_argument("--n-engine", type=int, default=600)
    ap.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    ap.add_argument("--cap", type=float, default=40.0, help="requests/s for the capped run")
    ap.add_argument("--rows", type=int, default=1_159_764, help="dry-run CSV rows (0: skip)")
    ap.add_argument("--select-n", type=int, default=5000)
    ap.add_argument("--smoke", action="store_true", help="seconds, tiny data: does it still run?")
    args = ap.parse_args()
    capped_seconds = 6   # the capped run lasts about this long
    if args.smoke:
        args.n_naive, args.n_engine, args.rows, args.select_n = 3, 8, 2000, 100
        capped_seconds = 1

    proc, env = start_fake(tuple(args.latency))
    try:
        ids = make_track_ids(args.n_naive + args.n_engine + int(args.cap * capped_seconds),
                             seed=1)
        a, b = args.n_naive, args.n_naive + args.n_engine
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            defaults = {"workers": args.workers, "rate_limit": 0}
            naive_rate = naive(ids[:a], env, tmp / "naive")
            engine_rate = engine(ids[a:b], env, tmp / "engine", defaults)
            capped = engine(ids[b:b + int(args.cap * capped_seconds)], env, tmp / "capped",
                            {**defaults, "rate_limit": args.cap})
    finally:
        proc.terminate()
        proc.wait()
    print(f"latency {args.latency[0] * 1000:.0f}-{args.latency[1] * 1000:.0f} ms per request, "
          f"{os.cpu_count()} CPUs")
    rows = [("naive loop (seed's way)", f"{naive_rate:7.1f} covers/s  ({args.n_naive} covers)"),
            (f"engine, defaults ({args.workers} workers)",
             f"{engine_rate:7.1f} covers/s  ({args.n_engine} covers)"),
            ("speed-up", f"{engine_rate / naive_rate:7.1f}x"),
            (f"engine, rate cap {args.cap:g} req/s",
             f"{capped:7.1f} covers/s  ({capped / args.cap:.0%} of the cap)")]
    for label, value in rows:
        print(f"{label:<32}: {value}")

    if args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "spotify_data.csv"
            t0 = time.perf_counter()
            kaggle_like_csv(path, args.rows)
            t1 = time.perf_counter()
            tracks = read_tracks(path)
            t2 = time.perf_counter()
            chosen = select_tracks(tracks, n=args.select_n, strategy="stratified", seed=0)
            t3 = time.perf_counter()
        assert len(tracks) == args.rows and len(chosen) == args.select_n
        print(f"dry run, {args.rows:,} rows: generate+write {t1 - t0:.1f} s, read+validate "
              f"{t2 - t1:.1f} s, select_tracks n={args.select_n} (stratified) {t3 - t2:.2f} s")


if __name__ == "__main__":
    main()
