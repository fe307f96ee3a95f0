"""Does the cover add anything to what genre and year already say?

Two ridge models, both fitted on the train split alone (penalty by 5-fold CV on it, as the
train stage's probe: `train/probe.py`) and scored on test:
- metadata only: one-hot genre and a spline of year, whichever of the two the tracks have;
- cover + metadata: the trained model's backbone features (`CoverRegressor.features`) next to the
  same metadata columns, which keep the metadata-only model's penalty while the cover features'
  penalty is cross-validated, so the two differ by the cover features alone.
The gain of the second over the first, with a paired-bootstrap 95 % CI, is `cover_added_value`.

For a fine-tuned backbone the train covers' features have seen their targets, so the fused
model may trust them more than they deserve on test: the added value is then, if anything,
understated. A frozen backbone (the probe) has no such bias.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.compose import make_column_transformer
from sklearn.preprocessing import OneHotEncoder, SplineTransformer

from coverpop.core.errors import CoverpopError
from coverpop.core.metrics import gain_ci, regression_metrics
from coverpop.train import embeddings
from coverpop.train.data import digest, load_split, take
from coverpop.train.loop import TrainConfig
from coverpop.train.pretrained import resolve_weights
from coverpop.train.probe import RidgeFit, frozen_features, ridge_cv

METADATA_COLUMNS = ("genre", "year")
GAIN_METRICS = ("mae", "rmse", "r2", "spearman")


def metadata_columns(df: pd.DataFrame) -> list[str]:
    """The metadata columns the tracks have (and fill somewhere)."""
    return [c for c in METADATA_COLUMNS if c in df.columns and df[c].notna().any()]


def metadata_design(train: pd.DataFrame, *others: pd.DataFrame) -> list[np.ndarray]:
    """Design matrices, encoders fitted on train alone: one-hot genre (a genre train never saw
    is all zeros), year as a quadratic spline with 4 knots (missing years: the train median)."""
    cols = metadata_columns(train)
    parts = []
    if "genre" in cols:
        parts.append((OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["genre"]))
    if "year" in cols:
        parts.append((SplineTransformer(n_knots=4, degree=2), ["year"]))
    median_year = pd.to_numeric(train["year"]).median() if "year" in cols else None

    def prep(df: pd.DataFrame) -> pd.DataFrame:
        df = df[cols].copy()
        if "genre" in cols:
            df["genre"] = df["genre"].fillna("unknown").astype(str)
        if "year" in cols:
            df["year"] = pd.to_numeric(df["year"]).astype(float).fillna(median_year)
        return df

    encoder = make_column_transformer(*parts)
    out = [np.asarray(encoder.fit_transform(prep(train)), np.float64)]
    return out + [np.asarray(encoder.transform(prep(df)), np.float64) for df in others]


def fit_metadata_only(train: pd.DataFrame, test: pd.DataFrame, seed: int = 0
                      ) -> tuple[np.ndarray, RidgeFit] | None:
    """(test predictions 0–100, the fit); None when the tracks have no metadata column."""
    if not metadata_columns(train):
        return None
    m_train, m_test = metadata_design(train, test)
    fit = ridge_cv(m_train, train["popularity"].to_numpy(float), seed=seed)
    return np.clip(fit.predict(m_test), 0, 100), fit


def cover_features(predictor, split_path: str | Path, store: str | Path,
                   progress: bool = False) -> np.ndarray:
    """The checkpoint's backbone features of the train covers (rows in split.csv order; the
    evaluate stage has the test covers' already). A frozen backbone's come from the train stage's
    embedding cache when it holds them; otherwise they are computed (and cached for the next
    evaluate)."""
    ckpt = predictor.ckpt
    data, _ = load_split(split_path, store, predictor.image_size, progress=progress)
    device = torch.device("cpu")
    feats = None
    config = ckpt.get("config") or {}
    if config.get("freeze_backbone"):
        try:
            cfg = TrainConfig(**{**config, "device": "cpu", "progress": progress}).validated()
            weights = resolve_weights(cfg.model, cfg.pretrained)
            if weights.key == ckpt.get("weights_key"):
                _, feats = frozen_features(cfg, data, weights, ckpt["mean"], ckpt["std"])
        except (CoverpopError, OSError, TypeError, KeyError, ValueError):
            feats = None  # weights no longer at hand, an older checkpoint: compute below
    model = predictor.model
    if feats is None:
        key = digest("eval-features", _state_digest(model), data.image_key)
        train_images = take(data.images, data.train_idx)
        x_train, _ = embeddings.cached(key, lambda: embeddings.compute(
            model, train_images, device, progress=progress))
    else:
        x_train = feats[data.train_idx]
    return x_train.double().numpy()


def _state_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


@dataclass
class CoverValue:
    metadata_only: np.ndarray        # test predictions, 0–100
    with_metadata: np.ndarray
    meta_fit: RidgeFit
    fused_fit: RidgeFit
    columns: list


def fit_cover_value(train: pd.DataFrame, test: pd.DataFrame, x_train: np.ndarray,
                    x_test: np.ndarray, seed: int = 0) -> CoverValue | None:
    """Metadata-only and cover + metadata ridge models, fitted on train rows alone."""
    cols = metadata_columns(train)
    if not cols:
        return None
    m_train, m_test = metadata_design(train, test)
    y = train["popularity"].to_numpy(float)
    meta = ridge_cv(m_train, y, seed=seed)
    fused = ridge_cv(x_train, y, fixed=m_train, alpha_fixed=meta.alpha, seed=seed)
    return CoverValue(np.clip(meta.predict(m_test), 0, 100),
                      np.clip(fused.predict(x_test, m_test), 0, 100), meta, fused, cols)


def cover_value_report(y: np.ndarray, value: CoverValue, n_boot: int, seed: int
                       ) -> tuple[dict, dict]:
    """(headline keys for metrics/evaluate.json, the full detail for metrics/eval/)."""
    gains = {m: gain_ci(y, value.with_metadata, value.metadata_only, m, n_boot, seed)
             for m in GAIN_METRICS}
    meta_m = regression_metrics(y, value.metadata_only)
    fused_m = regression_metrics(y, value.with_metadata)
    headline = {"metadata_only": {"spearman": meta_m["spearman"]},
                "model_with_metadata": {"spearman": fused_m["spearman"]},
                "cover_added_value": {"spearman": gains["spearman"]}}
    detail = {
        "metadata_columns": value.columns,
        "cover_features": len(value.fused_fit.coef),
        "metadata_only": {**meta_m, "alpha": value.meta_fit.alpha},
        "model_with_metadata": {**fused_m, "alpha_covers": value.fused_fit.alpha,
                                "alpha_metadata": value.meta_fit.alpha},
        "cover_added_value": gains,
    }
    return headline, detail
