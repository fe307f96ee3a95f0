"""Ridge from block statistics (train/gram.py): the same fit as the row-by-row solver, in one
pass over the rows and without a float64 copy of them."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from coverpop.core.errors import CoverpopError
from coverpop.train import gram, probe
from coverpop.train.probe import ALPHAS, ridge_cv, ridge_cv_pair


def rows_like_features(n, p, seed):
    """float32 columns with uneven scales, far-off means and one constant column; targets
    around 40 with a weak linear signal; a fixed block like metadata."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, p)) * rng.uniform(0.1, 3, p) + rng.uniform(-50, 50, p))
    x[:, 5] = 2.5
    x = x.astype(np.float32)
    m = rng.normal(size=(n, 4)) * 3 + 1
    y = 40 + x[:, :3].astype(np.float64).sum(1) + m[:, 0] + rng.normal(size=n) * 3
    return x, y, m, rng


def row_solver(x, y, rows, **kw):
    """probe's row-by-row path (the one ridge_cv takes for fewer rows than columns), forced."""
    with threadpool_limits(1, user_api="blas"):
        return probe._ridge_cv(x, y, kw.get("fixed"), kw.get("alpha_fixed"), probe.FOLDS, 0,
                               ALPHAS, kw.get("groups"), False, rows)


@pytest.mark.parametrize("n,p", [(2000, 150), (700, 40)])
def test_block_statistics_give_the_row_solvers_ridge(n, p):
    x, y, m, rng = rows_like_features(n, p, seed=n)
    rows = np.flatnonzero(rng.random(n) < 0.8)
    groups = rows // 3
    for kw in ({}, {"groups": groups}, {"fixed": m[rows], "alpha_fixed": 3.0, "groups": groups}):
        got, want = ridge_cv(x, y[rows], rows=rows, **kw), row_solver(x, y[rows], rows, **kw)
        assert got.alpha == want.alpha
        assert np.allclose(got.cv_mse, want.cv_mse, rtol=1e-10)
        assert np.allclose(got.coef, want.coef, rtol=1e-8, atol=1e-11)
        assert got.coef[5] == 0   # the constant column
        assert np.isclose(got.intercept, want.intercept, rtol=1e-9)
        if "fixed" in kw:
            assert np.allclose(got.fixed_coef, want.fixed_coef, rtol=1e-8, atol=1e-11)
        assert np.allclose(got.predict(x[:50], m[:50]), want.predict(x[:50], m[:50]), rtol=1e-10)


def test_the_pair_is_two_ridges_from_one_pass():
    x, y, m, rng = rows_like_features(1500, 60, seed=3)
    rows = np.flatnonzero(rng.random(len(x)) < 0.7)
    kw = {"groups": rows // 4, "rows": rows}
    fused, alone = ridge_cv_pair(x, y[rows], m[rows], 5.0, **kw)
    want_fused = ridge_cv(x, y[rows], fixed=m[rows], alpha_fixed=5.0, **kw)
    want_alone = ridge_cv(x, y[rows], **kw)
    assert fused.alpha == want_fused.alpha and alone.alpha == want_alone.alpha
    assert np.allclose(fused.coef, want_fused.coef, rtol=1e-12, atol=1e-14)
    assert np.allclose(fused.fixed_coef, want_fused.fixed_coef, rtol=1e-12, atol=1e-14)
    assert np.allclose(alone.coef, want_alone.coef, rtol=1e-12, atol=1e-14)
    assert alone.fixed_coef is None
    # fewer rows than columns: the pair falls back to the row solver, the same answer
    few = np.arange(40)
    a, b = ridge_cv_pair(x, y[few], m[few], 5.0, rows=few), ridge_cv(x[few], y[few])
    assert np.allclose(a[1].coef, b.coef) and a[1].alpha == b.alpha


def test_blocks_add_up_to_the_statistics_of_their_union():
    x, y, m, _ = rows_like_features(900, 20, seed=4)
    blocks = np.array_split(np.random.default_rng(0).permutation(len(x)), 3)
    grams, shift = gram.block_grams(x, y, blocks, fixed=m)
    (whole,), shift2 = gram.block_grams(x, y, [np.arange(len(x))], fixed=m)
    total = grams[0] + grams[1] + grams[2]
    a = np.hstack([x, m]) - shift
    assert np.array_equal(shift, shift2) and total.n == len(x)
    assert np.allclose(total.sxx, a.T @ a, rtol=1e-12) and np.allclose(total.sxx, whole.sxx)
    assert np.allclose(total.sxy, y @ a) and np.isclose(total.syy, y @ y)
    # the held-out error from sums is the error of the predictions
    coef = np.random.default_rng(1).normal(size=(a.shape[1], 2))
    sse = grams[1].sse(coef, np.array([3.0, -1.0]))
    direct = ((y[blocks[1], None] - np.array([3.0, -1.0]) - a[blocks[1]] @ coef) ** 2).sum(0)
    assert np.allclose(sse, direct, rtol=1e-9)
    # a column constant in the data is exactly zero about the shift
    assert whole.sxx[5, 5] == 0 and whole.sx[5] == 0


def test_no_float64_copy_of_the_rows(monkeypatch):
    """At n × p float32 rows the fit allocates one chunk and p × p matrices, not the n × p
    float64 copy (8·n·p bytes) each solve of the row path made."""
    import tracemalloc

    monkeypatch.setattr(gram, "CHUNK_BYTES", 2**20)
    x, y, _, _ = rows_like_features(20000, 128, seed=5)
    tracemalloc.start()
    ridge_cv(x, y, groups=np.arange(len(x)) // 3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.25 * x.size * 8, peak


@pytest.mark.parametrize("n,seed", [(3000, 4), (1003, 0), (12, 7)])
def test_the_cv_folds_are_scikit_learns(n, seed):
    """The inner CV's folds are KFold(shuffle=True)'s, and with groups GroupKFold(shuffle=True)'s,
    to the index, whatever the groups' type (computed here on integer codes: sklearn's np.isin on
    album-id strings grew quadratically, 40 s a fit at 56,000 albums)."""
    from sklearn.model_selection import GroupKFold, KFold

    rng = np.random.default_rng(seed)
    albums = np.array([f"album{i:07d}" for i in rng.integers(0, max(6, n // 2), n)],
                      dtype=object)
    x = np.zeros((n, 1))
    for groups, cv in ((None, KFold(5, shuffle=True, random_state=seed)),
                       (albums, GroupKFold(5, shuffle=True, random_state=seed)),
                       (rng.integers(0, 40, n), GroupKFold(5, shuffle=True, random_state=seed))):
        want = list(cv.split(x, groups=groups))
        got = list(probe._cv_split(n, 5, seed, groups))
        assert len(got) == 5
        for (a_fit, a_held), (b_fit, b_held) in zip(got, want):
            assert np.array_equal(a_fit, b_fit) and np.array_equal(a_held, b_held)
    with pytest.raises(CoverpopError, match="3 groups are too few for 5-fold"):
        list(probe._cv_split(9, 5, 0, np.array(list("abcabcabc"))))
