"""Train/val/test split: grouped (album or artist never in two splits), stratified by popularity."""

import math
import sys
import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from coverpop.core.errors import CoverpopError
from coverpop.tracks.selection import popularity_bins


class FastStratifiedGroupKFold(StratifiedGroupKFold):
    """scikit-learn's StratifiedGroupKFold, the same folds bit for bit, with the search for each
    group's fold done for all folds at once: sklearn tries them one by one in Python (about
    0.5 ms a group: minutes at 300,000 covers). tests/test_splitting.py compares the two."""

    def _find_best_fold(self, y_counts_per_fold, y_cnt, group_y_counts):
        k = len(y_counts_per_fold)
        proposed = np.repeat(y_counts_per_fold[None], k, axis=0)   # fold i gets the group
        proposed[np.arange(k), np.arange(k)] += group_y_counts
        # the same reductions as sklearn's (std over folds, mean over classes): the same bits
        evals = np.mean(np.std(proposed / y_cnt.reshape(1, 1, -1), axis=1), axis=1).tolist()
        samples = y_counts_per_fold.sum(axis=1).tolist()
        best, min_eval, min_samples = None, np.inf, np.inf
        for i in range(k):   # sklearn's rule: lowest spread; near-ties go to the smaller fold
            close = min_eval != np.inf and abs(evals[i] - min_eval) <= 1e-8 + 1e-5 * abs(min_eval)
            if evals[i] < min_eval or (close and samples[i] < min_samples):
                best, min_eval, min_samples = i, evals[i], samples[i]
        return best


def _carve(y: np.ndarray, groups: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """Boolean mask of about `frac` of rows, whole groups only, each popularity bin in proportion."""
    k = max(2, round(1 / frac))
    folds = FastStratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():   # said once, in our words, by split()
        warnings.filterwarnings("ignore", message="The least populated class",
                                category=UserWarning)
        _, held = next(folds.split(np.zeros(len(y)), y, groups))
    mask = np.zeros(len(y), dtype=bool)
    mask[held] = True
    return mask


def split_groups(df: pd.DataFrame, group_by: str = "album") -> np.ndarray:
    """The group of every row (album or artist): a group never spans two splits (nor folds)."""
    column = "album_id" if group_by == "album" else "artist_name"
    if column not in df.columns or df[column].isna().all():
        raise CoverpopError(f"split.group_by={group_by} needs column '{column}'")
    return df[column].fillna(df["track_id"]).astype(str).to_numpy()


def split(df: pd.DataFrame, group_by: str = "album", val: float = 0.15, test: float = 0.15,
          seed: int = 0, n_bins: int = 5) -> pd.Series:
    """Labels train/val/test; group_by (album | artist), val and test as checked by the params
    schema."""
    if len(df) < 10:
        raise CoverpopError(f"only {len(df)} covers left after dedupe: too few to split")
    groups = split_groups(df, group_by)
    y = popularity_bins(df["popularity"], n_bins)
    note = sparse_bins_note(y, n_bins, max(2, round(1 / test)))
    if note:
        print(f"dedupe_split: {note}", file=sys.stderr)
    labels = np.array(["train"] * len(df), dtype=object)
    is_test = _carve(y, groups, test, seed)
    labels[is_test] = "test"
    rest = np.flatnonzero(~is_test)
    is_val = _carve(y[rest], groups[rest], val / (1 - test), seed + 1)
    labels[rest[is_val]] = "val"
    return pd.Series(labels, index=df.index, name="split")


def sparse_bins_note(y: np.ndarray, n_bins: int, parts: int) -> str:
    """What scikit-learn's "least populated class" warning means here, in one line ('' when no
    popularity bin is too small to be spread over the splits in proportion)."""
    counts = np.bincount(y, minlength=n_bins)
    sparse = [(b, int(c)) for b, c in enumerate(counts) if 0 < c < parts]
    if not sparse:
        return ""

    def span(b: int) -> str:
        return f"{math.ceil(b * 101 / n_bins)}-{math.ceil((b + 1) * 101 / n_bins) - 1}"

    what = ", ".join(f"popularity {span(b)}: {c} cover{'s' * (c != 1)}" for b, c in sparse)
    return (f"too few covers in some popularity ranges to stratify the test and val splits "
            f"({what}; at least {parts} each are needed): those covers go wherever their album "
            "falls, so the splits' popularity mix is a little off (fine for a small sample)")
