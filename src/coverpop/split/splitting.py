"""Train/val/test split: grouped (album or artist never in two splits), stratified by popularity."""

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from coverpop.core.errors import CoverpopError
from coverpop.tracks.selection import popularity_bins


def _carve(y: np.ndarray, groups: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """Boolean mask of about `frac` of rows, whole groups only, each popularity bin in proportion."""
    k = max(2, round(1 / frac))
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
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
    labels = np.array(["train"] * len(df), dtype=object)
    is_test = _carve(y, groups, test, seed)
    labels[is_test] = "test"
    rest = np.flatnonzero(~is_test)
    is_val = _carve(y[rest], groups[rest], val / (1 - test), seed + 1)
    labels[rest[is_val]] = "val"
    return pd.Series(labels, index=df.index, name="split")
