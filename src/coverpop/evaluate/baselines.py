"""Input-free baselines the image model must beat: the train mean, random draws from the train
distribution, and a genre/year-only model (what metadata alone explains)."""

import numpy as np
import pandas as pd

from coverpop.evaluate.metadata import fit_metadata_only


def mean_baseline(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    return np.full(len(test), train["popularity"].mean())


def random_baseline(train: pd.DataFrame, test: pd.DataFrame, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(train["popularity"].to_numpy(), size=len(test))


def genre_year_baseline(train: pd.DataFrame, test: pd.DataFrame, seed: int = 0) -> np.ndarray | None:
    """Ridge on one-hot genre and a spline of year (penalty by CV on train): the metadata-only
    model of `metadata.py`, so `baseline_genre_year` and `metadata_only` are one model. None when
    the table has neither column."""
    fitted = fit_metadata_only(train, test, seed)
    return None if fitted is None else fitted[0]
