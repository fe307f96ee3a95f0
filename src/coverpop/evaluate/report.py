"""What people look at: the predictions table behind `dvc plots` and a gallery of covers."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import pandas as pd
from PIL import Image

from coverpop.core.atomic import atomic_path


def predictions_frame(test: pd.DataFrame, predicted) -> pd.DataFrame:
    out = pd.DataFrame({"track_id": test["track_id"].to_numpy(),
                        "actual": test["popularity"].to_numpy(),
                        "predicted": predicted})
    out["predicted"] = out["predicted"].round(2)
    out["residual"] = (out["actual"] - out["predicted"]).round(2)
    return out


def gallery(test: pd.DataFrame, predicted, path: str | Path, per_row: int = 8) -> None:
    """Top row: the covers the model rates highest; bottom row: lowest. Titles: predicted/true."""
    df = test.assign(predicted=predicted).sort_values("predicted", ascending=False)
    k = min(per_row, len(df) // 2)
    rows = [("highest predicted", df.head(k)), ("lowest predicted", df.tail(k))]
    fig, axes = plt.subplots(2, k, figsize=(1.9 * k, 4.6), squeeze=False)
    for r, (label, part) in enumerate(rows):
        for c, (_, row) in enumerate(part.iterrows()):
            ax = axes[r][c]
            ax.imshow(Image.open(row["file"]).convert("RGB"))
            ax.set_title(f"pred {row['predicted']:.0f} / true {row['popularity']:.0f}", fontsize=8)
            ax.axis("off")
        axes[r][0].text(-0.08, 0.5, label, transform=axes[r][0].transAxes, rotation=90,
                        va="center", ha="right", fontsize=9)
    fig.suptitle("Test covers: predicted / true popularity", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
