"""A linear probe for frozen backbones: closed-form ridge regression on the cached embeddings,
its penalty chosen by k-fold cross-validation on the train split only.

Why: on real covers the signal is weak (Spearman about 0.1), and an SGD head on 1,000-odd covers
overfits within an epoch. A ridge fit is exact, takes a second, and its one knob (the penalty) is
chosen by cross-validation instead of by watching val loss. One eigendecomposition per fold
serves every penalty on the grid, so the whole search costs `folds + 1` of them.

`train.head: ridge` (with `train.freeze_backbone: true`) fits this instead of the SGD head and
writes the same checkpoint: the ridge weights become the model's Linear head. The ridge fits the
popularity itself, so the checkpoint's output is `linear` whatever `train.output` says (a sigmoid
head would need the ridge to fit logits of popularity, which the zeros make meaningless).

`ridge_cv` also takes a second block of columns with a fixed penalty (`fixed=`): the evaluate
stage fits "cover features + metadata" that way, so metadata is shrunk exactly as in the
metadata-only model and only the cover features' penalty is cross-validated.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from coverpop.core.errors import CoverpopError
from coverpop.train import distributed as dist
from coverpop.train import embeddings, gram
from coverpop.train.data import CoverTensors, batch_grid, resolve_normalization, take
from coverpop.train.loop import (
    FitResult,
    TrainConfig,
    _flag,
    checkpoint_meta,
    resolve_device,
    val_metrics,
)
from coverpop.train.models import TARGET_SCALE, CoverRegressor, is_vit_like, timm_kwargs
from coverpop.train.pretrained import Weights, resolve_weights

FOLDS = 5
# Penalties on standardised features: from almost least squares to almost the mean. Wide on
# purpose: a dozen metadata columns want ~1, 1,000+ weak embedding dimensions want 1e4–1e6.
ALPHAS = np.logspace(-3, 8, 45)


@dataclass
class RidgeFit:
    """A fitted ridge: prediction = intercept + X·coef (+ M·fixed_coef), on raw (unscaled) inputs."""

    coef: np.ndarray
    intercept: float
    alpha: float                 # the penalty cross-validation chose (on standardised columns)
    alphas: np.ndarray           # the grid searched
    cv_mse: np.ndarray           # mean held-out squared error per penalty
    fixed_coef: np.ndarray | None = None

    def predict(self, x, m=None) -> np.ndarray:
        out = self.intercept + np.asarray(x, np.float64) @ self.coef
        if self.fixed_coef is not None:
            out = out + np.asarray(m, np.float64) @ self.fixed_coef
        return out

    @property
    def at_edge(self) -> bool:
        """The chosen penalty is the grid's smallest or largest: the optimum may lie beyond."""
        return bool(self.alpha in (self.alphas[0], self.alphas[-1]))


def _scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = x.mean(0), x.std(0)
    return mu, np.where(sd > 1e-12, sd, 1.0)  # a constant column gets weight 0, not NaN


CHUNK_BYTES = 4 * 2**20   # the helpers below work a few MB of float64 rows at a time


def _chunk(x: np.ndarray) -> int:
    """Rows per chunk of x (float64 bytes per row: the temporaries' size)."""
    return max(1, CHUNK_BYTES // (8 * max(1, int(np.prod(x.shape[1:])))))


def _rows64(x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """x[rows] (all rows when None) as a new float64 array. float32 rows are widened a chunk at
    a time, so no full-size float32 copy sits next to the float64 one (f32 -> f64 is exact);
    float64 is copied as before (x[rows] keeps x's layout, and with it the summation order)."""
    if x.dtype == np.float64:
        return x.copy() if rows is None else x[rows]
    n, c = len(x) if rows is None else len(rows), _chunk(x)
    out = np.empty((n, *x.shape[1:]), np.float64)
    for i in range(0, n, c):
        out[i:i + c] = x[i:i + c] if rows is None else x[rows[i:i + c]]
    return out


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale float64 `x` in place; returns _scale(x) as it was. The same bits as
    `(x - mu) / sd` with `x.std(0)`, without std's full-size temporary: for C-ordered x numpy
    sums axis 0 row after row, and so does the chunked sum of squares here (checked in
    tests/test_probe.py). Other layouts sum pairwise: they take _scale's way."""
    if not x.flags.c_contiguous:
        mu, sd = _scale(x)
        x -= mu
        x /= sd
        return mu, sd
    mu = x.mean(0)
    x -= mu
    sq, c = np.zeros(x.shape[1:]), _chunk(x)
    for i in range(0, len(x), c):
        part = x[i:i + c] * x[i:i + c]
        # the running sum rides along as the first row: the same additions in the same order
        sq = part.sum(0) if i == 0 else np.add.reduce(np.vstack([sq[None], part]), 0)
    sd = np.sqrt(sq / len(x))
    sd = np.where(sd > 1e-12, sd, 1.0)  # a constant column gets weight 0, not NaN
    x /= sd
    return mu, sd


class _Solver:
    """Ridge on one training set, solved for every penalty at once.

    Minimises ||y − Z·w − F·b||² + α·||w||² + α_f·||b||² over standardised, centred Z (and F, the
    fixed-penalty block). For fixed w the best b leaves (y − Zw)ᵀ(I − H)(y − Zw) with
    H = F(FᵀF + α_f)⁻¹Fᵀ, so with R = (I − H)^½ it is plain ridge of R·y on R·Z: one
    eigendecomposition then gives w for every α. R comes from F's SVD (F has few columns).
    """

    def __init__(self, x, y, fixed=None, alpha_f=None):
        """`x` is this solver's own float64 copy: it is standardised in place (at 50k covers ×
        1,280 features each float64 copy is half a gigabyte, so no step makes another)."""
        self.mu, self.sd = _standardize(x)
        self.y_mean = float(y.mean())
        z, yc = x, y - self.y_mean
        self.yc, self.f = yc, None
        self.z = None   # kept only where coefs() needs it (the fixed block): half a GB
        if fixed is not None:
            self.z = z
            self.f_mu, self.f_sd = _scale(fixed)
            f = (fixed - self.f_mu) / self.f_sd
            uf, sf, vft = np.linalg.svd(f, full_matrices=False)
            d = 1 - np.sqrt(alpha_f / (sf ** 2 + alpha_f))
            # z − uf·(…) as one new array (self.z stays unrotated), not a product and a difference
            rot = uf @ (d[:, None] * (uf.T @ z))
            z = np.subtract(z, rot, out=rot)
            del rot
            yc_r = yc - uf @ (d * (uf.T @ yc))
            self.f, self.uf, self.vf = f, uf, vft.T
            self.gf = sf / (sf ** 2 + alpha_f)
        else:
            yc_r = yc
        # A constant column (all zero once standardised) gets weight 0 whatever the penalty:
        # left out of the eigendecomposition (the blank-input baseline's are all constant).
        # max and min instead of abs().max(): no full-size temporary.
        nonzero = (z.max(0, initial=0) > 0) | (z.min(0, initial=0) < 0)
        self.p, self.keep = z.shape[1], np.flatnonzero(nonzero)
        z = z[:, self.keep] if len(self.keep) < self.p else z
        # One eigendecomposition of the smaller Gram matrix (several times faster than an SVD):
        # w(α) = B·diag(1/(λ + α))·c, in dual form (ZᵀU, Uᵀy) when rows are fewer than columns.
        if not z.shape[1]:
            self.lam, self.basis, self.c = np.zeros(0), np.zeros((0, 0)), np.zeros(0)
        elif len(z) <= z.shape[1]:
            self.lam, u = np.linalg.eigh(z @ z.T)
            self.basis, self.c = z.T @ u, u.T @ yc_r
        else:
            self.lam, v = np.linalg.eigh(z.T @ z)
            self.basis, self.c = v, v.T @ (z.T @ yc_r)
        self.lam = np.clip(self.lam, 0, None)  # rounding leaves tiny negatives

    def coefs(self, alphas) -> tuple[np.ndarray, np.ndarray | None]:
        """(w, b) on standardised columns, one column per penalty."""
        alphas = np.atleast_1d(alphas)
        w = self.basis @ (self.c[:, None] / (self.lam[:, None] + alphas))
        if len(self.keep) < self.p:
            full = np.zeros((self.p, len(alphas)))
            full[self.keep] = w
            w = full
        if self.f is None:
            return w, None
        resid = self.yc[:, None] - self.z @ w
        return w, self.vf @ (self.gf[:, None] * (self.uf.T @ resid))

    def predict(self, x, alphas, fixed=None) -> np.ndarray:
        w, b = self.coefs(alphas)
        z = np.subtract(x, self.mu, dtype=np.float64)   # one temporary, scaled in place
        z /= self.sd
        out = self.y_mean + z @ w
        if b is not None:
            out = out + ((fixed - self.f_mu) / self.f_sd) @ b
        return out


def ridge_cv(x, y, *, fixed=None, alpha_fixed: float | None = None, folds: int = FOLDS,
             seed: int = 0, alphas=ALPHAS, groups=None, rows=None) -> RidgeFit:
    """Ridge of y on x, the penalty chosen by `folds`-fold CV (held-out squared error) on these
    rows only: pass the train split and nothing else. `fixed`: more columns, penalised by
    `alpha_fixed` (not searched). `groups`: the inner folds keep each group whole (an album
    never both fits and scores a penalty). `rows`: fit on x[rows] (y, fixed and groups are
    those rows') without copying them first: the same fit as ridge_cv(x[rows], ...)."""
    if rows is not None:
        x = np.asarray(x)
        if x.dtype == np.float32 and x.flags.c_contiguous:   # each solve takes its own rows
            return _checked_fit(x, y, fixed, alpha_fixed, folds, seed, alphas, groups, False,
                                 np.asarray(rows))
        x = x[rows]   # float64 (or to convert): as without rows
    given = x
    x = np.asarray(x)
    if not (x.dtype == np.float32 and x.flags.c_contiguous):
        x = np.asarray(x, np.float64)   # float32 stays: each solve widens its rows (_rows64)
    # a conversion made x (a new array, not a view of the caller's tensor or frame): the last
    # solve may standardise it in place
    owned = x is not given and x.flags.owndata
    return _checked_fit(x, y, fixed, alpha_fixed, folds, seed, alphas, groups, owned, None)


def _checked_fit(x, y, fixed, alpha_fixed, folds, seed, alphas, groups, owned, rows):
    n = len(x) if rows is None else len(rows)
    y = np.asarray(y, np.float64)
    fixed = None if fixed is None else np.asarray(fixed, np.float64)
    if fixed is not None and alpha_fixed is None:
        raise ValueError("fixed columns need alpha_fixed")
    if n < 2 * folds:
        raise CoverpopError(f"ridge probe: {n} train rows are too few for {folds}-fold "
                            f"cross-validation")
    alphas = np.asarray(alphas, np.float64)
    # One BLAS thread: these mid-sized eigendecompositions gain little from more, and lose 10×
    # when the cores are shared (OpenBLAS threads spin against each other).
    with threadpool_limits(1, user_api="blas"):
        if n > x.shape[1]:   # more rows than columns: from block statistics (gram.py)
            grams, shift = _cv_grams(x, y, fixed, folds, seed, groups, rows)
            return _gram_fit(grams, shift, x.shape[1], alphas, alpha_fixed)
        return _ridge_cv(x, y, fixed, alpha_fixed, folds, seed, alphas, groups, owned, rows)


def ridge_cv_pair(x, y, fixed, alpha_fixed: float, *, folds: int = FOLDS, seed: int = 0,
                  alphas=ALPHAS, groups=None, rows=None) -> tuple[RidgeFit, RidgeFit]:
    """(ridge_cv(x, y, fixed=fixed, alpha_fixed=...), ridge_cv(x, y)) with the other arguments
    shared: both from one pass over the rows where they outnumber x's columns (the evaluate
    stage's "+ cover" and "covers only" models in each outer fold)."""
    n = len(y)
    if n <= x.shape[1] or n < 2 * folds:
        kw = dict(folds=folds, seed=seed, alphas=alphas, groups=groups, rows=rows)
        return ridge_cv(x, y, fixed=fixed, alpha_fixed=alpha_fixed, **kw), ridge_cv(x, y, **kw)
    alphas, p = np.asarray(alphas, np.float64), x.shape[1]
    with threadpool_limits(1, user_api="blas"):
        grams, shift = _cv_grams(np.asarray(x), np.asarray(y, np.float64),
                                 np.asarray(fixed, np.float64), folds, seed, groups, rows)
        cols = np.arange(p)
        return (_gram_fit(grams, shift, p, alphas, alpha_fixed),
                _gram_fit([g.take(cols) for g in grams], shift[:p], p, alphas, None))


def _cv_split(n, folds, seed, groups):
    """(fit rows, held-out rows) of each CV fold: scikit-learn's KFold(shuffle=True) folds, or
    with groups its GroupKFold(shuffle=True) folds (the sorted distinct groups permuted, then cut
    into `folds` runs), to the index (tests/test_gram.py compares them). Here, not sklearn's:
    its np.isin on album-id strings took 40 s a split at 56,000 albums, and importing
    sklearn.model_selection cost every train stage a second."""
    rng = np.random.RandomState(seed)
    if groups is None:
        order = np.arange(n)
        rng.shuffle(order)
        sizes = np.full(folds, n // folds)
        sizes[:n % folds] += 1
        fold_of = np.empty(n, np.int64)
        fold_of[order] = np.repeat(np.arange(folds), sizes)
    else:
        _, codes = np.unique(np.asarray(groups), return_inverse=True)
        n_groups = int(codes.max()) + 1 if n else 0
        if n_groups < folds:
            raise CoverpopError(f"ridge probe: {n_groups} groups are too few for {folds}-fold "
                                f"cross-validation")
        fold_of_group = np.empty(n_groups, np.int64)
        for f, part in enumerate(np.array_split(rng.permutation(n_groups), folds)):
            fold_of_group[part] = f
        fold_of = fold_of_group[codes.ravel()]
    for f in range(folds):
        yield np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)


def _cv_blocks(n, folds, seed, groups) -> list[np.ndarray]:
    """The held-out rows of each CV fold (they partition range(n))."""
    return [held for _, held in _cv_split(n, folds, seed, groups)]


def _cv_grams(x, y, fixed, folds, seed, groups, rows):
    """The Gram statistics of each CV fold's held-out rows (gram.block_grams), and their shift."""
    n = len(y)
    return gram.block_grams(x, y, _cv_blocks(n, folds, seed, groups), fixed=fixed, rows=rows)


def _gram_fit(grams, shift, p, alphas, alpha_fixed) -> RidgeFit:
    coef, intercept, best, cv_mse = gram.fit_cv(grams, shift, p, alphas, alpha_fixed)
    return RidgeFit(coef[:p], intercept, best, alphas, cv_mse,
                    coef[p:] if len(coef) > p else None)


def _ridge_cv(x, y, fixed, alpha_fixed, folds, seed, alphas, groups=None, owned=False,
              rows=None) -> RidgeFit:
    """`rows`: x's rows to fit on (float32 x only; None: all)."""
    at = (lambda r: r) if rows is None else (lambda r: rows[r])   # fold rows -> rows of x
    n = len(x) if rows is None else len(rows)
    sq_err = np.zeros(len(alphas))
    for fit_rows, held in _cv_split(n, folds, seed, groups):
        part = _Solver(_rows64(x, at(fit_rows)), y[fit_rows],
                       None if fixed is None else fixed[fit_rows], alpha_fixed)
        pred = part.predict(x[at(held)], alphas, None if fixed is None else fixed[held])
        sq_err += ((pred - y[held, None]) ** 2).sum(0)
        del part, pred   # before the next fold's copy is made, not after
    cv_mse = sq_err / n
    best = float(alphas[int(np.argmin(cv_mse))])
    # the caller's x unchanged: a float64 x of its own is standardised in place
    full = _Solver(x if owned and x.dtype == np.float64 and rows is None else _rows64(x, rows),
                   y, fixed, alpha_fixed)
    w, b = full.coefs(best)
    coef = w[:, 0] / full.sd
    intercept = full.y_mean - float(full.mu @ coef)
    fixed_coef = None
    if b is not None:
        fixed_coef = b[:, 0] / full.f_sd
        intercept -= float(full.f_mu @ fixed_coef)
    return RidgeFit(coef, intercept, best, alphas, cv_mse, fixed_coef)


# --- the train stage's probe ---------------------------------------------------------------

def check_config(cfg: TrainConfig) -> None:
    if not cfg.freeze_backbone:
        raise CoverpopError("params.yaml: train.head=ridge fits a linear probe on frozen "
                            "features: set train.freeze_backbone=true")
    if cfg.augment:
        raise CoverpopError("params.yaml: train.head=ridge fits on fixed embeddings of the covers "
                            "as they are: set train.augment=false")
    if cfg.head_hidden:
        raise CoverpopError("params.yaml: train.head=ridge is a linear head: set "
                            "train.head_hidden=0")


def frozen_model(cfg: TrainConfig, weights: Weights, mean, std
                 ) -> tuple[CoverRegressor, torch.device, bool, bool]:
    """The model (head untrained) on its device, eval mode, and (device, channels_last, amp)."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # a randomly initialised frozen backbone is seeded as in fit
    model = CoverRegressor(cfg.model, cfg.image_size, mean, std, "linear", 0, weights=weights)
    model.to(device).eval()
    # channels_last: 1.5x less CPU for EfficientNet-Lite on CPU (same features to 1e-5)
    channels_last = _flag(cfg.channels_last, not is_vit_like(cfg.model))
    amp = _flag(cfg.amp, device.type == "cuda")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model, device, channels_last, amp


def frozen_key(cfg: TrainConfig, weights: Weights, mean, std, image_key: str, amp: bool) -> str:
    """The embedding cache key: the backbone, its input, the precision, and `image_key` (the
    image set, or "by-content" for the per-cover cache)."""
    return embeddings.embedding_key(
        cfg.model, weights.key + (f":seed{cfg.seed}" if weights.kind == "none" else ""),
        cfg.image_size, mean, std, image_key, timm_kwargs(cfg.model, cfg.image_size),
        "bf16" if amp else "fp32")


def frozen_features(cfg: TrainConfig, data: CoverTensors, weights: Weights, mean, std
                    ) -> tuple[CoverRegressor, torch.Tensor]:
    """The model (head untrained) and its frozen pooled features for every row of `data`,
    through the same embedding cache (and cache key) as the SGD head's frozen path. Covers with
    known sha256 are cached one by one (`embeddings.by_content`): evaluate then computes only
    the covers train never saw."""
    model, device, channels_last, amp = frozen_model(cfg, weights, mean, std)
    show = cfg.progress and dist.is_main()

    def compute(images):
        return embeddings.compute(model, images, device, amp=amp, channels_last=channels_last,
                                  progress=show)

    if data.hashes is not None and not data.blank_inputs:
        key = frozen_key(cfg, weights, mean, std, "by-content", amp)
        # take(): the rows as a lazy subset of the memory-mapped cache, read a batch at a time
        # (indexing would copy every missing cover into RAM: 3 GB for 60k covers at 128 px)
        feats, _ = dist.main_first(lambda: embeddings.by_content(
            key, data.hashes, lambda rows: compute(take(data.images, torch.from_numpy(rows)))))
    else:
        key = frozen_key(cfg, weights, mean, std, data.image_key, amp)

        def make():
            images = data.images[:1] if data.blank_inputs else data.images
            feats = compute(images)
            return feats.expand(len(data.images), -1).clone() if len(images) == 1 else feats

        feats, _ = dist.main_first(lambda: embeddings.cached(key, make))
    return model.cpu().to(memory_format=torch.contiguous_format).eval(), feats


def fit_probe(cfg: TrainConfig, data: CoverTensors, weights: Weights, mean, std, live=None
              ) -> tuple[FitResult, RidgeFit]:
    """Ridge on the frozen features of the train rows (CV on them alone); val is only scored."""
    t0 = time.perf_counter()
    model, feats = frozen_features(cfg, data, weights, mean, std)
    y = data.popularity.double().numpy() / TARGET_SCALE
    tr, va = data.train_idx.numpy(), data.val_idx.numpy()
    # the train rows read in place, widened a fold at a time: no copy of them beside the fits
    ridge = ridge_cv(feats.numpy(), y[tr], seed=cfg.seed, rows=tr)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(ridge.coef).float()[None])
        model.head.bias.fill_(ridge.intercept)
    # Scored through the model itself: what is scored is what the checkpoint predicts.
    with torch.no_grad():
        train_pred = model.forward_head(feats[tr].float()).double().numpy()
        val_pred = model.forward_head(feats[va].float()).double().numpy()
    row = {"epoch": 0, "train_loss": float(np.mean((train_pred - y[tr]) ** 2))}
    val = {}
    if len(va):
        val = val_metrics(y[va] * TARGET_SCALE, val_pred * TARGET_SCALE)
        row.update(val_loss=float(np.mean((val_pred - y[va]) ** 2)),
                   **{f"val_{k}": v for k, v in val.items()})
    seconds = time.perf_counter() - t0
    row["seconds"] = seconds
    first = None
    if not data.blank_inputs:
        with torch.no_grad():
            first = batch_grid(model.normalize(data.images[data.train_idx[:64]]))
    if live is not None:
        for k, v in row.items():
            if k not in ("epoch", "seconds"):
                live.log_metric(k.replace("_", "/", 1), v)
        if first is not None:
            live.log_image("first_batch.png", first)
        live.next_step()
    result = FitResult(model, [row], 0, val, float(y[tr].mean()) * TARGET_SCALE, first,
                       len(tr) / max(seconds, 1e-9), val_pred.astype(np.float32))
    return result, ridge


def run_probe(cfg: TrainConfig, data: CoverTensors, live=None
              ) -> tuple[FitResult, FitResult | None, dict]:
    """`train.head: ridge`: the probe, then (if asked) the same on blank inputs. Returns what
    loop.run returns: (result, blank result or None, checkpoint metadata)."""
    check_config(cfg)
    cfg = dataclasses.replace(cfg, output="linear")  # the ridge fits popularity, not its logit
    weights = resolve_weights(cfg.model, cfg.pretrained)
    mean, std = resolve_normalization(cfg.normalization, (weights.mean, weights.std),
                                      take(data.images, data.train_idx))
    result, ridge = fit_probe(cfg, data, weights, mean, std, live=live)
    if cfg.progress and dist.is_main():
        edge = " (at the edge of the grid)" if ridge.at_edge else ""
        print(f"ridge probe: {FOLDS}-fold CV on {len(data.train_idx)} train covers chose "
              f"alpha {ridge.alpha:.3g}{edge}", flush=True)
    blank = None
    if cfg.blank_baseline:
        blank, _ = fit_probe(cfg, data.blank(), weights, mean, std)
    meta = checkpoint_meta(cfg, result, weights, mean, std)
    meta["probe"] = {"alpha": ridge.alpha, "folds": FOLDS, "at_edge": ridge.at_edge}
    return result, blank, meta
