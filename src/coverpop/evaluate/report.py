"""What people look at: the predictions table behind `dvc plots` and a gallery of covers."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import pandas as pd

from coverpop.core.figures import save_png

# The columns `dvc exp show` gets from metrics/evaluate.json: the trained checkpoint on the test
# split (comparable across every recipe, fine-tuned ones too); the out-of-fold answer adds its
# own (`oof.*`, evaluate/crossfit.py: headline). The whole report (every baseline, every gain
# with its CI, genre + year with and without the cover on the test split) goes to
# metrics/eval/report.json. Budget: at most 16 columns over all metrics files
# (tests/test_metrics_budget.py): 3 here + 11 out of fold + 2 of train.
HEADLINE = ("test_covers", "model.mae", "model.spearman")


def headline(report: dict, keys: tuple[str, ...] = HEADLINE) -> dict:
    """The dotted `keys` of `report`, nested as in the report; a key the report lacks is left out."""
    out: dict = {}
    for dotted in keys:
        *parents, leaf = dotted.split(".")
        node = report
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and leaf in node:
            dst = out
            for part in parents:
                dst = dst.setdefault(part, {})
            dst[leaf] = node[leaf]
    return out


def predictions_frame(test: pd.DataFrame, predicted) -> pd.DataFrame:
    out = pd.DataFrame({"track_id": test["track_id"].to_numpy(),
                        "actual": test["popularity"].to_numpy(),
                        "predicted": predicted})
    out["predicted"] = out["predicted"].round(2)
    out["residual"] = (out["actual"] - out["predicted"]).round(2)
    return out


def gallery(test: pd.DataFrame, predicted, store, path: str | Path, per_row: int = 8) -> None:
    """Top row: the covers the model rates highest; bottom row: lowest. Titles: predicted/true.
    `store`: the cover store (covers/store.py) holding the test covers."""
    df = test.assign(predicted=predicted).sort_values("predicted", ascending=False)
    k = min(per_row, len(df) // 2)
    rows = [("highest predicted", df.head(k)), ("lowest predicted", df.tail(k))]
    fig, axes = plt.subplots(2, k, figsize=(1.9 * k, 4.6), squeeze=False)
    for r, (label, part) in enumerate(rows):
        for c, (_, row) in enumerate(part.iterrows()):
            ax = axes[r][c]
            ax.imshow(store.open(row["cover_id"]).convert("RGB"))
            ax.set_title(f"pred {row['predicted']:.0f} / true {row['popularity']:.0f}", fontsize=8)
            ax.axis("off")
        axes[r][0].text(-0.08, 0.5, label, transform=axes[r][0].transAxes, rotation=90,
                        va="center", ha="right", fontsize=9)
    fig.suptitle("Test covers: predicted / true popularity", fontsize=10)
    fig.tight_layout()
    save_png(fig, path, dpi=90)
