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
