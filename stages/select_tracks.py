"""Stage select_tracks: N tracks to scrape, seeded, optionally filtered and stratified."""

import _env  # noqa: F401  (first: a one-line error when the environment is not active)

from coverpop.core.atomic import write_csv
from coverpop.core.errors import run_stage
from coverpop.core.params import load_params, stage_paths
from coverpop.tracks.selection import select_tracks
from coverpop.tracks.tables import read_tracks


def main() -> None:
    args = stage_paths("tracks", "out")
    params = load_params()
    p = params["select"]
    tracks = read_tracks(args.tracks)
    chosen = select_tracks(tracks, n=int(p["n"]), strategy=p["strategy"], seed=params["seed"],
                           years=p.get("years"), genres=p.get("genres"))
    write_csv(args.out, chosen)
    print(f"select_tracks: {len(chosen)} of {len(tracks)} tracks ({p['strategy']}) -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
