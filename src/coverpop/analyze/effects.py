"""How popularity goes with each cover feature: effect sizes, bootstrap CIs, significance tests.

Binary features (a face: yes/no) get the difference in mean popularity, Cohen's d and Cliff's
delta, each with a bootstrap 95 % CI, and a Mann–Whitney U test (popularity is skewed, with many
zeros, so the rank test is the honest one). Continuous features get Spearman's rho with a
bootstrap CI and its test. Categorical features (the dominant hue family) get a Kruskal–Wallis
test and the mean popularity per level. p-values are also given after Benjamini–Hochberg
correction across all features of one analysis, because many features are tested at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


def _bootstrap_ci(data: tuple, statistic, paired: bool, n_resamples: int, seed: int
                  ) -> tuple[float, float]:
    """Percentile 95 % CI. `statistic` takes whole batches of resamples (`axis`), so scipy scores
    them in a few numpy calls instead of one Python call per resample: same resamples, same CI."""
    res = stats.bootstrap(data, statistic, paired=paired, vectorized=True,
                          n_resamples=n_resamples, confidence_level=CONFIDENCE,
                          method="percentile", rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return float(lo), float(hi)


def _scalar(x):
    """A 0-d result as a float; a batch (bootstrap resamples) as it is."""
    return float(x) if np.ndim(x) == 0 else x


def cohens_d(a: np.ndarray, b: np.ndarray, axis: int = -1):
    """Standardised mean difference (a − b) / pooled SD (along `axis`: one per resample)."""
    na, nb = np.shape(a)[axis], np.shape(b)[axis]
    pooled = ((na - 1) * np.var(a, axis=axis, ddof=1)
              + (nb - 1) * np.var(b, axis=axis, ddof=1)) / (na + nb - 2)
    diff = np.mean(a, axis=axis) - np.mean(b, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scalar(np.where(pooled > 0, diff / np.sqrt(pooled), 0.0))


def cliffs_delta(a: np.ndarray, b: np.ndarray, axis: int = -1):
    """P(a > b) − P(a < b), from the Mann–Whitney U statistic (ties count half)."""
    u = stats.mannwhitneyu(a, b, alternative="two-sided", axis=axis).statistic
    return _scalar(2 * u / (np.shape(a)[axis] * np.shape(b)[axis]) - 1)


def _mean_diff(a, b, axis: int = -1):
    return _scalar(np.mean(a, axis=axis) - np.mean(b, axis=axis))


def binary_effect(popularity, flag, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Popularity of covers with the feature (flag true) against those without."""
    pop = np.asarray(popularity, dtype=float)
    flag = np.asarray(flag).astype(bool)
    with_, without = pop[flag], pop[~flag]
    out = {"kind": "binary", "n_with": int(flag.sum()), "n_without": int((~flag).sum()),
           "share_with": float(flag.mean()) if len(flag) else float("nan")}
    if len(with_) < 2 or len(without) < 2:
        return {**out, "note": "fewer than 2 covers on one side: no test"}
    out.update(mean_with=float(with_.mean()), mean_without=float(without.mean()),
               median_with=float(np.median(with_)), median_without=float(np.median(without)))
    for name, fn in (("mean_diff", _mean_diff), ("cohens_d", cohens_d),
                     ("cliffs_delta", cliffs_delta)):
        lo, hi = _bootstrap_ci((with_, without), fn, False, n_resamples, seed)
        out[name] = float(fn(with_, without))
        out[f"{name}_ci"] = [lo, hi]
    out["p_value"] = float(stats.mannwhitneyu(with_, without, alternative="two-sided").pvalue)
    out["test"] = "Mann-Whitney U, two-sided"
    return out


def _spearman(x, y, axis: int = -1):
    """Spearman's rho along `axis` (Pearson's r of the ranks, ties averaged): what
    stats.spearmanr gives for one pair, for a batch of resampled pairs at once."""
    rx, ry = (stats.rankdata(v, axis=axis) for v in (x, y))
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant resample: nan, as scipy
        return _scalar((rx * ry).sum(axis) / np.sqrt((rx * rx).sum(axis) * (ry * ry).sum(axis)))


def continuous_effect(popularity, values, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Spearman's rho between a feature and popularity (rows with a missing value dropped)."""
    pop = np.asarray(popularity, dtype=float)
    x = np.asarray(values, dtype=float)
    keep = ~(np.isnan(pop) | np.isnan(x))
    pop, x = pop[keep], x[keep]
    out = {"kind": "continuous", "n": int(len(x))}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(pop) == 0:
        return {**out, "note": "fewer than 3 covers or a constant column: no test"}
    res = stats.spearmanr(x, pop)
    lo, hi = _bootstrap_ci((x, pop), _spearman, True, n_resamples, seed)
    return {**out, "spearman": float(res.statistic), "spearman_ci": [lo, hi],
            "p_value": float(res.pvalue), "test": "Spearman rank correlation, two-sided",
            "feature_mean": float(x.mean()), "feature_sd": float(x.std(ddof=1))}


def categorical_effect(popularity, levels, min_count: int = 5) -> dict:
    """Kruskal–Wallis across the levels that have at least `min_count` covers."""
    df = pd.DataFrame({"pop": np.asarray(popularity, dtype=float), "level": np.asarray(levels)})
    counts = df["level"].value_counts()
    keep = counts[counts >= min_count].index
    groups = {str(k): g["pop"].to_numpy() for k, g in df[df["level"].isin(keep)].groupby("level")}
    out = {"kind": "categorical",
           "levels": {k: {"n": int(len(v)), "mean": float(v.mean())}
                      for k, v in sorted(groups.items())}}
    if len(groups) < 2:
        return {**out, "note": f"fewer than 2 levels with {min_count}+ covers: no test"}
    res = stats.kruskal(*groups.values())
    return {**out, "h": float(res.statistic), "p_value": float(res.pvalue),
            "test": "Kruskal-Wallis"}


def share_ci(k: int, n: int) -> list[float]:
    """Wilson 95 % interval for a proportion k/n."""
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return [float(ci.low), float(ci.high)]


def top_bottom_share(popularity, flag, top_quantile: float = 0.8, bottom_quantile: float = 0.2,
                     n_resamples: int = 2000, seed: int = 0) -> dict:
    """The seed's comparison, made measurable: share of covers with the feature among the most
    popular (popularity ≥ the `top_quantile` quantile) against the least popular (≤ the
    `bottom_quantile` quantile). Wilson CIs per bin, a bootstrap CI on the difference and
    Fisher's exact test."""
    pop = np.asarray(popularity, dtype=float)
    flag = np.asarray(flag).astype(bool)
    hi_cut, lo_cut = np.quantile(pop, top_quantile), np.quantile(pop, bottom_quantile)
    top, bottom = flag[pop >= hi_cut], flag[pop <= lo_cut]
    if hi_cut <= lo_cut or len(top) == 0 or len(bottom) == 0:
        return {"note": "popularity too concentrated to separate a top and a bottom bin"}
    k_top, k_bot = int(top.sum()), int(bottom.sum())
    lo, hi = _bootstrap_ci((top.astype(float), bottom.astype(float)), _mean_diff, False,
                           n_resamples, seed)
    odds, p = stats.fisher_exact([[k_top, len(top) - k_top], [k_bot, len(bottom) - k_bot]])
    return {"top_min_popularity": float(hi_cut), "bottom_max_popularity": float(lo_cut),
            "top": {"n": int(len(top)), "with": k_top, "share": k_top / len(top),
                    "share_ci": share_ci(k_top, len(top))},
            "bottom": {"n": int(len(bottom)), "with": k_bot, "share": k_bot / len(bottom),
                       "share_ci": share_ci(k_bot, len(bottom))},
            "share_diff": k_top / len(top) - k_bot / len(bottom), "share_diff_ci": [lo, hi],
            "odds_ratio": float(odds), "p_value": float(p), "test": "Fisher's exact, two-sided"}


def share_by_bin(popularity, flag, edges=(0, 1, 20, 40, 60, 80, 101)) -> pd.DataFrame:
    """Share of covers with the feature per popularity bin (for a plot); bins are [lo, hi)."""
    pop = np.asarray(popularity, dtype=float)
    flag = np.asarray(flag).astype(bool)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (pop >= lo) & (pop < hi)
        n, k = int(inside.sum()), int(flag[inside].sum())
        label = f"{lo}" if hi - lo == 1 else f"{lo}-{min(hi, 101) - 1}"
        ci = share_ci(k, n) if n else [float("nan")] * 2
        rows.append({"popularity_bin": label, "n": n, "with": k,
                     "share": k / n if n else float("nan"), "share_low": ci[0], "share_high": ci[1]})
    return pd.DataFrame(rows)


def adjusted_effects(table: pd.DataFrame, binary: list[str], continuous: list[str],
                     covariates: list[str], target: str = "popularity", n_resamples: int = 1000,
                     seed: int = 0) -> dict:
    """Each feature's effect with the others and the covariates (e.g. genre, year) held fixed:
    the coefficients of one least-squares fit of popularity on all of them, with bootstrap 95 %
    CIs over covers. A binary feature's coefficient is popularity points for having it; a
    continuous one's is points per standard deviation. Text covariates are one-hot encoded."""
    from sklearn.linear_model import LinearRegression

    features = [*binary, *continuous]
    data = table[[target, *features, *covariates]].dropna()
    X = data[features].astype(float)
    X[continuous] = (X[continuous] - X[continuous].mean()) / X[continuous].std(ddof=0).replace(0, 1)
    for col in covariates:
        if pd.api.types.is_numeric_dtype(data[col]):
            X[col] = data[col].astype(float)
        else:
            X = X.join(pd.get_dummies(data[col].astype(str), prefix=col, drop_first=True,
                                      dtype=float))
    X, y = X.to_numpy(), data[target].to_numpy(dtype=float)
    if len(y) <= X.shape[1] + 2:
        return {"note": "too few covers for the number of features and covariates"}

    def coefs(rows, axis=-1):
        """The features' coefficients for each resample (a row of `rows`): a resample is the
        least-squares fit weighted by how often each cover was drawn, solved on its p × p
        normal equations (min-norm, as lstsq, when a resample lacks a genre) instead of
        refitting LinearRegression on n rows per resample."""
        rows = np.atleast_2d(rows)
        out = np.empty((len(features), len(rows)))
        for k, drawn in enumerate(rows):
            w = np.bincount(drawn, minlength=len(y)).astype(float)
            xc = X - w @ X / w.sum()
            yc = y - w @ y / w.sum()
            gram, rhs = xc.T @ (xc * w[:, None]), xc.T @ (w * yc)
            out[:, k] = np.linalg.lstsq(gram, rhs, rcond=None)[0][:len(features)]
        return out

    rows = np.arange(len(y))
    ci = stats.bootstrap((rows,), coefs, vectorized=True, n_resamples=n_resamples,
                         confidence_level=CONFIDENCE, method="percentile",
                         rng=np.random.default_rng(seed)).confidence_interval
    point = LinearRegression().fit(X, y).coef_[:len(features)]
    return {"covariates": list(covariates), "n": int(len(y)),
            "effects": {f: {"coef": float(point[i]), "ci": [float(ci.low[i]), float(ci.high[i])],
                            "unit": "points for having it" if f in binary else "points per SD"}
                        for i, f in enumerate(features)}}


def analyze(table: pd.DataFrame, binary: list[str], continuous: list[str],
            categorical: list[str] = (), covariates: list[str] = (), target: str = "popularity",
            top_quantile: float = 0.8, bottom_quantile: float = 0.2, n_resamples: int = 2000,
            seed: int = 0, adjusted_features: list[str] | None = None) -> dict:
    """Effects of every listed feature column of `table` on `target`, with BH-adjusted p-values,
    the top-vs-bottom share comparison for every binary feature, and the effects adjusted for
    each other and for the `covariates` that the table has. `adjusted_features` (default: all)
    picks the features of that joint fit: near-duplicates (saturation and colourfulness) would
    split one effect between them and make both unreadable."""
    pop = table[target].to_numpy(dtype=float)
    effects: dict[str, dict] = {}
    for col in binary:
        effects[col] = binary_effect(pop, table[col], n_resamples, seed)
    for col in continuous:
        effects[col] = continuous_effect(pop, table[col], n_resamples, seed)
    for col in categorical:
        effects[col] = categorical_effect(pop, table[col])
    tested = [k for k, v in effects.items() if "p_value" in v]
    if tested:
        adjusted = stats.false_discovery_control([effects[k]["p_value"] for k in tested])
        for k, p in zip(tested, adjusted):
            effects[k]["p_adjusted"] = float(p)
    top_bottom = {col: top_bottom_share(pop, table[col], top_quantile, bottom_quantile,
                                        n_resamples, seed) for col in binary}
    covariates = [c for c in covariates if c in table.columns]
    pick = set(adjusted_features or [*binary, *continuous])
    adjusted = adjusted_effects(table, [c for c in binary if c in pick],
                                [c for c in continuous if c in pick], covariates, target,
                                min(n_resamples, 1000), seed)
    return {"n": int(len(table)), "target": target, "effects": effects,
            "top_vs_bottom": top_bottom, "adjusted": adjusted}
