"""Stage fetch_csv: the tracks table from data.source, validated, in the Kaggle schema."""

import _env  # noqa: F401  (first: a one-line error when the environment is not active)

from coverpop.core.atomic import write_csv
from coverpop.core.errors import run_stage
from coverpop.core.params import load_params, stage_paths
from coverpop.tracks.inputs import read_tracks_fingerprint
from coverpop.tracks.sources import fetch_tracks
from coverpop.tracks.tables import duplicates_note


def main() -> None:
    args = stage_paths("inputs", "out")
    data = load_params()["data"]
    tracks = fetch_tracks(data, read_tracks_fingerprint(args.inputs))
    note = duplicates_note(tracks)
    write_csv(args.out, tracks)
    if note:
        print(f"fetch_csv: {note}")
    print(f"fetch_csv: {len(tracks)} tracks from source '{data['source']}' -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
