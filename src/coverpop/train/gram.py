"""Ridge from additive statistics: each block of rows reduced once to its Gram matrix and sums,
every fit of a cross-validation solved from sums and differences of those.

Why: a K-fold CV of a ridge on n rows × p columns refits it on K overlapping subsets. Done on
the rows, each refit is a pass of |subset|·p² over a float64 copy of its rows: about 5n rows of
Gram work per `ridge_cv`, and the evaluate stage's cross-fitting nests 2 of those in each of 5
outer folds (~40n rows, an n × p float64 copy per solve: 400 CPU s and gigabytes at 70,000
covers). The statistics of disjoint blocks add up, so "all but block j" is the total minus
block j: a whole CV costs one pass over its rows (n·p²) plus a p × p eigendecomposition per
fit, and no row is copied in full. Used where rows outnumber columns (the primal form);
`probe._Solver` solves the dual form for fewer rows than columns.

The same ridge as `probe._Solver`: columns standardised (population sd) and y centred on the
fitting rows; a `fixed` block after the searched columns, penalised by `alpha_fixed`, profiled
out (M = Gzz − Gzf (Gff + α_f)⁻¹ Gfz, the Gram of (I − H)^½·Z); constant columns get weight 0.
Rows enter shifted by a reference (the mean of the first rows): a column's centred sums then
lose few digits to cancellation, and a column constant in the data is exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK_BYTES = 32 * 2**20   # float64 rows per Gram update: large enough for BLAS's syrk to run fast
SHIFT_ROWS = 1024          # the reference: the mean of these many first rows (exact for a constant
                           # float32 column: 1,024 copies sum exactly in float64)


@dataclass
class Gram:
    """Sums over a set of rows of x' = x − shift (columns: the searched ones, then any fixed
    block) and of y."""

    n: int
    sx: np.ndarray     # Σ x'
    sxx: np.ndarray    # Σ x' x'ᵀ
    sxy: np.ndarray    # Σ x' y
    sy: float
    syy: float

    def __add__(self, o: Gram) -> Gram:
        return Gram(self.n + o.n, self.sx + o.sx, self.sxx + o.sxx, self.sxy + o.sxy,
                    self.sy + o.sy, self.syy + o.syy)

    def __sub__(self, o: Gram) -> Gram:
        return Gram(self.n - o.n, self.sx - o.sx, self.sxx - o.sxx, self.sxy - o.sxy,
                    self.sy - o.sy, self.syy - o.syy)

    def take(self, cols: np.ndarray) -> Gram:
        """The same rows' sums over some of the columns."""
        return Gram(self.n, self.sx[cols], self.sxx[np.ix_(cols, cols)], self.sxy[cols],
                    self.sy, self.syy)

    def sse(self, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
        """Σ (y − intercept − x'·coef)² over these rows, for each column of coef (p × A)."""
        fitted = self.sxy @ coef
        return (self.syy - 2 * intercept * self.sy - 2 * fitted + self.n * intercept ** 2
                + 2 * intercept * (self.sx @ coef) + (coef * (self.sxx @ coef)).sum(0))


def block_grams(x, y, blocks, fixed=None, rows=None) -> tuple[list[Gram], np.ndarray]:
    """One Gram per block (indices into y, fixed and rows; rows: x's rows, None for all), over
    x's columns then fixed's, and the shift they are taken about. float32 x is widened a chunk
    at a time (exactly): no full-size copy."""
    p = x.shape[1]
    q = p + (0 if fixed is None else fixed.shape[1])
    first = np.arange(min(SHIFT_ROWS, len(y)))
    shift = np.asarray(x[first if rows is None else rows[first]], np.float64).mean(0)
    if fixed is not None:
        shift = np.concatenate([shift, np.asarray(fixed[first], np.float64).mean(0)])
    step = max(1, CHUNK_BYTES // (8 * q))
    buf = np.empty((step, q))
    out = []
    for block in blocks:
        block = np.asarray(block)
        g = Gram(len(block), np.zeros(q), np.zeros((q, q)), np.zeros(q),
                 float(y[block].sum()), float(y[block] @ y[block]))
        for i in range(0, len(block), step):
            part = block[i:i + step]
            a = buf[:len(part)]
            a[:, :p] = x[part if rows is None else rows[part]]
            if fixed is not None:
                a[:, p:] = fixed[part]
            a -= shift
            g.sx += a.sum(0)
            g.sxx += a.T @ a    # syrk: numpy sees one operand
            g.sxy += y[part] @ a
        out.append(g)
    return out, shift


def _moments(g: Gram):
    """(mean of x', sd guarded, constant mask, standardised Gram, standardised x'ᵀy, ȳ)."""
    m = g.sx / g.n
    ybar = g.sy / g.n
    c = g.sxx - g.n * np.outer(m, m)
    var = np.diag(c) / g.n
    # constant on these rows: nothing left of the variance but rounding of the sums
    const = var <= np.maximum(1e-24, 1e-10 * np.diag(g.sxx) / g.n)
    sd = np.where(const, 1.0, np.sqrt(np.where(const, 1.0, var)))
    gz = c / np.outer(sd, sd)
    gy = (g.sxy - g.n * m * ybar) / sd
    gz[const] = 0.0
    gz[:, const] = 0.0
    gy[const] = 0.0
    return m, sd, const, gz, gy, ybar


class GramSolver:
    """The ridge on the rows `g` sums, for every penalty of the searched columns at once (the
    first `p` columns; the rest are the fixed block, penalised by alpha_f)."""

    def __init__(self, g: Gram, p: int, alpha_f: float | None = None):
        self.m, self.sd, const, gz, gy, self.ybar = _moments(g)
        self.p = p
        self.keep = np.flatnonzero(~const[:p])
        zz, zy = gz[np.ix_(self.keep, self.keep)], gy[self.keep]
        self.fixed = None
        if len(gz) > p:
            # profile the fixed block out: for given w its best b is A⁻¹(g_f − G_fz w)
            a = gz[p:, p:] + alpha_f * np.eye(len(gz) - p)
            fz, fy = gz[p:][:, self.keep], gy[p:]
            a_fz, a_fy = np.linalg.solve(a, fz), np.linalg.solve(a, fy)
            zz = zz - fz.T @ a_fz
            zy = zy - fz.T @ a_fy
            self.fixed = (a_fz, a_fy)
        self.zz, self.zy = zz, zy
        self.lam = self.basis = self.c = None

    def _eig(self):
        if self.lam is None:
            lam, v = np.linalg.eigh(self.zz) if len(self.zz) else (np.zeros(0), np.zeros((0, 0)))
            self.lam, self.basis, self.c = np.clip(lam, 0, None), v, v.T @ self.zy
        return self.lam, self.basis, self.c

    def coefs(self, alphas) -> tuple[np.ndarray, np.ndarray]:
        """(coef on x' for all columns, intercept on x'), one column / entry per penalty."""
        alphas = np.atleast_1d(np.asarray(alphas, np.float64))
        if len(alphas) == 1:   # one penalty (the final fit): a solve, not an eigendecomposition
            w = np.linalg.solve(self.zz + alphas[0] * np.eye(len(self.zz)), self.zy)[:, None] \
                if len(self.zz) else np.zeros((0, 1))
        else:
            lam, v, c = self._eig()
            w = v @ (c[:, None] / (lam[:, None] + alphas))
        std = np.zeros((len(self.sd), len(alphas)))
        std[self.keep] = w
        if self.fixed is not None:
            a_fz, a_fy = self.fixed
            std[self.p:] = a_fy[:, None] - a_fz @ w
        coef = std / self.sd[:, None]
        return coef, self.ybar - self.m @ coef


def fit_cv(grams: list[Gram], shift: np.ndarray, p: int, alphas: np.ndarray,
           alpha_fixed: float | None = None):
    """Penalty by CV over the blocks (each held out once), then the fit on all of them.
    Returns (coef on x, intercept on x, best penalty, held-out MSE per penalty)."""
    total = sum(grams[1:], grams[0])
    sq_err = np.zeros(len(alphas))
    for held in grams:
        coef, intercept = GramSolver(total - held, p, alpha_fixed).coefs(alphas)
        sq_err += held.sse(coef, intercept)
    cv_mse = sq_err / total.n
    best = float(alphas[int(np.argmin(cv_mse))])
    coef, intercept = GramSolver(total, p, alpha_fixed).coefs([best])
    coef = coef[:, 0]
    return coef, float(intercept[0] - shift @ coef), best, cv_mse
