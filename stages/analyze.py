"""Stage analyze: interpretable features of every kept cover, and how popularity goes with them.

Reads the split table and the covers it names; writes the per-cover features and, into the
analysis folder: the plot tables and a PNG (charts, kept in git, drawn by `dvc plots`), a compact
summary and the full report (plain JSON, DVC-tracked). None of it is a `dvc metrics` file:
`dvc exp show` keeps to the headline numbers.
"""

import _env  # noqa: F401  (first: a one-line error when the environment is not active)

from pathlib import Path

from coverpop.core.errors import run_stage


def main() -> None:
    # Imported here, not at the top: the feature workers are spawned, and each re-imports this
    # script; pandas, scipy and matplotlib at the top cost each worker 1.5 s CPU it never uses.
    import pandas as pd

    from coverpop.analyze import report as analysis
    from coverpop.analyze.features import FEATURES
    from coverpop.core.atomic import write_csv, write_json
    from coverpop.core.errors import CoverpopError
    from coverpop.core.params import load_params, stage_paths

    args = stage_paths("split", "store", "features_out", "plots_dir")
    params = load_params()
    p = params["analyze"]
    try:
        rows = pd.read_csv(args.split, dtype={"track_id": str, "cover_id": str, "album_id": str})
    except FileNotFoundError:
        raise CoverpopError(f"{args.split}: not found (run `dvc repro dedupe_split`)") from None
    table = analysis.cover_table(rows[rows["split"].isin(p["splits"])], args.store)
    report, summary = analysis.summarize(table, float(p["top_quantile"]),
                                         float(p["bottom_quantile"]), int(p["bootstrap"]),
                                         int(params["seed"]), tuple(p["adjust_for"]))

    keep = [c for c in ("track_id", "cover_id", "split", "popularity") if c in table]
    write_csv(args.features_out, table[keep + ["face", *FEATURES]])
    plots = Path(args.plots_dir)
    write_json(plots / "summary.json", summary)
    write_json(plots / "report.json", report)
    for name, df in analysis.plot_tables(table, report).items():
        write_csv(plots / f"{name}.csv", df.round(4))
    analysis.save_figure(table, report, plots / "effects.png")
    face = summary.get("face", {})
    if "mean_diff" in face:
        print(f"analyze: {summary['n_covers']} covers, {face['share_of_covers']:.0%} with a face; "
              f"face vs none: popularity {face['mean_diff']:+.1f} (95% CI "
              f"{face['mean_diff_low']:+.1f}..{face['mean_diff_high']:+.1f}, p={face['p']:.2g}) "
              f"-> {plots / 'summary.json'}")


if __name__ == "__main__":
    run_stage(main)
