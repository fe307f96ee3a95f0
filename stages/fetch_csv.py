"""Stage fetch_csv: the tracks table from data.source, validated, in the Kaggle schema."""

from coverpop.atomic import write_csv
from coverpop.errors import run_stage
from coverpop.params import load_params, stage_paths
from coverpop.sources import fetch_tracks


def main() -> None:
    args = stage_paths("out")
    data = load_params()["data"]
    tracks = fetch_tracks(data)
    write_csv(args.out, tracks)
    print(f"fetch_csv: {len(tracks)} tracks from source '{data['source']}' -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
