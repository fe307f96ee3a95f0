"""Regression metrics and paired-bootstrap confidence intervals for model-vs-baseline gaps."""

import numpy as np
from scipy.stats import pearsonr, rankdata, spearmanr

# For errors a gain is baseline − model; for scores it is model − baseline: positive = better.
LOWER_IS_BETTER = {"mae": True, "rmse": True, "r2": False, "spearman": False, "pearson": False}


def _corr(fn, y, p) -> float:
    if np.ptp(p) == 0 or np.ptp(y) == 0:
        return 0.0  # a constant predictor ranks nothing
    return float(fn(y, p).statistic)


def score(y: np.ndarray, p: np.ndarray, name: str) -> float:
    if name == "mae":
        return float(np.mean(np.abs(y - p)))
    if name == "rmse":
        return float(np.sqrt(np.mean((y - p) ** 2)))
    if name == "r2":
        return float(1 - np.sum((y - p) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12))
    if name == "spearman":
        return _corr(spearmanr, y, p)
    if name == "pearson":
        return _corr(pearsonr, y, p)
    raise ValueError(name)


def regression_metrics(y, p) -> dict[str, float]:
    y, p = np.asarray(y, float), np.asarray(p, float)
    return {name: round(score(y, p, name), 4) + 0.0 for name in LOWER_IS_BETTER}  # no -0.0


def _row_scores(y: np.ndarray, p: np.ndarray, name: str) -> np.ndarray:
    """`score` of each row of (resamples × covers) arrays at once."""
    if name == "mae":
        return np.abs(y - p).mean(axis=1)
    if name == "rmse":
        return np.sqrt(((y - p) ** 2).mean(axis=1))
    if name == "r2":
        total = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        return 1 - ((y - p) ** 2).sum(axis=1) / np.maximum(total, 1e-12)
    if name in ("spearman", "pearson"):
        if name == "spearman":
            y, p = rankdata(y, axis=1), rankdata(p, axis=1)
        yc, pc = y - y.mean(axis=1, keepdims=True), p - p.mean(axis=1, keepdims=True)
        denom = np.sqrt((yc * yc).sum(axis=1) * (pc * pc).sum(axis=1))
        constant = (np.ptp(y, axis=1) == 0) | (np.ptp(p, axis=1) == 0)  # ranks nothing: 0
        return np.where(constant, 0.0, (yc * pc).sum(axis=1) / np.where(constant, 1.0, denom))
    raise ValueError(name)


def gain_ci(y, p_model, p_base, name: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """The gain of model over baseline on `name`, with a paired-bootstrap 95 % interval
    (the same resampled covers score both predictors). Resamples are scored in blocks of
    whole arrays; the draws are the same as one `rng.integers` call per resample."""
    y, a, b = (np.asarray(v, float) for v in (y, p_model, p_base))
    sign = -1 if LOWER_IS_BETTER[name] else 1
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    block = max(1, 2_000_000 // max(1, len(y)))  # resamples per block: a few MB at any size
    for start in range(0, n_boot, block):
        rows = range(start, min(n_boot, start + block))
        i = np.stack([rng.integers(0, len(y), len(y)) for _ in rows])
        draws[start:start + len(rows)] = sign * (_row_scores(y[i], a[i], name)
                                                 - _row_scores(y[i], b[i], name))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    value = sign * (score(y, a, name) - score(y, b, name))
    return {"value": round(value, 4), "ci_low": round(float(lo), 4), "ci_high": round(float(hi), 4)}
