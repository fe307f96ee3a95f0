"""A user's own covers: real image files that ship with matplotlib, one corrupt, one missing."""

import shutil

import pandas as pd
import pytest
from conftest import run, set_params
from matplotlib import cbook
from PIL import Image

from coverpop.covers.store import CoverStore

pytestmark = pytest.mark.slow


def test_local_source_scrapes_real_files_and_reports_bad_ones(tiny_repo, tmp_path):
    images = tmp_path / "my covers"
    images.mkdir()
    shipped = ["grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png"]
    for name in shipped:
        with cbook.get_sample_data(name) as f:
            (images / name).write_bytes(f.read())
    Image.open(images / "grace_hopper.jpg").rotate(90).save(images / "sub_rotated.jpg")
    good = (images / "grace_hopper.jpg").read_bytes()
    (images / "broken.jpg").write_bytes(good[: len(good) // 3])
    rows = [("g", 71, "grace_hopper.jpg"), ("l", 12, "logo2.png"),
            ("m", 40, "Minduka_Present_Blue_Pack.png"), ("r", 33, "sub_rotated.jpg"),
            ("b", 50, "broken.jpg"), ("x", 5, "not_there.jpg")]
    csv = tmp_path / "mine.csv"
    pd.DataFrame(rows, columns=["track_id", "popularity", "image"]).assign(
        mood="calm").to_csv(csv, index=False)
    set_params(tiny_repo, {"data.source": "local", "data.local.csv": str(csv),
                           "data.local.images": str(images), "scrape.min_success": 0.5})

    proc = run(["dvc", "repro", "scrape_images"], tiny_repo)
    assert "3 of 6 covers ok; failed:" in proc.stdout
    manifest = pd.read_csv(tiny_repo / "data/manifest.csv").set_index("track_id")
    assert manifest.loc[["g", "m", "r"], "status"].eq("ok").all()
    assert manifest.loc["l", "error"].startswith("bad_aspect")    # a 542x130 logo is no cover
    assert (manifest.loc["l", "source_width"], manifest.loc["l", "source_height"]) == (542, 130)
    assert (manifest.loc["g", "source_width"], manifest.loc["g", "source_height"]) == (512, 600)
    assert manifest.loc["b", "error"].startswith("corrupt_image")
    assert manifest.loc["x", "error"].startswith("missing_file")
    assert "to retry the 2 failures that may be transient: dvc repro -f -s scrape_images" in \
        proc.stdout

    # The missing file turns up: the inputs stage sees the folder's content change, so a plain
    # `dvc repro` scrapes it (and only it); the verdict on the logo stands.
    shutil.copy(images / "grace_hopper.jpg", images / "not_there.jpg")
    proc = run(["dvc", "repro", "scrape_images"], tiny_repo)
    assert "Running stage 'scrape_images'" in proc.stdout
    assert "1 new, 4 done before, 1 failed (corrupt_image 1)" in proc.stdout
    manifest = pd.read_csv(tiny_repo / "data/manifest.csv").set_index("track_id")
    assert manifest.loc["x", "status"] == "ok" and manifest.loc["l", "error"].startswith("bad_aspect")
    store = CoverStore(tiny_repo / "data/shards")
    for cover_id in manifest.loc[manifest["status"] == "ok", "cover_id"]:
        img = store.open(cover_id)
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (300, 300)
    assert pd.read_csv(tiny_repo / "data/raw/tracks.csv")["mood"].eq("calm").all()

    shutil.rmtree(images)  # the next run fails loudly with the param named, nothing lost
    proc = run(["dvc", "repro", "scrape_images", "--force"], tiny_repo, check=False)
    assert proc.returncode != 0 and "data.local.images=" in proc.stderr
    assert len(list((tiny_repo / "data/covers/images").glob("*.jpg"))) == 4  # covers kept
