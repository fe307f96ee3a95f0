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
