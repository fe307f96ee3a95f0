"""Input-free baselines the image model must beat: the train mean, random draws from the train
distribution, and a genre/year-only model (what metadata alone explains)."""

import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer


def mean_baseline(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    return np.full(len(test), train["popularity"].mean())


def random_baseline(train: pd.DataFrame, test: pd.DataFrame, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(train["popularity"].to_numpy(), size=len(test))


def genre_year_baseline(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray | None:
    """Ridge on one-hot genre and a spline of year; None when the table has neither column."""
    cols = [c for c in ("genre", "year") if c in train.columns and train[c].notna().any()]
    if not cols:
        return None
    parts = []
    if "genre" in cols:
        parts.append((OneHotEncoder(handle_unknown="ignore"), ["genre"]))
    if "year" in cols:
        parts.append((SplineTransformer(n_knots=4, degree=2), ["year"]))
    model = make_pipeline(make_column_transformer(*parts), RidgeCV(alphas=np.logspace(-2, 3, 12)))

    def prep(df):
        df = df[cols].copy()
        if "genre" in cols:
            df["genre"] = df["genre"].fillna("unknown").astype(str)
        if "year" in cols:
            df["year"] = pd.to_numeric(df["year"]).fillna(train["year"].median())
        return df

    model.fit(prep(train), train["popularity"])
    return np.clip(model.predict(prep(test)), 0, 100)
