import numpy as np
import pandas as pd
import pytest

from coverpop.core.errors import CoverpopError
from coverpop.tracks.selection import popularity_bins, select_tracks


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    n = 20_000
    pop = np.where(rng.random(n) < 0.45, 0, rng.integers(1, 101, n))
    return pd.DataFrame({"track_id": [f"t{i}" for i in range(n)], "popularity": pop.astype(float),
                         "year": rng.integers(2000, 2024, n),
                         "genre": rng.choice(["pop", "rock", "jazz"], n)})


@pytest.mark.parametrize("strategy", ["random", "stratified", "balanced"])
def test_select_n_unique_and_seeded(table, strategy):
    a = select_tracks(table, 1000, strategy, seed=3)
    assert len(a) == 1000 and a["track_id"].is_unique
    assert a.equals(select_tracks(table, 1000, strategy, seed=3))
    assert not a.equals(select_tracks(table, 1000, strategy, seed=4))


def test_stratified_keeps_bin_shares(table):
    sel = select_tracks(table, 2000, "stratified", seed=0)
    full = np.bincount(popularity_bins(table["popularity"], 10), minlength=10) / len(table)
    got = np.bincount(popularity_bins(sel["popularity"], 10), minlength=10) / len(sel)
    assert np.abs(full - got).max() < 0.005


def test_balanced_takes_equal_counts_per_bin(table):
    sel = select_tracks(table, 1000, "balanced", seed=0)
    counts = np.bincount(popularity_bins(sel["popularity"], 10), minlength=10)
    assert counts.max() - counts.min() <= 1


def test_filters(table):
    sel = select_tracks(table, 500, "random", years=[2010, 2012], genres=["jazz"])
    assert sel["year"].between(2010, 2012).all() and (sel["genre"] == "jazz").all()


def test_filters_that_leave_nothing(table):  # bad param values: tests/test_params.py
    with pytest.raises(CoverpopError, match="leave no tracks"):
        select_tracks(table, 10, genres=["polka"])
