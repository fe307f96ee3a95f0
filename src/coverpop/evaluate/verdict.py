"""metrics/eval/verdict.png: the out-of-fold answer in one figure, read in five seconds.

Left: each model's out-of-fold Spearman with its 95 % CI (and the covers-only model on the
test split alone, to show what the single split could say). Right: what each step adds, with
its paired 95 % CI; a bar whose interval clears zero is a gain. The title says it in words.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from coverpop.core.figures import save_png

LABELS = {
    "metadata_only": "genre + year",
    "with_interpretable": "genre + year + cover traits",
    "interpretable_only": "cover traits (faces, colour, text)",
    "with_cover": "genre + year + traits + backbone",
    "covers_only": "cover only (backbone)",
}
GAIN_LABELS = {
    "interpretable_gain": "+ cover traits\n(faces, colour, text)",
    "learned_gain": "+ backbone features",
    "cover_added_value": "the whole cover\nover genre + year",
}


def sentence(oof: dict) -> str:
    """The verdict in words: what the cover adds (or says alone), with its interval."""
    gains, models = oof["gains"], oof["models"]
    for step, what in (("cover_added_value", "The cover"),
                       ("interpretable_gain", "The cover traits")):  # a fine-tuned backbone
        if step in gains:
            g = gains[step]["spearman"]
            verb = "adds" if g["ci_low"] > 0 else "adds no clear gain:"
            return (f"{what} {verb} {g['value']:+.3f} Spearman to genre + year "
                    f"(95 % CI {g['ci_low']:+.3f} … {g['ci_high']:+.3f})")
    name = "covers_only" if "covers_only" in models else next(iter(models))
    s = models[name]["spearman"]
    return (f"{LABELS.get(name, name).capitalize()}: Spearman {s['value']:.3f} "
            f"(95 % CI {s['ci_low']:.3f} … {s['ci_high']:.3f})")


def verdict_figure(oof: dict, path: str | Path, test_split: dict | None = None) -> None:
    """`oof`: crossfit.summarize's report. `test_split`: {"value", "ci_low", "ci_high",
    "covers"} of the covers-only checkpoint on the test split, drawn below for contrast."""
    rows = [(LABELS.get(n, n), m["spearman"], "tab:blue") for n, m in oof["models"].items()]
    if test_split:
        rows.append((f"cover only, test split ({test_split['covers']} covers)", test_split,
                     "tab:gray"))
    gains = [(GAIN_LABELS.get(n, n), g["spearman"]) for n, g in oof["gains"].items()]
    panels = 2 if gains else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 0.55 * max(len(rows), 3) + 1.9),
                             squeeze=False)
    ax = axes[0][0]
    for i, (label, s, colour) in enumerate(rows[::-1]):
        ax.errorbar(s["value"], i, xerr=[[s["value"] - s["ci_low"]], [s["ci_high"] - s["value"]]],
                    fmt="o", color=colour, capsize=4, ms=7, lw=2)
        ax.annotate(f"{s['value']:.3f}", (s["value"], i), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=9)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows[::-1]], fontsize=10)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("Spearman with popularity (95 % CI)")
    ax.set_title(f"Each model, out of fold ({oof['covers']} covers, {oof['folds']} folds)",
                 fontsize=10)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    if gains:
        ax = axes[0][1]
        for i, (label, s) in enumerate(gains[::-1]):
            clear = s["ci_low"] > 0 or s["ci_high"] < 0
            ax.barh(i, s["value"], color="tab:green" if s["ci_low"] > 0 else
                    ("tab:red" if s["ci_high"] < 0 else "lightgray"), height=0.55)
            ax.errorbar(s["value"], i, xerr=[[s["value"] - s["ci_low"]],
                                             [s["ci_high"] - s["value"]]],
                        fmt="none", color="black", capsize=4, lw=1.5)
            ax.annotate(f"{s['value']:+.3f}" + ("" if clear else " (CI spans 0)"),
                        (max(s["ci_high"], 0), i), textcoords="offset points", xytext=(6, -3),
                        fontsize=9)
        ax.set_yticks(range(len(gains)), [g[0] for g in gains[::-1]], fontsize=10)
        ax.axvline(0, color="black", lw=0.8)
        lo = min(min(s["ci_low"] for _, s in gains), 0)
        hi = max(max(s["ci_high"] for _, s in gains), 0)
        ax.set_xlim(lo - 0.1 * (hi - lo + 1e-3), hi + 0.45 * (hi - lo + 1e-3))
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_xlabel("Spearman gain, paired (95 % CI)")
        ax.set_title("What each step adds", fontsize=10)
    fig.suptitle(sentence(oof), fontsize=12, fontweight="bold")
    fig.tight_layout()
    save_png(fig, path, dpi=100)
