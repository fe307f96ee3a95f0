"""The insight report on rendered covers with a planted face effect, and on a shuffled copy."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import pack_covers
from cover_images import face_paste, noise, with_text
from PIL import Image

from coverpop.analyze import report as analysis
from coverpop.core.errors import CoverpopError


@pytest.fixture(scope="module")
def covers(tmp_path_factory):
    """60 covers: half with a face; popularity = 25 + 30·face + 15·text + noise, 30 % zeros."""
    root = tmp_path_factory.mktemp("repo")
    (root / "data/covers/images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        face, text = i % 2, int(rng.random() < 0.4)
        bg = tuple(int(v) for v in rng.integers(30, 220, 3))
        image = face_paste(rng.uniform(0.4, 0.65), flip=bool(i % 3 == 0), bg=bg) if face \
            else (noise(i) if i % 4 == 0 else Image.new("RGB", (300, 300), bg))
        if text:
            image = with_text(image, "GOLD", 48)
        file = f"data/covers/images/c{i}.jpg"
        image.save(root / file, quality=90)
        pop = 0 if rng.random() < 0.3 else np.clip(25 + 30 * face + 15 * text + rng.normal(0, 8), 0, 100)
        rows.append({"track_id": f"t{i}", "cover_id": f"c{i}",
                     "popularity": round(float(pop)), "split": "train", "demo_face": face,
                     "demo_text": text, "demo_saturation": 0.5})
    split = pd.DataFrame(rows)
    (root / "data/covers/images/broken.jpg").write_bytes(b"\xff\xd8 truncated")
    files = {f"c{i}": root / f"data/covers/images/c{i}.jpg" for i in range(60)}
    pack_covers(root / "data/shards", {**files, "broken": root / "data/covers/images/broken.jpg"})
    return root, split, analysis.cover_table(split, root / "data/shards", workers=1, progress=False)


@pytest.mark.slow  # a stage process or a pipeline: seconds
def test_cover_table_detects_what_was_drawn(covers):
    _, split, table = covers
    assert len(table) == len(split) and table.attrs["unreadable"] == 0
    assert (table["face"] == table["demo_face"]).mean() >= 0.95
    assert (table["text"] == table["demo_text"]).mean() >= 0.9


def test_summary_recovers_the_face_effect(covers):
    _, _, table = covers
    report, metrics = analysis.summarize(table, n_resamples=300)
    face = metrics["face"]
    assert face["mean_diff"] > 10 and face["mean_diff_low"] > 0 and face["p"] < 0.01
    assert face["top_share"] > face["bottom_share"]
    assert metrics["detector_check"]["face_recall"] >= 0.95
    json.dumps(metrics, allow_nan=False)  # dvc metrics need plain JSON numbers
    tables = analysis.plot_tables(table, report)
    assert tables["face_share_by_popularity"]["n"].sum() == len(table)
    assert set(tables["rank_effects"]["feature"]) >= {"face", "text", "saturation"}


def test_summary_finds_no_face_effect_on_shuffled_popularity(covers):
    _, _, table = covers
    shuffled = table.assign(popularity=np.random.default_rng(5).permutation(table["popularity"]))
    _, metrics = analysis.summarize(shuffled, n_resamples=300)
    assert metrics["face"]["mean_diff_low"] < 0 < metrics["face"]["mean_diff_high"]
    assert metrics["face"]["p"] > 0.05


def test_figure_is_written(covers, tmp_path):
    _, _, table = covers
    report, _ = analysis.summarize(table, n_resamples=100)
    analysis.save_figure(table, report, tmp_path / "effects.png")
    with Image.open(tmp_path / "effects.png") as im:
        # one column of the `dvc plots` page, not a banner wider than the screen
        assert im.format == "PNG" and 800 <= im.width <= 1200 and im.height <= 900


def test_figure_keeps_every_title_and_label_on_the_canvas(covers):
    import matplotlib.pyplot as plt

    _, _, table = covers
    report, _ = analysis.summarize(table, n_resamples=100)
    fig = analysis.effects_figure(table, report)
    fig.canvas.draw()
    canvas, renderer = fig.bbox, fig.canvas.get_renderer()
    assert len([ax for ax in fig.axes if ax.get_title()]) == 3
    for ax in fig.axes:   # the tight box holds the title, axis labels and visible tick labels
        box = ax.get_tightbbox(renderer)
        assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1 and canvas.y0 <= box.y0 \
            and box.y1 <= canvas.y1, f"{ax.get_title()!r} leaves the canvas: {box} vs {canvas}"
    plt.close(fig)


def test_unreadable_covers_are_dropped_and_counted(covers, tmp_path):
    root, split, _ = covers
    store = root / "data/shards"
    bad = pd.concat([split.head(3), split.head(1).assign(cover_id="broken", track_id="tx")])
    table = analysis.cover_table(bad, store, workers=1, progress=False)
    assert len(table) == 3 and table.attrs["unreadable"] == 1
    with pytest.raises(CoverpopError, match="cover broken: no cover could be read"):
        analysis.cover_table(bad.tail(1), store, workers=1, progress=False)
    with pytest.raises(CoverpopError, match="missing column 'cover_id'"):
        analysis.cover_table(split.drop(columns="cover_id"), store)
