"""Out of fold: every kept cover scored by a model that never saw it, nor its album (or artist).

A test split of 15 % answers "does the cover carry a signal?" with a seventh of the covers; its
95 % interval on ~300 covers is about ±0.12 Spearman, wider than the signal. Cross-fitting uses
all of them: K folds over every kept cover (train, val and test), grouped exactly as the split
groups (`split.group_by`) and stratified by popularity; each fold's covers are predicted by ridge
models fitted on the other folds, every penalty chosen by an inner grouped CV inside those
training folds (the held-out fold's targets are never read: tests/test_crossfit.py poisons them
and checks the predictions do not move). Only heads that refit in seconds are cross-fitted: the
metadata and interpretable-feature ridges and the ridge on a *frozen* backbone's features. A
fine-tuned backbone has seen the train covers' targets, so its features cannot be cross-fitted
without refitting it K times; it is scored on the test split only.

The answer in steps, each model one block more than the last, each gain with a paired 95 % CI:
  metadata_only        genre + year (one-hot, spline), as on the test split
  with_interpretable   + the analyze stage's cover features (faces, colour, text)
  with_cover           + the frozen backbone's features (the metadata and interpretable block
                       keep the penalty the step before chose, so the step differs by one block)
  covers_only          the backbone's features alone (`train.head: ridge` out of fold)
CIs are bootstrap percentiles over resampled groups (an album or artist is drawn whole), the
same draws for every model, so gains are paired.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from coverpop.core.errors import CoverpopError
from coverpop.core.metrics import row_scores
from coverpop.evaluate.metadata import metadata_columns, metadata_design
from coverpop.split.splitting import FastStratifiedGroupKFold, split_groups
from coverpop.tracks.selection import popularity_bins
from coverpop.train.probe import ridge_cv, ridge_cv_pair

KEPT = ("train", "val", "test")
# The analyze stage's per-cover features (data/features.csv) that enter the ridge: numbers as
# they are (a missing one: the training folds' median), the dominant hue one-hot.
INTERPRETABLE_NUMERIC = ("face", "faces", "face_area", "colourfulness", "brightness",
                         "saturation", "text_score", "text")
INTERPRETABLE_CATEGORICAL = ("hue_name",)


def split_folds(rows: pd.DataFrame, k: int, group_by: str = "album", seed: int = 0
                ) -> np.ndarray:
    """Fold number (0..k-1) of every row: whole groups per fold, popularity bins in proportion."""
    if len(rows) < 2 * k:
        raise CoverpopError(f"evaluate.cv_folds={k}: only {len(rows)} covers")
    groups = split_groups(rows, group_by)
    if len(np.unique(groups)) < k:
        raise CoverpopError(f"evaluate.cv_folds={k}: only {len(np.unique(groups))} "
                            f"{group_by} groups to spread over {k} folds")
    # scikit-learn's folds bit for bit, its per-group fold search vectorised (0.5 ms a group
    # in sklearn: half a minute at 70,000 kept covers)
    folds = FastStratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    out = np.empty(len(rows), dtype=np.int64)
    for f, (_, held) in enumerate(folds.split(np.zeros(len(rows)),
                                              popularity_bins(rows["popularity"], 5), groups)):
        out[held] = f
    return out


def interpretable_design(train: pd.DataFrame, *others: pd.DataFrame) -> list[np.ndarray]:
    """Design matrices of the interpretable features; fill values and hue categories from
    `train` alone."""
    num = [c for c in INTERPRETABLE_NUMERIC if c in train.columns]
    cats = [c for c in INTERPRETABLE_CATEGORICAL if c in train.columns]
    if not num and not cats:
        raise CoverpopError("interpretable features: none of "
                            f"{', '.join(INTERPRETABLE_NUMERIC)} in the features table")
    fill = train[num].apply(pd.to_numeric, errors="coerce").median()
    levels = {c: sorted(train[c].dropna().astype(str).unique()) for c in cats}

    def one(df: pd.DataFrame) -> np.ndarray:
        parts = [df[num].apply(pd.to_numeric, errors="coerce").fillna(fill).fillna(0.0)
                 .to_numpy(np.float64)]
        for c in cats:
            v = df[c].astype(str).to_numpy()
            parts.append(np.stack([v == lev for lev in levels[c]], 1).astype(np.float64))
        return np.hstack(parts)

    return [one(train)] + [one(df) for df in others]


@dataclass
class OutOfFold:
    """Out-of-fold predictions (0–100) of every model, row for row with `rows`."""

    rows: pd.DataFrame
    fold: np.ndarray
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    alphas: dict[str, list[float]] = field(default_factory=dict)


def crossfit(rows: pd.DataFrame, fold: np.ndarray, learned: np.ndarray | None = None,
             interpretable: pd.DataFrame | None = None, seed: int = 0,
             y: np.ndarray | None = None, workers: int = 2) -> OutOfFold:
    """Every step's model, fitted K times (once per held-out fold) on the other folds.

    `rows`: the kept covers (popularity, genre/year when present, the split groups' column);
    `learned`: a frozen backbone's features, row for row; `interpretable`: the analyze features
    row for row (or None). `y` overrides the targets (the leakage test poisons held-out ones)."""
    y = rows["popularity"].to_numpy(np.float64) if y is None else np.asarray(y, np.float64)
    groups = split_groups(rows, _group_by(rows))
    has_meta = bool(metadata_columns(rows))
    out = OutOfFold(rows, fold)
    names = ((["metadata_only"] if has_meta else [])
             + (["with_interpretable" if has_meta else "interpretable_only"]
                if interpretable is not None else [])
             + (["with_cover" if (has_meta or interpretable is not None) else "covers_only"]
                if learned is not None else [])
             + (["covers_only"] if learned is not None and (has_meta or interpretable is not None)
                else []))
    for name in dict.fromkeys(names):
        out.predictions[name] = np.full(len(rows), np.nan)
        out.alphas[name] = []

    def one_fold(f):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        inner = groups[tr]
        fits = []
        side = None  # the block the learned features sit beside: metadata and/or interpretable
        side_alpha = None
        if has_meta:
            m_tr, m_te = metadata_design(rows.iloc[tr], rows.iloc[te])
            fit = ridge_cv(m_tr, y[tr], seed=seed, groups=inner)
            fits.append(("metadata_only", fit.predict(m_te), fit.alpha))
            side, side_alpha = (m_tr, m_te), fit.alpha
        if interpretable is not None:
            i_tr, i_te = interpretable_design(interpretable.iloc[tr], interpretable.iloc[te])
            if side is not None:
                i_tr, i_te = np.hstack([side[0], i_tr]), np.hstack([side[1], i_te])
            fit = ridge_cv(i_tr, y[tr], seed=seed, groups=inner)
            fits.append(("with_interpretable" if has_meta else "interpretable_only",
                         fit.predict(i_te), fit.alpha))
            side, side_alpha = (i_tr, i_te), fit.alpha
        if learned is not None:
            # rows=tr: the fits read the training folds' rows of `learned` in place (a copy of
            # them is 300 MB at 70k covers, one per fold running at once); with a side block
            # both models come from one pass over them (probe.ridge_cv_pair)
            x_te = learned[te]
            if side is not None:
                fused, fit = ridge_cv_pair(learned, y[tr], side[0], side_alpha, seed=seed,
                                           groups=inner, rows=tr)
                fits.append(("with_cover", fused.predict(x_te, side[1]), fused.alpha))
            else:
                fit = ridge_cv(learned, y[tr], seed=seed, groups=inner, rows=tr)
            fits.append(("covers_only", fit.predict(x_te), fit.alpha))
        return te, fits

    # The folds are independent: two at a time on two cores (each ridge holds one BLAS thread,
    # and numpy's LAPACK calls release the GIL). Results are stored in fold order: the same
    # numbers whatever the scheduling.
    # One BLAS thread for the whole pool (ridge_cv's own limit, entered and left by two threads
    # at once, could otherwise restore the default under the other's feet).
    with threadpool_limits(1, user_api="blas"), \
            ThreadPoolExecutor(max(1, min(workers, len(np.unique(fold))))) as pool:
        done = list(pool.map(one_fold, np.unique(fold)))
    for te, fits in done:
        for name, pred, alpha in fits:
            out.predictions[name][te] = np.clip(pred, 0, 100)
            out.alphas[name].append(float(alpha))
    return out


def _group_by(rows: pd.DataFrame) -> str:
    return rows.attrs.get("group_by", "album")


# --- scores with grouped-bootstrap CIs -------------------------------------------------------

def bootstrap_draws(groups: np.ndarray, n_boot: int, seed: int, chunk: int = 50):
    """Chunks of (≤ chunk, n) row indices, n_boot in all: each draw resamples whole groups with
    replacement and takes every row of each drawn group (groups of one cover: the plain
    bootstrap), trimmed or topped up with more groups to exactly n rows. In chunks: at 300,000
    covers all draws at once would not fit in memory."""
    codes, inverse = np.unique(groups, return_inverse=True)
    members = np.argsort(inverse, kind="stable")
    sizes = np.bincount(inverse, minlength=len(codes))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rng = np.random.default_rng(seed)
    n = len(groups)

    def rows_of(picked):
        s = sizes[picked]
        return members[np.repeat(starts[picked] - np.cumsum(s) + s, s) + np.arange(s.sum())]

    for first in range(0, n_boot, chunk):
        out = np.empty((min(chunk, n_boot - first), n), dtype=np.int64)
        for b in range(len(out)):
            idx = rows_of(rng.integers(0, len(codes), len(codes)))
            while len(idx) < n:
                idx = np.concatenate([idx, rows_of(rng.integers(0, len(codes), 1))])
            out[b] = idx[:n]
        yield out


def _ci(value: float, draws: np.ndarray) -> dict:
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return {"value": round(float(value), 4) + 0.0, "ci_low": round(float(lo), 4) + 0.0,
            "ci_high": round(float(hi), 4) + 0.0}


# Each step's gain: (name, better model, the model before it).
STEPS = (("interpretable_gain", "with_interpretable", "metadata_only"),
         ("learned_gain", "with_cover", "with_interpretable"),
         ("cover_added_value", "with_cover", "metadata_only"))


def summarize(oof: OutOfFold, n_boot: int = 1000, seed: int = 0) -> dict:
    """Spearman and MAE of every model with its 95 % CI, and every step's paired gain."""
    y = oof.rows["popularity"].to_numpy(np.float64)
    metrics = ("spearman", "mae")
    boot = {name: {m: [] for m in metrics} for name in oof.predictions}
    for draws in bootstrap_draws(split_groups(oof.rows, _group_by(oof.rows)), n_boot, seed):
        yb = y[draws]
        for name, p in oof.predictions.items():
            for m in metrics:
                boot[name][m].append(row_scores(yb, p[draws], m))
    boot = {name: {m: np.concatenate(v) for m, v in d.items()} for name, d in boot.items()}
    report: dict = {"covers": len(y), "folds": int(len(np.unique(oof.fold))),
                    "bootstrap": n_boot, "models": {}, "gains": {}}
    for name, p in oof.predictions.items():
        report["models"][name] = {
            m: _ci(row_scores(y[None], p[None], m)[0], boot[name][m]) for m in metrics}
        report["models"][name]["alphas"] = [round(a, 6) for a in oof.alphas.get(name, [])]
    for gain, better, before in STEPS:
        if better in boot and before in boot:
            report["gains"][gain] = {}
            for m, sign in (("spearman", 1), ("mae", -1)):  # a gain is positive when better
                value = sign * (report["models"][better][m]["value"]
                                - report["models"][before][m]["value"])
                report["gains"][gain][m] = _ci(value, sign * (boot[better][m] - boot[before][m]))
    return report


def headline(report: dict) -> dict:
    """The out-of-fold numbers `dvc exp show` gets (metrics/evaluate.json's `oof` key): 11
    columns at most; every model's and gain's full numbers stay in the `oof` part of metrics/eval/report.json."""
    models, gains = report["models"], report["gains"]
    out: dict = {"covers": report["covers"]}
    if "covers_only" in models:
        out["covers_only"] = {"spearman": models["covers_only"]["spearman"],
                              "mae": models["covers_only"]["mae"]["value"]}
    if "metadata_only" in models:
        out["metadata_only"] = {"spearman": models["metadata_only"]["spearman"]["value"]}
    if "cover_added_value" in gains:
        out["cover_added_value"] = {"spearman": gains["cover_added_value"]["spearman"]}
    for step in ("interpretable_gain", "learned_gain"):
        if step in gains:
            out[step] = {"spearman": gains[step]["spearman"]["value"]}
    return out


def predictions_table(oof: OutOfFold) -> pd.DataFrame:
    out = pd.DataFrame({"track_id": oof.rows["track_id"].to_numpy(), "fold": oof.fold,
                        "actual": oof.rows["popularity"].to_numpy()})
    for name, p in oof.predictions.items():
        out[name] = np.round(p, 2)
    return out


# --- the stage's inputs ----------------------------------------------------------------------

def frozen_cover_features(predictor, rows: pd.DataFrame, store, progress: bool = False
                          ) -> np.ndarray | None:
    """A frozen backbone's features of `rows` (float64, row for row), through the per-cover
    embedding cache the train stage filled: only covers train never saw (the test split) are
    computed (their pixels read from `store`, a CoverStore). None when the checkpoint's backbone was fine-tuned (its features have seen the
    train covers' targets) or its weights are no longer at hand."""
    import torch

    from coverpop.train import embeddings
    from coverpop.train.data import load_covers
    from coverpop.train.loop import TrainConfig
    from coverpop.train.pretrained import resolve_weights
    from coverpop.train.probe import frozen_key, frozen_model

    ckpt = predictor.ckpt
    config = ckpt.get("config") or {}
    if not config.get("freeze_backbone"):
        return None
    try:
        cfg = TrainConfig(**{**config, "device": "cpu", "progress": progress}).validated()
        weights = resolve_weights(cfg.model, cfg.pretrained)
    except (CoverpopError, OSError, TypeError, KeyError, ValueError):
        return None  # an older checkpoint, weights gone: the test split only
    if weights.key != ckpt.get("weights_key"):
        return None
    model, device, channels_last, amp = frozen_model(cfg, weights, ckpt["mean"], ckpt["std"])
    key = frozen_key(cfg, weights, ckpt["mean"], ckpt["std"], "by-content", amp)
    ids, hashes = rows["cover_id"].tolist(), rows["sha256"].tolist()

    def make(idx):
        images = load_covers(store, [ids[i] for i in idx], [hashes[i] for i in idx],
                             cfg.image_size, progress=progress)
        return embeddings.compute(model, images, device, amp=amp, channels_last=channels_last,
                                  progress=progress)

    with torch.no_grad():
        feats, _ = embeddings.by_content(key, hashes, make)
    return feats.numpy()   # float32: ridge_cv converts each fold's rows (half the memory)


def interpretable_table(path, rows: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    """The analyze stage's features (data/features.csv), row for row with `rows`; (None, why)
    when the file is missing or lacks some kept cover (analyze.splits leaves a split out)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        return None, f"{path} not found (the analyze stage writes it)"
    table = pd.read_csv(path, dtype={"track_id": str, "cover_id": str})
    table = table.drop_duplicates("track_id")
    merged = rows[["track_id"]].merge(table, on="track_id", how="left", validate="one_to_one")
    cols = [c for c in (*INTERPRETABLE_NUMERIC, *INTERPRETABLE_CATEGORICAL) if c in merged]
    if not cols:
        return None, f"{path} has none of the interpretable feature columns"
    missing = merged[cols[0]].isna() & ~merged["track_id"].isin(table["track_id"])
    if missing.any():
        return None, (f"{path} lacks {int(missing.sum())} of the {len(rows)} kept covers "
                      f"(analyze.splits must hold train, val and test)")
    return merged, ""
