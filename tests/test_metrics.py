import numpy as np
import pytest

from coverpop.core.metrics import gain_ci, regression_metrics


def test_perfect_and_constant_predictors():
    y = np.array([0, 10, 20, 30, 80.0])
    perfect = regression_metrics(y, y)
    assert perfect == {"mae": 0, "rmse": 0, "r2": 1, "spearman": 1, "pearson": 1}
    const = regression_metrics(y, np.full(5, y.mean()))
    assert const["r2"] == 0 and const["spearman"] == 0 and const["mae"] == pytest.approx(21.6)


def test_gain_sign_and_interval():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 100, 400)
    good = y + rng.normal(0, 5, 400)
    mean = np.full(400, y.mean())
    g = gain_ci(y, good, mean, "mae", n_boot=200)
    assert g["value"] > 10 and g["ci_low"] <= g["value"] <= g["ci_high"] and g["ci_low"] > 0
    worse = gain_ci(y, mean, good, "spearman", n_boot=200)
    assert worse["value"] < 0 and worse["ci_high"] < 0
    same = gain_ci(y, good, good, "rmse", n_boot=50)
    assert same == {"value": 0, "ci_low": 0, "ci_high": 0}


@pytest.mark.parametrize("name", ["mae", "rmse", "r2", "spearman", "pearson"])
def test_gain_ci_in_blocks_equals_one_resample_at_a_time(name):
    """gain_ci scores resamples in blocks; the textbook loop (draw, score both, repeat) with the
    same generator must give the same interval, ties and a constant baseline included."""
    from coverpop.core.metrics import score

    rng = np.random.default_rng(5)
    y = rng.integers(0, 100, 40).astype(float)
    model, base = y + rng.normal(0, 15, 40).round(), np.full(40, y.mean())
    for b in (base, rng.integers(0, 3, 40).astype(float)):
        draw = np.random.default_rng(1)
        sign = -1 if name in ("mae", "rmse") else 1
        loop = [sign * (score(y[i], model[i], name) - score(y[i], b[i], name))
                for i in (draw.integers(0, 40, 40) for _ in range(300))]
        lo, hi = np.percentile(loop, [2.5, 97.5])
        got = gain_ci(y, model, b, name, n_boot=300, seed=1)
        # equal up to float summation order, which can flip the 4th decimal of the rounding
        assert (got["ci_low"], got["ci_high"]) == pytest.approx((lo, hi), abs=5.1e-5)


def test_ranks_and_correlations_are_scipys():
    """rank_rows is scipy.stats.rankdata (average ties, last axis) to the bit, and the
    correlations agree with scipy's, ties and constant rows included (scipy is not imported by
    the stages: a second each)."""
    from scipy.stats import pearsonr, rankdata, spearmanr

    from coverpop.core.metrics import rank_rows, row_scores, score

    rng = np.random.default_rng(9)
    for a in (rng.integers(0, 6, (7, 50)).astype(float), rng.normal(size=(3, 400)),
              np.array([[2.0, 2.0, 2.0]]), rng.integers(0, 3, 9).astype(float), np.array([4.0])):
        assert np.array_equal(rank_rows(a), rankdata(a, axis=-1))
    y, p = rng.integers(0, 100, (20, 60)).astype(float), rng.integers(0, 9, (20, 60)).astype(float)
    p[3] = 5.0
    for name, ref in (("spearman", spearmanr), ("pearson", pearsonr)):
        got = row_scores(y, p, name)
        want = [0.0 if np.ptp(p[i]) == 0 else ref(y[i], p[i]).statistic for i in range(len(y))]
        assert np.allclose(got, want, rtol=1e-12, atol=1e-15) and got[3] == 0
        assert score(y[0], p[0], name) == pytest.approx(want[0], rel=1e-12)
