import numpy as np
import pandas as pd

from coverpop.core.metrics import score
from coverpop.evaluate.baselines import (
    genre_year_baseline,
    mean_baseline,
    random_baseline,
)


def frame(n, seed):
    rng = np.random.default_rng(seed)
    genre = rng.choice(["pop", "jazz", "metal"], n)
    year = rng.integers(2000, 2024, n)
    pop = pd.Series(genre).map({"pop": 50, "jazz": 20, "metal": 30}) + (year - 2000) + rng.normal(0, 5, n)
    return pd.DataFrame({"genre": genre, "year": year, "popularity": pop.clip(0, 100)})


def test_genre_year_explains_metadata_effects():
    train, test = frame(600, 0), frame(200, 1)
    y = test["popularity"].to_numpy()
    meta = genre_year_baseline(train, test)
    assert score(y, meta, "mae") < 0.5 * score(y, mean_baseline(train, test), "mae")


def test_genre_year_needs_a_column():
    df = pd.DataFrame({"popularity": [1.0, 2.0]})
    assert genre_year_baseline(df, df) is None


def test_random_draws_from_train_distribution():
    train, test = frame(600, 0), frame(5000, 1)
    draws = random_baseline(train, test, seed=0)
    assert set(draws) <= set(train["popularity"])
    assert abs(draws.mean() - train["popularity"].mean()) < 1.5
