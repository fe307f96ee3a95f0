"""Cover features on images we can reason about: a real face photo, pastes of it, text, noise."""

import numpy as np
import pytest
from cover_images import face_paste, grace, noise, with_text
from PIL import Image, ImageDraw

from coverpop.analyze import features


def test_face_found_on_the_photo():
    f = features.cover_features(grace())
    assert f["faces"] == 1
    # The face box is ~222 px square in a 512x600 photo: ~16 % of the area.
    assert 0.08 < f["face_area"] < 0.3


@pytest.mark.parametrize("scale,flip,tint", [(0.4, False, None), (0.65, False, None),
                                             (0.5, True, None), (0.5, False, (255, 40, 40))])
def test_face_found_on_pasted_covers(scale, flip, tint):
    f = features.cover_features(face_paste(scale, flip, tint))
    assert f["faces"] >= 1
    assert f["face_area"] > 0.05


def test_bigger_paste_gives_bigger_face_area():
    small = features.cover_features(face_paste(0.4))["face_area"]
    big = features.cover_features(face_paste(0.65))["face_area"]
    assert big > 1.5 * small


@pytest.mark.parametrize("image", [Image.new("RGB", (300, 300), (128, 128, 128)), noise(0),
                                   noise(1)], ids=["blank", "noise0", "noise1"])
def test_no_face_on_blank_or_noise(image):
    f = features.cover_features(image)
    assert f["faces"] == 0 and f["face_area"] == 0


def test_colourfulness_orders_grey_muted_vivid():
    grey = Image.new("RGB", (200, 200), (120, 120, 120))
    muted = Image.new("RGB", (200, 200), (120, 110, 100))
    vivid = Image.new("RGB", (200, 200), (230, 20, 40))
    draw = ImageDraw.Draw(vivid)
    draw.rectangle((0, 0, 100, 200), fill=(20, 60, 240))
    scores = [features.cover_features(im)["colourfulness"] for im in (grey, muted, vivid)]
    assert scores[0] == pytest.approx(0.0, abs=1e-9)
    assert scores[0] < scores[1] < scores[2]


def test_colourfulness_rises_with_saturation():
    base = np.asarray(face_paste(0.5), dtype=float)
    grey = base.mean(axis=2, keepdims=True)
    values = []
    for s in (0.0, 0.3, 0.6, 1.0):
        image = Image.fromarray((grey + s * (base - grey)).clip(0, 255).astype(np.uint8))
        f = features.cover_features(image)
        values.append((f["colourfulness"], f["saturation"]))
    assert values == sorted(values)
    assert values[0][0] < 1 and values[-1][0] > 40


def test_brightness_and_hue():
    dark = features.cover_features(Image.new("RGB", (100, 100), (20, 20, 20)))
    light = features.cover_features(Image.new("RGB", (100, 100), (235, 235, 235)))
    assert dark["brightness"] < 0.1 < 0.9 < light["brightness"]
    assert dark["hue_name"] == "none"  # grey has no hue
    for rgb, name in [((220, 30, 30), "red"), ((30, 200, 40), "green"), ((30, 40, 220), "blue"),
                      ((230, 220, 30), "yellow")]:
        assert features.cover_features(Image.new("RGB", (100, 100), rgb))["hue_name"] == name


def test_large_text_found_and_small_text_or_photos_not():
    plain = Image.new("RGB", (300, 300), (200, 170, 60))
    assert features.cover_features(with_text(plain, "SUMMER", 44))["text"] == 1
    assert features.cover_features(with_text(plain, "the weeknd", 40, band=False))["text"] == 1
    assert features.cover_features(with_text(noise(2), "LIVE TOUR", 40))["text"] == 1
    assert features.cover_features(with_text(face_paste(0.5), "THE BAND", 36))["text"] == 1
    assert features.cover_features(with_text(plain, "small print here", 11, band=False))["text"] == 0
    for image in (plain, noise(3), face_paste(0.6), grace()):
        assert features.cover_features(image)["text"] == 0


def test_features_table_keeps_order_and_reports_bad_files(tmp_path):
    paths = []
    for i, image in enumerate([face_paste(0.5), noise(4), grace()]):
        paths.append(tmp_path / f"{i}.jpg")
        image.save(paths[-1])
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    paths.insert(1, tmp_path / "bad.jpg")
    paths.append(tmp_path / "missing.jpg")
    table = features.features_table(paths, workers=1, progress=False)
    assert list(table["file"]) == [str(p) for p in paths]
    assert list(table["faces"].fillna(-1)) == [1, -1, 0, 1, -1]
    assert table["error"].iloc[1].startswith("UnidentifiedImageError")
    assert table["error"].iloc[4].startswith("FileNotFoundError")
    assert (table["error"].iloc[[0, 2, 3]] == "").all()


@pytest.mark.slow
def test_process_pool_gives_the_same_table(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "POOL_MIN_COVERS", 2)  # take the pool path with few covers
    paths = []
    for i in range(24):
        image = face_paste(0.45 + 0.01 * i) if i % 2 else noise(i)
        paths.append(tmp_path / f"{i}.jpg")
        image.save(paths[-1])
    serial = features.features_table(paths, workers=1, progress=False)
    pooled = features.features_table(paths, workers=2, progress=False)
    assert serial.equals(pooled)
    assert list(serial["faces"] > 0) == [bool(i % 2) for i in range(24)]
