import numpy as np
import pandas as pd
import pytest

from coverpop.core.errors import CoverpopError
from coverpop.split.splitting import split


@pytest.fixture
def covers():
    rng = np.random.default_rng(0)
    n = 1000
    return pd.DataFrame({"track_id": [f"t{i}" for i in range(n)],
                         "album_id": [f"a{i}" for i in range(n)],
                         "artist_name": [f"artist{i % 150}" for i in range(n)],
                         "popularity": np.where(rng.random(n) < 0.4, 0, rng.integers(1, 90, n))})


@pytest.mark.parametrize("group_by, column", [("album", "album_id"), ("artist", "artist_name")])
def test_groups_never_span_splits(covers, group_by, column):
    labels = split(covers, group_by, 0.15, 0.15, seed=0)
    assert labels.groupby(covers[column]).nunique().max() == 1
    shares = labels.value_counts(normalize=True)
    assert abs(shares["test"] - 0.15) < 0.05 and abs(shares["val"] - 0.15) < 0.05


def test_stratified_by_popularity(covers):
    labels = split(covers, "album", 0.15, 0.15, seed=0)
    zero_share = (covers["popularity"] == 0).groupby(labels).mean()
    assert zero_share.max() - zero_share.min() < 0.05


def test_seeded(covers):
    assert split(covers, seed=1).equals(split(covers, seed=1))
    assert not split(covers, seed=1).equals(split(covers, seed=2))


def test_too_few_covers(covers):  # bad param values: tests/test_params.py
    with pytest.raises(CoverpopError, match="too few to split"):
        split(covers.head(5))


@pytest.mark.parametrize("trial", range(8))
def test_fast_group_folds_are_sklearns_folds_bit_for_bit(trial):
    """The vectorised fold search gives exactly scikit-learn's StratifiedGroupKFold folds: one
    row per group (album after dedupe) and several (artist), 2 to 11 folds, up to 6 bins."""
    from sklearn.model_selection import StratifiedGroupKFold

    from coverpop.split.splitting import FastStratifiedGroupKFold

    rng = np.random.default_rng(trial)
    n, k, n_bins = int(rng.integers(50, 500)), int(rng.integers(2, 12)), int(rng.integers(2, 7))
    y = np.r_[np.repeat(np.arange(n_bins), k), rng.integers(0, n_bins, n)]
    groups = np.arange(len(y)) if trial % 2 else rng.integers(0, len(y) // 3, len(y))
    for seed in (0, 7):
        ours = FastStratifiedGroupKFold(k, shuffle=True, random_state=seed).split(y, y, groups)
        theirs = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(y, y, groups)
        assert [t.tolist() for _, t in ours] == [t.tolist() for _, t in theirs]
