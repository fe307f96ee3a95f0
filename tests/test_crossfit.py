"""Out of fold (evaluate/crossfit.py): folds grouped and stratified, no held-out target ever read,
a planted signal found with a tight interval, gains paired, the verdict figure as a person sees it."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from coverpop.core.errors import CoverpopError
from coverpop.evaluate import crossfit
from coverpop.evaluate.verdict import verdict_figure

GENRES = ["pop", "jazz", "metal", "rock"]


def covers(n=600, seed=0, cover_weight=6.0, trait_weight=4.0, per_album=1):
    """Tracks whose popularity follows genre, year, one interpretable trait (a face) and two of 40
    'backbone' columns; `per_album` tracks share an album (and a cover signal)."""
    rng = np.random.default_rng(seed)
    n_albums = n // per_album
    album = np.repeat(np.arange(n_albums), per_album)[:n]
    genre = rng.choice(GENRES, n_albums)[album]
    year = rng.integers(2000, 2024, n_albums)[album]
    face = rng.integers(0, 2, n_albums)[album]
    x = rng.normal(size=(n_albums, 40))[album] + rng.normal(scale=0.1, size=(n, 40))
    pop = (pd.Series(genre).map({"pop": 50, "jazz": 20, "metal": 30, "rock": 35}).to_numpy()
           + (year - 2000) + trait_weight * face + cover_weight * (x[:, 0] + x[:, 1])
           + rng.normal(0, 10, n))
    rows = pd.DataFrame({"track_id": [f"t{i}" for i in range(n)],
                         "album_id": [f"a{a}" for a in album], "genre": genre, "year": year,
                         "popularity": np.clip(pop, 0, 100).round()})
    traits = pd.DataFrame({"track_id": rows["track_id"], "face": face, "faces": face,
                           "saturation": rng.uniform(0, 1, n),
                           "hue_name": rng.choice(["red", "blue", "none"], n)})
    return rows, x, traits


def test_folds_keep_groups_whole_and_popularity_in_proportion():
    rows, _, _ = covers(n=600, per_album=3)
    fold = crossfit.split_folds(rows, 5, "album", seed=0)
    assert sorted(np.unique(fold)) == [0, 1, 2, 3, 4]
    assert rows.assign(fold=fold).groupby("album_id")["fold"].nunique().max() == 1
    assert np.bincount(fold).min() >= 100                  # about 120 covers each
    high = rows["popularity"] >= rows["popularity"].quantile(0.8)
    shares = pd.Series(high.to_numpy()).groupby(fold).mean()
    assert shares.max() - shares.min() < 0.1
    assert np.array_equal(fold, crossfit.split_folds(rows, 5, "album", seed=0))
    with pytest.raises(CoverpopError, match="cv_folds=5"):
        crossfit.split_folds(rows.head(8), 5)


def test_poisoned_held_out_targets_leave_their_predictions_unchanged():
    rows, x, traits = covers(n=400)
    fold = crossfit.split_folds(rows, 4, seed=0)
    clean = crossfit.crossfit(rows, fold, x, traits, seed=0)
    y = rows["popularity"].to_numpy(float)
    held = fold == 2
    poisoned = y.copy()
    poisoned[held] = 100 - y[held]
    dirty = crossfit.crossfit(rows, fold, x, traits, seed=0, y=poisoned)
    assert set(clean.predictions) == {"metadata_only", "with_interpretable", "with_cover",
                                      "covers_only"}
    for name in clean.predictions:
        np.testing.assert_array_equal(clean.predictions[name][held], dirty.predictions[name][held])
        # the poison did arrive: the folds that trained on those rows moved
        assert not np.allclose(clean.predictions[name][~held], dirty.predictions[name][~held])


@pytest.mark.slow  # a stage process or a pipeline: seconds
def test_a_planted_signal_is_found_with_a_tight_interval_and_each_step_gains():
    rows, x, traits = covers(n=1500, seed=1)
    fold = crossfit.split_folds(rows, 5, seed=0)
    report = crossfit.summarize(crossfit.crossfit(rows, fold, x, traits, seed=0), 300, seed=0)
    cover = report["models"]["covers_only"]["spearman"]
    assert cover["ci_low"] > 0.2 and cover["ci_high"] - cover["ci_low"] < 0.12
    for step in ("interpretable_gain", "learned_gain", "cover_added_value"):
        g = report["gains"][step]["spearman"]
        assert g["ci_low"] > 0, step
        assert report["gains"][step]["mae"]["ci_low"] > 0, step  # MAE gains are positive too
    added = report["gains"]["cover_added_value"]["spearman"]["value"]
    steps = sum(report["gains"][s]["spearman"]["value"] for s in ("interpretable_gain",
                                                                   "learned_gain"))
    assert added == pytest.approx(steps, abs=2e-4)
    head = crossfit.headline(report)
    assert head["covers"] == 1500 and set(head["covers_only"]["spearman"]) == {
        "value", "ci_low", "ci_high"}


@pytest.mark.slow  # a stage process or a pipeline: seconds
def test_no_signal_gives_an_interval_around_zero():
    rows, x, traits = covers(n=1500, seed=2, cover_weight=0.0, trait_weight=0.0)
    fold = crossfit.split_folds(rows, 5, seed=0)
    report = crossfit.summarize(crossfit.crossfit(rows, fold, x, traits, seed=0), 300, seed=0)
    g = report["gains"]["learned_gain"]["spearman"]
    assert g["ci_low"] < 0.01 and abs(g["value"]) < 0.03
    assert report["models"]["metadata_only"]["spearman"]["ci_low"] > 0.3


def test_the_bootstrap_draws_whole_groups_and_pairs_the_models():
    groups = np.repeat(np.arange(50), 4)
    (draws,) = list(crossfit.bootstrap_draws(groups, 20, seed=0, chunk=20))
    assert draws.shape == (20, 200)
    counts = pd.DataFrame({"draw": np.repeat(np.arange(20), 200), "g": groups[draws.ravel()]})
    # every drawn group comes with all 4 of its rows (one may be cut at the end of a draw)
    per_group = counts.groupby(["draw", "g"]).size()
    assert (per_group % 4 == 0).mean() > 0.95
    rows, x, _ = covers(n=300)
    oof = crossfit.crossfit(rows, crossfit.split_folds(rows, 3), x, None)
    oof.predictions["same"] = oof.predictions["with_cover"].copy()
    report = crossfit.summarize(oof, 100)
    same = report["models"]["same"]["spearman"]
    assert same == report["models"]["with_cover"]["spearman"]


def test_without_metadata_or_traits_only_the_covers_are_fitted():
    rows, x, _ = covers(n=200)
    bare = rows.drop(columns=["genre", "year"])
    oof = crossfit.crossfit(bare, crossfit.split_folds(bare, 4), x, None)
    assert list(oof.predictions) == ["covers_only"]
    assert not np.isnan(oof.predictions["covers_only"]).any()


def test_interpretable_table_names_what_is_missing(tmp_path):
    rows, _, traits = covers(n=50)
    path = tmp_path / "features.csv"
    assert crossfit.interpretable_table(path, rows)[0] is None
    traits.head(40).to_csv(path, index=False)
    table, why = crossfit.interpretable_table(path, rows)
    assert table is None and "lacks 10 of the 50" in why
    traits.to_csv(path, index=False)
    table, why = crossfit.interpretable_table(path, rows)
    assert why == "" and list(table["track_id"]) == list(rows["track_id"])


def test_the_verdict_figure_reads_as_a_picture(tmp_path):
    rows, x, traits = covers(n=600)
    oof = crossfit.summarize(crossfit.crossfit(rows, crossfit.split_folds(rows, 5), x, traits),
                             100)
    path = tmp_path / "verdict.png"
    verdict_figure(oof, path, {"value": 0.2, "ci_low": 0.05, "ci_high": 0.35, "covers": 90})
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[1] > 1000 and img.shape[0] > 300             # two panels side by side
    green = (img[..., 1] > 100) & (img[..., 0] < 80) & (img[..., 2] < 80)
    assert green.sum() > 500          # the gains clear zero: drawn as green bars
