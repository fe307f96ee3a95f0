"""The insight report: cover features for every kept cover, and how popularity goes with them.

`cover_table` adds the interpretable features (coverpop.analyze.features) to the split table;
`summarize` turns it into a detailed report plus a compact, numbers-only summary (both plain
files in git, not `dvc metrics`: `dvc exp show` keeps to the headline); `plot_tables` and `save_figure` give the `dvc plots` data and a
PNG. Everything here is descriptive: an association across covers, not a causal effect.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from coverpop.analyze import effects
from coverpop.analyze.features import features_table
from coverpop.core.errors import CoverpopError

BINARY = ("face", "text")
CONTINUOUS = ("face_area", "colourfulness", "saturation", "brightness", "text_score")
CATEGORICAL = ("hue_name",)
# One feature per idea in the joint (adjusted) fit: face_area refines face, text_score refines
# text, colourfulness overlaps saturation.
ADJUSTED = ("face", "text", "saturation", "brightness")
# The demo's tracks table records what it planted on each cover; when those columns are there
# we also report how well the detectors see it.
DEMO_TRUTH = {"face": "demo_face", "text": "demo_text", "saturation": "demo_saturation"}


def cover_table(split: pd.DataFrame, store: str | Path, workers: int | None = None,
                progress: bool = True) -> pd.DataFrame:
    """The split rows with the features of their cover (read from the cover store `store`);
    covers that cannot be decoded are dropped (their count is kept in `attrs['unreadable']`)."""
    for col in ("cover_id", "popularity"):
        if col not in split.columns:
            raise CoverpopError(f"split table: missing column '{col}'")
    if split.empty:
        raise CoverpopError("split table: no covers to analyse")
    unique = list(dict.fromkeys(split["cover_id"].astype(str)))
    feats = features_table(unique, workers=workers, progress=progress, store=store)
    table = split.astype({"cover_id": str}).merge(feats, on="cover_id", how="left",
                                                   validate="many_to_one")
    bad = table["error"] != ""
    if bad.all():
        first = table.loc[bad, ["cover_id", "error"]].iloc[0]
        raise CoverpopError(f"{store}: cover {first['cover_id']}: no cover could be read "
                            f"({first['error']})")
    table = table[~bad].drop(columns="error").reset_index(drop=True)
    table["face"] = (table["faces"] > 0).astype(int)
    table.attrs["unreadable"] = int(bad.sum())
    return table


def detector_check(table: pd.DataFrame) -> dict:
    """Agreement of the detectors with the demo's planted truth (empty on real data)."""
    out = {}
    for feature, truth_col in DEMO_TRUTH.items():
        if truth_col not in table.columns:
            continue
        truth = pd.to_numeric(table[truth_col], errors="coerce")
        if feature == "saturation":
            if truth.nunique() > 1:
                out["saturation_spearman"] = float(stats.spearmanr(table[feature], truth).statistic)
            continue
        truth, seen = truth.astype(bool).to_numpy(), table[feature].astype(bool).to_numpy()
        tp = int((truth & seen).sum())
        out[f"{feature}_recall"] = tp / truth.sum() if truth.sum() else float("nan")
        out[f"{feature}_precision"] = tp / seen.sum() if seen.sum() else float("nan")
        out[f"{feature}_accuracy"] = float((truth == seen).mean())
    return out


def summarize(table: pd.DataFrame, top_quantile: float = 0.8, bottom_quantile: float = 0.2,
              n_resamples: int = 2000, seed: int = 0,
              covariates: tuple[str, ...] = ("genre", "year")) -> tuple[dict, dict]:
    """(full report, compact summary). Rank effects (Cliff's delta for yes/no features,
    Spearman's rho for continuous ones) are both in −1…1, so they can be compared side by side."""
    report = effects.analyze(table, list(BINARY), list(CONTINUOUS), list(CATEGORICAL),
                             covariates=list(covariates), adjusted_features=list(ADJUSTED),
                             top_quantile=top_quantile,
                             bottom_quantile=bottom_quantile,
                             n_resamples=n_resamples, seed=seed)
    report["unreadable"] = table.attrs.get("unreadable", 0)
    report["detector_check"] = detector_check(table)
    metrics: dict = {"n_covers": report["n"]}
    for name, e in report["effects"].items():
        m: dict = {}
        if e["kind"] == "binary" and "p_value" in e:
            m = {"share_of_covers": e["share_with"], "mean_with": e["mean_with"],
                 "mean_without": e["mean_without"], "mean_diff": e["mean_diff"],
                 "mean_diff_low": e["mean_diff_ci"][0], "mean_diff_high": e["mean_diff_ci"][1],
                 "cohens_d": e["cohens_d"], "cliffs_delta": e["cliffs_delta"],
                 "cliffs_delta_low": e["cliffs_delta_ci"][0],
                 "cliffs_delta_high": e["cliffs_delta_ci"][1]}
            tb = report["top_vs_bottom"][name]
            if "top" in tb:
                m.update(top_share=tb["top"]["share"], bottom_share=tb["bottom"]["share"],
                         top_minus_bottom=tb["share_diff"],
                         top_minus_bottom_low=tb["share_diff_ci"][0],
                         top_minus_bottom_high=tb["share_diff_ci"][1],
                         top_vs_bottom_p=tb["p_value"])
        elif e["kind"] == "continuous" and "p_value" in e:
            m = {"spearman": e["spearman"], "spearman_low": e["spearman_ci"][0],
                 "spearman_high": e["spearman_ci"][1]}
        if "p_value" in e:
            m.update(p=e["p_value"], p_adjusted=e["p_adjusted"])
        adj = report["adjusted"].get("effects", {}).get(name)
        if m and adj:
            m.update(adjusted=adj["coef"], adjusted_low=adj["ci"][0], adjusted_high=adj["ci"][1])
        if m:
            metrics[name] = m
    if report["detector_check"]:
        metrics["detector_check"] = report["detector_check"]
    return json_ready(report), json_ready(metrics)


def json_ready(obj, digits: int = 4):
    """JSON-ready copy: floats to 4 significant digits, NaN to None, numpy scalars to Python."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v, digits) for v in obj]
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        obj = float(obj)
        if not np.isfinite(obj):
            return None
        return float(f"{obj:.{digits}g}") if abs(obj) < 1 else round(obj, digits)
    return obj


def rank_effects(report: dict) -> pd.DataFrame:
    """One row per binary/continuous feature: its rank effect and 95 % CI (for a forest plot)."""
    rows = []
    for name, e in report["effects"].items():
        if e["kind"] == "binary" and "cliffs_delta" in e:
            rows.append({"feature": name, "measure": "Cliff's delta", "effect": e["cliffs_delta"],
                         "low": e["cliffs_delta_ci"][0], "high": e["cliffs_delta_ci"][1],
                         "p_adjusted": e["p_adjusted"]})
        elif e["kind"] == "continuous" and "spearman" in e:
            rows.append({"feature": name, "measure": "Spearman rho", "effect": e["spearman"],
                         "low": e["spearman_ci"][0], "high": e["spearman_ci"][1],
                         "p_adjusted": e["p_adjusted"]})
    return pd.DataFrame(rows, columns=["feature", "measure", "effect", "low", "high", "p_adjusted"])


def plot_tables(table: pd.DataFrame, report: dict) -> dict[str, pd.DataFrame]:
    """The data behind `dvc plots`: file stem → table."""
    by_face = (table.assign(cover=np.where(table["face"] == 1, "face", "no face"))
               .groupby("cover")["popularity"].agg(["count", "mean", "median"]).reset_index())
    return {"face_share_by_popularity": effects.share_by_bin(table["popularity"], table["face"]),
            "popularity_by_face": by_face.rename(columns={"count": "n"}),
            "rank_effects": rank_effects(report)}


def effects_figure(table: pd.DataFrame, report: dict):
    """Rank effects with CIs across the top; face share by popularity bin and popularity by face
    below. 1,000 px wide at 100 dpi (it sits in a browser column on the `dvc plots` page), laid
    out by matplotlib's constrained layout so no title or label leaves the canvas."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = plot_tables(table, report)
    fig = plt.figure(figsize=(10, 7.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.1])
    ax_eff = top.subplots()
    ax_share, ax_face = bottom.subplots(1, 2, width_ratios=[1.4, 1])
    eff = tables["rank_effects"].iloc[::-1]
    y = np.arange(len(eff))
    ax_eff.errorbar(eff["effect"], y, xerr=[eff["effect"] - eff["low"], eff["high"] - eff["effect"]],
                    fmt="o", capsize=3)
    ax_eff.axvline(0, color="grey", lw=0.8)
    ax_eff.set_yticks(y, [f"{f} ({m})" for f, m in zip(eff["feature"], eff["measure"])])
    ax_eff.set_xlabel("rank effect on popularity (−1 to 1)")
    ax_eff.set_title("Rank effect on popularity (95 % bootstrap CI)")
    bins = tables["face_share_by_popularity"]
    x = np.arange(len(bins))
    ax_share.bar(x, bins["share"], color="tab:orange")
    ax_share.errorbar(x, bins["share"], yerr=[bins["share"] - bins["share_low"],
                                              bins["share_high"] - bins["share"]],
                      fmt="none", color="black", capsize=3)
    ax_share.set_xticks(x, [f"{b}\n(n={n})" for b, n in zip(bins["popularity_bin"], bins["n"])])
    ax_share.set_ylim(0, 1)
    ax_share.set_xlabel("popularity")
    ax_share.set_title("Share of covers with a face\n(95 % Wilson CI)")
    groups = [table.loc[table["face"] == v, "popularity"].to_numpy() for v in (0, 1)]
    ax_face.boxplot(groups, tick_labels=["no face", "face"], showmeans=True)
    ax_face.set_ylabel("popularity")
    face = report["effects"]["face"]
    title = "Popularity by face"
    if "mean_diff" in face:
        title += (f"\nface − none: {face['mean_diff']:+.1f} "
                  f"[{face['mean_diff_ci'][0]:.1f}, {face['mean_diff_ci'][1]:.1f}]")
    ax_face.set_title(title)
    return fig


def save_figure(table: pd.DataFrame, report: dict, path: str | Path) -> None:
    from coverpop.core.figures import save_png

    save_png(effects_figure(table, report), path, dpi=100)
