"""The effects module finds an effect that is planted and none where there is none."""

import numpy as np
import pandas as pd
import pytest

from coverpop.analyze import effects


def planted(n=600, seed=0) -> pd.DataFrame:
    """Popularity with many zeros; a face adds ~12 points, saturation ~20 per unit, hue nothing."""
    rng = np.random.default_rng(seed)
    face = rng.random(n) < 0.4
    sat = rng.random(n)
    hue = rng.choice(["red", "green", "blue"], n)
    latent = 20 + 12 * face + 20 * sat + rng.normal(0, 12, n)
    pop = np.where(rng.random(n) < 0.3, 0, latent).clip(0, 100).round()
    return pd.DataFrame({"popularity": pop, "face": face.astype(int), "saturation": sat,
                         "hue_name": hue})


def test_recovers_a_planted_binary_effect():
    df = planted()
    e = effects.binary_effect(df["popularity"], df["face"], n_resamples=500)
    assert e["n_with"] + e["n_without"] == len(df)
    assert e["mean_diff"] == pytest.approx(
        df.popularity[df.face == 1].mean() - df.popularity[df.face == 0].mean())
    assert 5 < e["mean_diff"] < 15  # planted +12 on 70 % of tracks → about +8.4
    assert e["mean_diff_ci"][0] > 0 and e["cohens_d_ci"][0] > 0 and e["cliffs_delta_ci"][0] > 0
    assert e["cliffs_delta_ci"][0] < e["cliffs_delta"] < e["cliffs_delta_ci"][1]
    assert e["p_value"] < 1e-4


def test_recovers_a_planted_continuous_effect():
    df = planted()
    e = effects.continuous_effect(df["popularity"], df["saturation"], n_resamples=500)
    assert 0.2 < e["spearman"] < 0.6
    assert e["spearman_ci"][0] > 0.1
    assert e["p_value"] < 1e-4


def test_finds_nothing_on_shuffled_popularity():
    df = planted()
    shuffled = np.random.default_rng(1).permutation(df["popularity"].to_numpy())
    b = effects.binary_effect(shuffled, df["face"], n_resamples=500)
    c = effects.continuous_effect(shuffled, df["saturation"], n_resamples=500)
    assert b["mean_diff_ci"][0] < 0 < b["mean_diff_ci"][1]
    assert b["cliffs_delta_ci"][0] < 0 < b["cliffs_delta_ci"][1]
    assert abs(b["cohens_d"]) < 0.15 and b["p_value"] > 0.05
    assert c["spearman_ci"][0] < 0 < c["spearman_ci"][1]
    assert abs(c["spearman"]) < 0.1 and c["p_value"] > 0.05


def test_shuffled_p_values_are_not_systematically_small():
    # Over many shuffles a calibrated test rejects at 5 % about 5 % of the time.
    df = planted(n=300)
    rng = np.random.default_rng(2)
    ps = [effects.binary_effect(rng.permutation(df["popularity"].to_numpy()), df["face"],
                                n_resamples=10)["p_value"] for _ in range(200)]
    assert 0.01 <= np.mean(np.array(ps) < 0.05) <= 0.10


def test_cliffs_delta_and_cohens_d_by_hand():
    a, b = np.array([3.0, 4, 5]), np.array([1.0, 2, 3])
    # pairs a>b: 8, a<b: 0, ties: 1 → (8 - 0) / 9
    assert effects.cliffs_delta(a, b) == pytest.approx(8 / 9)
    assert effects.cohens_d(a, b) == pytest.approx(2.0)  # both SDs are 1
    assert effects.cohens_d(np.ones(3), np.ones(4)) == 0.0


def test_categorical_effect_without_and_with_a_planted_level():
    df = planted()
    none = effects.categorical_effect(df["popularity"], df["hue_name"])
    assert set(none["levels"]) == {"red", "green", "blue"} and none["p_value"] > 0.05
    boosted = df["popularity"] + 15 * (df["hue_name"] == "red")
    assert effects.categorical_effect(boosted, df["hue_name"])["p_value"] < 1e-4


def test_top_vs_bottom_share():
    df = planted(n=1000)
    tb = effects.top_bottom_share(df["popularity"], df["face"], n_resamples=500)
    assert tb["top"]["share"] > tb["bottom"]["share"]
    assert tb["share_diff_ci"][0] > 0 and tb["p_value"] < 1e-3
    top = df.popularity >= tb["top_min_popularity"]
    assert tb["top"]["n"] == top.sum() and tb["top"]["with"] == df.face[top].sum()
    lo, hi = tb["top"]["share_ci"]
    assert lo < tb["top"]["share"] < hi
    shuffled = np.random.default_rng(3).permutation(df["popularity"].to_numpy())
    tb0 = effects.top_bottom_share(shuffled, df["face"], n_resamples=500)
    assert tb0["share_diff_ci"][0] < 0 < tb0["share_diff_ci"][1]


def test_share_by_bin_counts_every_row_once():
    df = planted()
    bins = effects.share_by_bin(df["popularity"], df["face"])
    assert bins["n"].sum() == len(df)
    assert bins["popularity_bin"].iloc[0] == "0"
    assert bins["n"].iloc[0] == (df.popularity == 0).sum()


def test_degenerate_inputs_say_why_instead_of_crashing():
    assert "note" in effects.binary_effect([1, 2, 3], [1, 1, 1])
    assert "note" in effects.continuous_effect([1, 2, 3], [5, 5, 5])
    assert "note" in effects.top_bottom_share([0, 0, 0, 0], [1, 0, 1, 0])


def test_analyze_adjusts_p_values_across_features():
    df = planted()
    df["noise"] = np.random.default_rng(4).random(len(df))
    out = effects.analyze(df, ["face"], ["saturation", "noise"], ["hue_name"], n_resamples=200)
    assert set(out["effects"]) == {"face", "saturation", "noise", "hue_name"}
    for e in out["effects"].values():
        assert e["p_adjusted"] >= e["p_value"]
    assert out["effects"]["face"]["p_adjusted"] < 0.001
    assert out["effects"]["noise"]["p_adjusted"] > 0.05
    assert out["top_vs_bottom"]["face"]["share_diff"] > 0


def test_adjusting_for_a_confounder_removes_a_spurious_effect():
    # Genre "pop" has both more faces and more popularity; within a genre a face does nothing.
    rng = np.random.default_rng(6)
    n = 800
    genre = rng.choice(["pop", "folk"], n)
    face = (rng.random(n) < np.where(genre == "pop", 0.7, 0.2)).astype(int)
    sat = rng.random(n)
    pop = (30 + 25 * (genre == "pop") + 10 * sat + rng.normal(0, 8, n)).clip(0, 100)
    df = pd.DataFrame({"popularity": pop, "face": face, "saturation": sat, "genre": genre,
                       "year": rng.integers(2000, 2023, n)})
    raw = effects.binary_effect(df["popularity"], df["face"], n_resamples=300)
    assert raw["mean_diff_ci"][0] > 5  # the confounded comparison shows a clear "effect"
    adj = effects.adjusted_effects(df, ["face"], ["saturation"], ["genre", "year"],
                                   n_resamples=300)
    assert adj["covariates"] == ["genre", "year"] and adj["n"] == n
    face_ci = adj["effects"]["face"]["ci"]
    assert face_ci[0] < 0 < face_ci[1]
    # saturation: 10 points over 0-1 uniform = 10 * SD(0.289) ≈ 2.9 points per SD
    assert adj["effects"]["saturation"]["coef"] == pytest.approx(2.9, abs=0.8)
    assert adj["effects"]["saturation"]["ci"][0] > 1.5


def _scalar_ci(data, statistic, paired, seed=0, n=300):
    """scipy's bootstrap one resample at a time (vectorized=False): the reference."""
    from scipy import stats

    ci = stats.bootstrap(data, statistic, paired=paired, vectorized=False, n_resamples=n,
                         confidence_level=0.95, method="percentile",
                         rng=np.random.default_rng(seed)).confidence_interval
    return np.asarray([ci.low, ci.high]).T


def test_batched_bootstrap_statistics_give_the_one_at_a_time_intervals():
    """The CIs are computed on whole batches of resamples; they must equal scipy's bootstrap
    with the textbook statistic applied to each resample in turn (scipy's own spearmanr,
    mannwhitneyu, a LinearRegression refit), ties and a genre missing from a resample included."""
    from scipy import stats
    from sklearn.linear_model import LinearRegression

    df = planted(n=300, seed=3)
    df["genre"] = np.where(np.arange(300) < 2, "rare", np.where(np.arange(300) % 2, "pop", "rock"))
    e = effects.analyze(df, ["face"], ["saturation"], covariates=["genre"], n_resamples=300)
    pop, face = df["popularity"].to_numpy(), df["face"].to_numpy().astype(bool)
    with_, without = pop[face], pop[~face]
    b = e["effects"]["face"]
    assert b["mean_diff_ci"] == pytest.approx(_scalar_ci(
        (with_, without), lambda a, c: a.mean() - c.mean(), False), abs=1e-9)
    u = stats.mannwhitneyu
    assert b["cliffs_delta_ci"] == pytest.approx(_scalar_ci(
        (with_, without), lambda a, c: 2 * u(a, c).statistic / (len(a) * len(c)) - 1, False),
        abs=1e-9)
    assert e["effects"]["saturation"]["spearman_ci"] == pytest.approx(_scalar_ci(
        (df["saturation"].to_numpy(), pop), lambda x, y: stats.spearmanr(x, y).statistic, True),
        abs=1e-9)
    X = pd.concat([df[["face"]].astype(float),
                   (df["saturation"] - df["saturation"].mean()) / df["saturation"].std(ddof=0),
                   pd.get_dummies(df["genre"], prefix="genre", drop_first=True, dtype=float)],
                  axis=1).to_numpy()
    ref = _scalar_ci((np.arange(300),), lambda r: LinearRegression().fit(X[r], pop[r]).coef_[:2],
                     False)
    adjusted = e["adjusted"]["effects"]
    assert [adjusted["face"]["ci"], adjusted["saturation"]["ci"]] == pytest.approx(ref, abs=1e-7)
