"""Regression metrics and paired-bootstrap confidence intervals for model-vs-baseline gaps."""

import numpy as np

# For errors a gain is baseline − model; for scores it is model − baseline: positive = better.
LOWER_IS_BETTER = {"mae": True, "rmse": True, "r2": False, "spearman": False, "pearson": False}


def rank_rows(a: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, 1-based, ties sharing their mean rank: scipy.stats.rankdata
    (method "average", axis -1) to the bit, in numpy (scipy.stats costs a second to import in
    every stage that scores)."""
    a = np.asarray(a, np.float64)
    flat = a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)
    n = flat.shape[1]
    order = np.argsort(flat, axis=1, kind="stable")
    s = np.take_along_axis(flat, order, axis=1)
    pos = np.broadcast_to(np.arange(n), s.shape)
    starts = np.ones(s.shape, bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    ends = np.ones(s.shape, bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)          # each tie run's
    last = np.minimum.accumulate(np.where(ends, pos, n)[:, ::-1], axis=1)[:, ::-1]   # bounds
    out = np.empty(s.shape)
    np.put_along_axis(out, order, 0.5 * (first + last) + 1, axis=1)
    return out.reshape(a.shape)


def score(y: np.ndarray, p: np.ndarray, name: str) -> float:
    if name == "mae":
        return float(np.mean(np.abs(y - p)))
    if name == "rmse":
        return float(np.sqrt(np.mean((y - p) ** 2)))
    if name == "r2":
        return float(1 - np.sum((y - p) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12))
    if name in ("spearman", "pearson"):
        return float(row_scores(y[None], p[None], name)[0])
    raise ValueError(name)


def regression_metrics(y, p) -> dict[str, float]:
    y, p = np.asarray(y, float), np.asarray(p, float)
    return {name: round(score(y, p, name), 4) + 0.0 for name in LOWER_IS_BETTER}  # no -0.0


def row_scores(y: np.ndarray, p: np.ndarray, name: str) -> np.ndarray:
    """`score` of each row of (resamples × covers) arrays at once (a constant row: correlation
    0, it ranks nothing)."""
    if name == "mae":
        return np.abs(y - p).mean(axis=1)
    if name == "rmse":
        return np.sqrt(((y - p) ** 2).mean(axis=1))
    if name == "r2":
        total = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        return 1 - ((y - p) ** 2).sum(axis=1) / np.maximum(total, 1e-12)
    if name in ("spearman", "pearson"):
        if name == "spearman":
            y, p = rank_rows(y), rank_rows(p)
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
        draws[start:start + len(rows)] = sign * (row_scores(y[i], a[i], name)
                                                 - row_scores(y[i], b[i], name))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    value = sign * (score(y, a, name) - score(y, b, name))
    return {"value": round(value, 4), "ci_low": round(float(lo), 4), "ci_high": round(float(hi), 4)}
