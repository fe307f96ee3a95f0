"""Stage dedupe_split: one row per album and per cover, then a grouped, stratified split.

The counts (selected, failed, removed by reason, kept per split) go to a small CSV in git that
`dvc plots` draws as bars; they are not `dvc metrics`, so `dvc exp show` keeps to the headline.
"""

import _env  # noqa: F401  (first: a one-line error when the environment is not active)

import pandas as pd

from coverpop.core.atomic import write_csv
from coverpop.core.errors import CoverpopError, run_stage
from coverpop.core.params import load_params, stage_paths
from coverpop.split.dedupe import REASONS, dedupe
from coverpop.split.splitting import split
from coverpop.tracks.tables import read_tracks


def main() -> None:
    args = stage_paths("selected", "manifest", "out", "removed", "report")
    params = load_params()
    d, s = params["dedupe"], params["split"]
    tracks = read_tracks(args.selected)
    manifest = pd.read_csv(args.manifest, dtype=str, keep_default_na=False)
    if "phash" not in manifest.columns:
        raise CoverpopError(f"{args.manifest} has no phash column (written by an older scrape): "
                            "run `dvc repro -s scrape_images` (covers are kept, only hashed)")
    ok = manifest[manifest["status"] == "ok"]
    cover_cols = ["track_id", "cover_id", "album_id", "sha256", "phash"]
    joined = tracks.drop(columns=["album_id"], errors="ignore").merge(ok[cover_cols], on="track_id")
    kept, removed = dedupe(joined, d["representative"], int(d["phash_threshold"]), params["seed"])
    kept = kept.drop(columns="phash")   # the split lists tracks; hashes stay in the manifest
    kept["split"] = split(kept, s["group_by"], float(s["val"]), float(s["test"]), params["seed"])
    write_csv(args.out, kept)
    write_csv(args.removed, removed)
    report = {
        "selected": len(tracks), "scrape_failed": int(len(manifest) - len(ok)),
        **{f"removed_{r}": int((removed["reason"] == r).sum()) for r in REASONS},
        "covers": len(kept),
        **{k: int((kept["split"] == k).sum()) for k in ("train", "val", "test")},
    }
    write_csv(args.report, pd.DataFrame({"count": list(report), "n": list(report.values())}))
    print("dedupe_split: " + ", ".join(f"{k} {v}" for k, v in report.items()))


if __name__ == "__main__":
    run_stage(main)
