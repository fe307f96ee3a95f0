"""Figures to PNG, byte-identical for the same figure: written atomically, without the
"Software: Matplotlib x.y" text chunk (it changes with the version, not with the content)."""

from pathlib import Path

from coverpop.core.atomic import atomic_path


def save_png(fig, path: str | Path, dpi: int = 100) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
