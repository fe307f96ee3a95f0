"""The ridge probe (train.head: ridge): exact, finds a weak signal, finds none in noise, and its
cross-validation sees the train rows only."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import Ridge

from coverpop.core.errors import CoverpopError
from coverpop.train.checkpoint import load_predictor, save_checkpoint
from coverpop.train.data import CoverTensors
from coverpop.train.loop import TrainConfig
from coverpop.train import probe
from coverpop.train.probe import ridge_cv, run_probe


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COVERPOP_CACHE", str(tmp_path / "cache"))


def embeddings_like(n, p, seed):
    """Features like pooled CNN outputs: a decaying spectrum, uneven scales, nonzero means.
    Returns (features, latent factors)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(p, p)))[0]
    latent = rng.normal(size=(n, p)) / np.sqrt(1 + np.arange(p))
    return latent @ basis.T * rng.uniform(0.2, 3, p) + rng.uniform(0, 2, p), latent


def test_probe_recovers_a_weak_linear_signal_and_finds_none_in_noise():
    n_train, p = 1000, 384
    x, latent = embeddings_like(n_train + 3000, p, seed=0)
    rng = np.random.default_rng(1)
    truth = latent[:, :20] @ rng.normal(size=20)
    truth /= truth.std()
    y = 0.2 * truth + rng.normal(size=len(truth))  # the truth explains 4 % of the variance
    tr, te = slice(0, n_train), slice(n_train, None)
    oracle = spearmanr(truth[te], y[te]).statistic
    fit = ridge_cv(x[tr], y[tr])
    found = spearmanr(fit.predict(x[te]), y[te]).statistic
    assert 0.1 < oracle < 0.3
    assert found > 0.6 * oracle, (found, oracle)
    assert not fit.at_edge

    noise = rng.normal(size=n_train)
    none = ridge_cv(x[tr], noise)
    # in noise the CV shrinks to (nearly) the mean: predictions barely move
    assert none.alpha > 10 * fit.alpha
    assert none.predict(x[te]).std() < 0.05 * noise.std()
    assert fit.predict(x[te]).std() > 0.1 * y.std()


def test_ridge_is_exact_for_the_chosen_penalty():
    rng = np.random.default_rng(2)
    for n, p in ((300, 500), (400, 60)):  # dual and primal forms
        x = rng.normal(size=(n, p)) * rng.uniform(0.1, 3, p) + 1
        y = x[:, :3].sum(1) + rng.normal(size=n) * 3
        fit = ridge_cv(x, y)
        mu, sd = x.mean(0), x.std(0)
        ref = Ridge(alpha=fit.alpha).fit((x - mu) / sd, y)
        assert np.allclose(fit.coef, ref.coef_ / sd, atol=1e-9)
        assert np.allclose(fit.predict(x), ref.predict((x - mu) / sd), atol=1e-8)
        # the CV curve is the held-out error of that same ridge
        assert fit.cv_mse.min() == fit.cv_mse[list(fit.alphas).index(fit.alpha)]


def test_constant_columns_get_weight_zero_and_change_nothing_else():
    """Constant columns (the blank-input baseline's features are all constant) are left out
    of the fit: the same ridge as without them, with and without a fixed block."""
    rng = np.random.default_rng(5)
    for n, p in ((300, 500), (400, 60)):  # dual and primal forms
        x = rng.normal(size=(n, p)) * rng.uniform(0.1, 3, p) + 1
        y = x[:, :3].sum(1) + rng.normal(size=n) * 3
        m = rng.normal(size=(n, 4))
        wide = np.hstack([x[:, :7], np.full((n, 5), 2.5), x[:, 7:]])
        for kw in ({}, {"fixed": m, "alpha_fixed": 3.0}):
            fit, ref = ridge_cv(wide, y, **kw), ridge_cv(x, y, **kw)
            assert fit.alpha == ref.alpha and np.allclose(fit.cv_mse, ref.cv_mse, rtol=1e-9)
            assert np.all(fit.coef[7:12] == 0)
            assert np.allclose(np.delete(fit.coef, range(7, 12)), ref.coef, atol=1e-9)
            assert np.allclose(fit.predict(wide, m), ref.predict(x, m), atol=1e-8)
    blank = ridge_cv(np.ones((50, 8)), y[:50])
    assert np.all(blank.coef == 0) and np.allclose(blank.predict(np.ones((3, 8))), y[:50].mean())


def test_fixed_block_is_the_two_penalty_ridge():
    """fixed=: more columns with their own fixed penalty (metadata in the fused model) — the
    exact solution of the normal equations with two penalties."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 80)) * 2 + 1
    m = rng.normal(size=(300, 5)) * 4 - 3
    y = m @ rng.normal(size=5) + x[:, 0] + rng.normal(size=300)
    fit = ridge_cv(x, y, fixed=m, alpha_fixed=7.0)
    z = np.hstack([(x - x.mean(0)) / x.std(0), (m - m.mean(0)) / m.std(0)])
    pen = np.r_[np.full(80, fit.alpha), np.full(5, 7.0)]
    sol = np.linalg.solve(z.T @ z + np.diag(pen), z.T @ (y - y.mean()))
    assert np.allclose(fit.coef, sol[:80] / x.std(0), atol=1e-9)
    assert np.allclose(fit.fixed_coef, sol[80:] / m.std(0), atol=1e-9)
    assert np.allclose(fit.predict(x, m), y.mean() + z @ sol, atol=1e-8)


def test_standardize_in_place_is_the_same_bits_as_mean_and_std(monkeypatch):
    """probe._standardize skips std()'s full-size temporary: the same numbers to the bit (it
    relies on numpy summing axis 0 row after row; over several chunks and a wide range)."""
    monkeypatch.setattr(probe, "CHUNK_BYTES", 1000 * 9 * 8)   # chunks of 1,000 rows
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3456, 9)) * np.exp(rng.normal(size=(1, 9)) * 4) + 3
    x[:, 4] = 1.5   # a constant column: sd 1, as _scale gives it
    mu, sd = probe._scale(x)
    want = (x - mu) / sd
    got = x.copy()
    mu2, sd2 = probe._standardize(got)
    assert np.array_equal(mu, mu2) and np.array_equal(sd, sd2) and np.array_equal(got, want)


def test_float32_features_give_the_float64_ridge_to_the_bit_in_less_memory():
    """float32 input (the cached features) is widened a fold at a time: the same fit as on
    its float64 copy, the caller's array untouched, and ridge_cv's peak allocation stays near
    one float64 copy of x (it used to hold the float64 copy, a fold's copy and temporaries)."""
    import tracemalloc

    rng = np.random.default_rng(8)
    x64, _ = embeddings_like(20000, 256, seed=4)
    x = x64.astype(np.float32)
    y = x64[:, :4].sum(1) + rng.normal(size=len(x))
    m = rng.normal(size=(len(x), 3))
    before = x.copy()
    for kw in ({}, {"fixed": m, "alpha_fixed": 3.0, "groups": np.arange(len(x)) // 3}):
        a, b = ridge_cv(x, y, **kw), ridge_cv(x.astype(np.float64), y, **kw)
        assert a.alpha == b.alpha and np.array_equal(a.cv_mse, b.cv_mse)
        assert np.array_equal(a.coef, b.coef) and a.intercept == b.intercept
    # rows=: the fit on x[rows] without copying them first, to the bit
    rows = np.flatnonzero(rng.random(len(x)) < 0.7)
    for kw in ({}, {"fixed": m[rows], "alpha_fixed": 3.0, "groups": rows // 3}):
        a, b = ridge_cv(x, y[rows], rows=rows, **kw), ridge_cv(x[rows], y[rows], **kw)
        assert a.alpha == b.alpha and np.array_equal(a.cv_mse, b.cv_mse)
        assert np.array_equal(a.coef, b.coef) and a.intercept == b.intercept
    assert np.array_equal(x, before)
    tracemalloc.start()   # numpy reports its buffers to tracemalloc
    try:
        ridge_cv(x, y)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        ridge_cv(x, y[rows], rows=rows)
        peak_rows = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.4 * len(x) * x.shape[1] * 8, peak / (len(x) * x.shape[1] * 8)
    assert peak_rows < 1.4 * len(rows) * x.shape[1] * 8, peak_rows / (len(rows) * x.shape[1] * 8)


def probe_data(n=60, size=32, seed=0) -> CoverTensors:
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n, 1, 1, 1), generator=g).float()
    images = (base + torch.randint(-40, 40, (n, 3, size, size), generator=g)).clamp(0, 255)
    images = images.to(torch.uint8)
    pop = images.float().mean((1, 2, 3)) / 255 * 100
    cut = n * 2 // 3
    return CoverTensors(images, pop, torch.arange(cut), torch.arange(cut, n), f"probe-{n}-{seed}")


def probe_cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"model": "test_resnet", "image_size": 32, "freeze_backbone": True,
                          "augment": False, "head": "ridge", "progress": False,
                          "blank_baseline": False, **kw}).validated()


def test_cv_never_sees_val_rows():
    """Poison the val rows' targets: the chosen penalty and the head are the same to the bit."""
    data = probe_data()
    clean, _, meta = run_probe(probe_cfg(), data)
    poisoned_pop = data.popularity.clone()
    poisoned_pop[data.val_idx] = torch.where(poisoned_pop[data.val_idx] > 50, 0.0, 100.0)
    poisoned = CoverTensors(data.images, poisoned_pop, data.train_idx, data.val_idx,
                            data.image_key)
    dirty, _, meta2 = run_probe(probe_cfg(), poisoned)
    assert meta["probe"]["alpha"] == meta2["probe"]["alpha"]
    for k, v in clean.model.head.state_dict().items():
        assert torch.equal(v, dirty.model.head.state_dict()[k]), k
    assert clean.val["mae"] != dirty.val["mae"]  # the poison did reach the val scores


def test_probe_checkpoint_predicts_what_was_scored(tmp_path):
    data = probe_data()
    result, blank, meta = run_probe(probe_cfg(blank_baseline=True), data)
    assert meta["output"] == "linear" and meta["config"]["head"] == "ridge"
    assert result.val["spearman"] > 0.5  # brightness is visible to any backbone
    # blank inputs: constant features, so the ridge can only predict the train mean
    assert np.allclose(blank.val_pred * 100, result.train_mean, atol=1e-3)
    path = tmp_path / "model.pt"
    save_checkpoint(path, result.model, **meta)
    got = load_predictor(path).predict_uint8(data.images[data.val_idx])
    assert np.allclose(got, result.val_pred * 100, atol=1e-3)


@pytest.mark.parametrize("kw, match", [
    ({"freeze_backbone": False}, "set train.freeze_backbone=true"),
    ({"augment": True}, "set train.augment=false"),
    ({"head_hidden": 8}, "set train.head_hidden=0"),
])
def test_ridge_needs_a_frozen_plain_linear_head(kw, match):
    with pytest.raises(CoverpopError, match=match):
        run_probe(probe_cfg(**kw), probe_data())


def test_head_is_a_checked_param():
    with pytest.raises(CoverpopError, match="train.head='lasso' is not one of sgd, ridge"):
        TrainConfig.from_params({"train": {"head": "lasso"}})


def test_frozen_sgd_head_steps_at_frozen_lr():
    """The SGD head on a frozen backbone steps at train.frozen_lr (a head alone overfits at
    train.lr within an epoch); a full fine-tune keeps train.lr."""
    from coverpop.train.data import resolve_normalization
    from coverpop.train.loop import fit
    from coverpop.train.pretrained import resolve_weights

    data = probe_data()
    w = resolve_weights("test_resnet", False)
    mean, std = resolve_normalization("imagenet", (w.mean, w.std))
    common = {"model": "test_resnet", "image_size": 32, "epochs": 1, "batch_size": 16,
              "progress": False, "warmup_epochs": 0, "lr_schedule": "constant",
              "augment": False, "lr": 1e-2, "frozen_lr": 3e-4, "blank_baseline": False}
    frozen = fit(TrainConfig(**common, freeze_backbone=True).validated(), data, w, mean, std)
    full = fit(TrainConfig(**common).validated(), data, w, mean, std)
    assert frozen.history[0]["lr"] == pytest.approx(3e-4)
    assert full.history[0]["lr"] == pytest.approx(1e-2)
    with pytest.raises(CoverpopError, match="train.frozen_lr=0"):
        TrainConfig.from_params({"train": {"frozen_lr": 0}})


@pytest.mark.slow  # a stage process or a pipeline: seconds
def test_train_stage_with_head_ridge_writes_a_linear_checkpoint(tmp_path):
    """stages/train.py with train.head=ridge: the probe, its metrics and the usual checkpoint."""
    from test_train_stage import make_workspace, read_metrics, run_stage

    root = make_workspace(tmp_path, n=40, model="test_resnet", freeze_backbone=True,
                          head="ridge")
    proc = run_stage(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train: ridge probe, alpha" in proc.stdout
    ckpt = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=False)
    assert ckpt["output"] == "linear" and ckpt["probe"]["folds"] == 5
    m = read_metrics(root)
    assert {"val", "best", "blank_baseline"} <= set(m) and "spearman" in m["best"]["val"]
    assert (root / "metrics" / "train" / "live" / "plots" / "images" / "first_batch.png").is_file()


def test_the_feature_pass_reads_the_image_cache_a_batch_at_a_time(monkeypatch):
    """The by-content feature pass over covers in the memory-mapped cache never gathers more
    than one batch of them into RAM (indexing the cache with every missing row at once held
    3 GB at 60k covers of 128 px), and gives the features of the plain in-memory pass."""
    from coverpop.train.image_cache import _Mapped, cached_images

    plain = probe_data(n=300)
    hashes = [f"{i:064x}" for i in range(300)]
    images = cached_images(hashes, (3, 32, 32), "probe-batches",
                           lambda i: plain.images[i].numpy(), progress=False)
    gathered = []
    real_gather = _Mapped.gather
    monkeypatch.setattr(_Mapped, "gather",
                        lambda self, slots: gathered.append(np.size(slots)) or real_gather(self, slots))
    mapped = CoverTensors(images, plain.popularity, plain.train_idx, plain.val_idx,
                          plain.image_key, hashes=hashes)
    result, _, _ = run_probe(probe_cfg(), mapped)
    monkeypatch.setattr(_Mapped, "gather", real_gather)
    assert gathered and max(gathered) <= 128 < len(hashes)   # embeddings.compute's batch size
    reference, _, _ = run_probe(probe_cfg(), plain)            # tensors in RAM, no hashes
    assert np.allclose(result.val_pred, reference.val_pred, atol=1e-4)
