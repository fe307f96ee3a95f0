"""The per-cover embedding cache (train/embeddings.by_content): each cover's features computed
once, whichever set of covers asks; an interrupted run keeps what it finished."""

import numpy as np
import pytest
import torch

from coverpop.train import embeddings


def fake_features(hashes):
    """Features that name their cover: row i of cover 'hK' is [K, K]."""
    return torch.tensor([[float(h[1:])] * 2 for h in hashes])


def test_only_missing_covers_are_computed_and_rows_keep_their_order(tmp_path):
    asked = []

    def make_for(hashes):
        def make(rows):
            asked.append([hashes[i] for i in rows])
            return fake_features([hashes[i] for i in rows])
        return make

    train = ["h1", "h2", "h3"]
    feats, computed = embeddings.by_content("k", train, make_for(train), root=tmp_path)
    assert computed == 3 and feats[:, 0].tolist() == [1, 2, 3]
    every = ["h3", "h4", "h1", "h2", "h4"]          # the test covers join; h4 listed twice
    feats, computed = embeddings.by_content("k", every, make_for(every), root=tmp_path)
    assert asked[-1] == ["h4"] and computed == 2     # two rows, one cover computed once
    assert feats[:, 0].tolist() == [3, 4, 1, 2, 4]
    feats, computed = embeddings.by_content("k", every, make_for(every), root=tmp_path)
    assert computed == 0 and len(asked) == 2
    # another backbone (key) shares nothing
    _, computed = embeddings.by_content("other", train, make_for(train), root=tmp_path)
    assert computed == 3


def test_a_failed_make_leaves_the_finished_shards_and_no_partial_file(tmp_path):
    embeddings.by_content("k", ["h1"], lambda rows: fake_features(["h1"]), root=tmp_path)

    def boom(rows):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embeddings.by_content("k", ["h1", "h2"], boom, root=tmp_path)
    files = sorted(p.name for p in (tmp_path / "embeddings" / "k").iterdir())
    assert len(files) == 1 and files[0].endswith(".pt")
    feats, computed = embeddings.by_content("k", ["h1", "h2"],
                                            lambda rows: fake_features(["h2"]), root=tmp_path)
    assert computed == 1 and np.array_equal(feats[:, 0].numpy(), [1, 2])
    with pytest.raises(ValueError, match="2 rows for 1 covers"):
        embeddings.by_content("k", ["h9"], lambda rows: fake_features(["h9", "h9"]),
                              root=tmp_path)
