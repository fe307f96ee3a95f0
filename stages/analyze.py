"""analyze: interpretable features of every kept cover, and how popularity goes with them.

Reads data/split.csv and the covers it names; writes the per-cover features, the numbers for
`dvc metrics` (metrics/analysis.json), the data for `dvc plots` and a PNG (metrics/analysis/).
"""

import pandas as pd

from coverpop import analysis
from coverpop.atomic import write_csv, write_json
from coverpop.errors import CoverpopError, run_stage
from coverpop.params import load_params

SPLIT = "data/split.csv"
FEATURES = "data/features.csv"
METRICS = "metrics/analysis.json"
PLOTS = "metrics/analysis"


def main() -> None:
    params = load_params()
    p = params["analyze"]
    try:
        split = pd.read_csv(SPLIT, dtype={"track_id": str, "cover_id": str, "album_id": str})
    except FileNotFoundError:
        raise CoverpopError(f"{SPLIT}: not found (run `dvc repro dedupe_split` first)") from None
    splits = p["splits"]
    unknown = set(splits) - {"train", "val", "test"}
    if unknown:
        raise CoverpopError(f"params.yaml: analyze.splits has {sorted(unknown)}; "
                            "allowed: train, val, test")
    split = split[split["split"].isin(splits)]
    table = analysis.cover_table(split)
    report, metrics = analysis.summarize(table, p["top_quantile"], p["bottom_quantile"],
                                         p["bootstrap"], params["seed"])
    keep = [c for c in ("track_id", "cover_id", "file", "split", "popularity") if c in table]
    write_csv(FEATURES, table[keep + ["face", *analysis.FEATURES]])
    write_json(METRICS, metrics)
    write_json(f"{PLOTS}/report.json", report)
    for name, df in analysis.plot_tables(table, report).items():
        write_csv(f"{PLOTS}/{name}.csv", df.round(4))
    analysis.save_figure(table, report, f"{PLOTS}/effects.png")
    face = metrics.get("face", {})
    if "mean_diff" in face:
        print(f"analyze: {metrics['n_covers']} covers; with a face {face['share_of_covers']:.0%}, "
              f"popularity {face['mean_diff']:+.1f} [{face['mean_diff_low']:+.1f}, "
              f"{face['mean_diff_high']:+.1f}] (p={face['p']:.2g})")


if __name__ == "__main__":
    run_stage(main)
