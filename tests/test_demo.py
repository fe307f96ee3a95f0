import io

import numpy as np
from PIL import Image
from scipy.stats import spearmanr

from coverpop.tracks import demo
from coverpop.tracks.tables import KAGGLE_COLUMNS, validate_tracks


def test_demo_table_is_deterministic_and_in_kaggle_schema():
    a, b = demo.make_tracks(300, seed=1), demo.make_tracks(300, seed=1)
    assert a.equals(b)
    assert not a.equals(demo.make_tracks(300, seed=2))
    assert set(KAGGLE_COLUMNS) <= set(a.columns)
    validate_tracks(a, "demo")


def test_demo_has_album_structure_skew_and_reused_art():
    df = demo.make_tracks(2000, seed=0)
    assert df.groupby("album_id").size().max() > 1  # albums share covers
    zeros = (df["popularity"] == 0).mean()
    assert 0.2 < zeros < 0.6  # many zeros, like the real data
    variants = set(df["demo_variant"])
    assert {"copy", "reencoded"} <= variants


def test_planted_effects_raise_popularity():
    df = demo.make_tracks(2000, seed=0)
    for col in ("demo_face", "demo_text"):
        means = df.groupby(col)["popularity"].mean()
        assert means[1] > means[0] + 5, col
    assert np.corrcoef(df["demo_saturation"], df["popularity"])[0, 1] > 0.1


def test_covers_render_deterministically_and_copies_match():
    df = demo.make_tracks(2000, seed=0)
    row = df.iloc[0].to_dict()
    assert demo.cover_bytes(row) == demo.cover_bytes(row)
    img = Image.open(io.BytesIO(demo.cover_bytes(row)))
    assert img.size == (300, 300) and img.mode == "RGB"
    copy = df[df["demo_variant"] == "copy"].iloc[0]
    original = df[(df["demo_seed"] == copy["demo_seed"]) & (df["demo_variant"] == "original")].iloc[0]
    assert demo.cover_bytes(copy.to_dict()) == demo.cover_bytes(original.to_dict())


def test_face_and_saturation_are_visible():
    base = {"demo_seed": 5, "demo_hue": 0.6, "demo_saturation": 0.9, "demo_brightness": 0.7,
            "demo_face": 0, "demo_text": 0}
    plain = np.asarray(demo.render_cover(base), dtype=float)
    face = np.asarray(demo.render_cover({**base, "demo_face": 1}), dtype=float)
    assert np.abs(face - plain).mean() > 5
    grey = np.asarray(demo.render_cover({**base, "demo_saturation": 0.0}).convert("HSV"))
    vivid = np.asarray(demo.render_cover(base).convert("HSV"))
    assert vivid[..., 1].mean() > grey[..., 1].mean() + 100


def test_weak_demo_plants_cover_effects_as_weak_as_real_ones():
    """`effects: weak`: the planted cover truth ranks popularity at about 0.1 (real covers:
    0.06-0.08), genre + year far better (real: 0.43), a face worth a couple of points, ~30 %
    zeros; the covers are the very same as the strong demo's."""
    weak, strong = demo.make_tracks(3000, seed=0, effects="weak"), demo.make_tracks(3000, seed=0)
    art = ["album_id", "demo_face", "demo_saturation", "demo_text", "demo_hue", "demo_seed"]
    assert weak[art].equals(strong[art])
    e = demo.EFFECTS["weak"]
    albums = weak.drop_duplicates("album_id")
    y = albums["popularity"]
    cover = e.face * albums["demo_face"] + e.saturation * albums["demo_saturation"] \
        + e.text * albums["demo_text"]
    meta = e.genre_scale * albums["genre"].map(demo.GENRE_EFFECT) + e.year_slope * albums["year"]
    rho_cover, rho_meta = spearmanr(cover, y).statistic, spearmanr(meta, y).statistic
    assert 0.05 < rho_cover < 0.2, rho_cover
    assert 0.3 < rho_meta < 0.55 and rho_meta > 2.5 * rho_cover, rho_meta
    face = albums.groupby("demo_face")["popularity"].mean()
    assert 0.5 < face[1] - face[0] < 6
    assert 0.2 < (y == 0).mean() < 0.45
    # the strong demo's covers decide far more
    albums = strong.drop_duplicates("album_id")
    s = demo.EFFECTS["strong"]
    cover = s.face * albums["demo_face"] + s.saturation * albums["demo_saturation"] \
        + s.text * albums["demo_text"]
    assert spearmanr(cover, albums["popularity"]).statistic > 0.5
