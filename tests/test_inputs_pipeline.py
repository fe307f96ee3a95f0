"""External inputs through DVC: an edited CSV or a replaced picture re-runs exactly the stages
that read it; no change (a `touch` included) re-runs nothing but the cheap `inputs` look."""

import os

import numpy as np
import pandas as pd
import pytest
from conftest import run, set_params
from matplotlib import cbook
from PIL import Image

from coverpop.covers.store import CoverStore

pytestmark = pytest.mark.slow

STAGES = ("fetch_csv", "select_tracks", "scrape_images")


def ran(proc) -> set[str]:
    return {s for s in ("inputs", *STAGES) if f"Running stage '{s}'" in proc.stdout}


def picture(path, seed):
    """A smooth picture (a colour of its own plus a gradient): it survives resizing and JPEG."""
    img = np.empty((80, 80, 3))
    img[:] = np.random.default_rng(seed).integers(30, 225, 3)
    img += np.linspace(-30, 30, 80)[:, None, None]
    Image.fromarray(img.astype(np.uint8)).save(path)


def test_local_csv_and_images_are_tracked_by_content(tiny_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("COVERPOP_CACHE", str(tmp_path / "cache"))
    images = tmp_path / "my covers"
    images.mkdir()
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        (images / "hopper.jpg").write_bytes(f.read())
    for i in range(5):
        picture(images / f"p{i}.png", i)
    csv = tmp_path / "mine.csv"
    rows = [("h", 70, "hopper.jpg")] + [(f"t{i}", 10 * i, f"p{i}.png") for i in range(4)]
    pd.DataFrame(rows, columns=["track_id", "popularity", "image"]).to_csv(csv, index=False)
    set_params(tiny_repo, {"data.source": "local", "data.local.csv": str(csv),
                           "data.local.images": str(images)})

    assert ran(run(["dvc", "repro", "scrape_images"], tiny_repo)) == {"inputs", *STAGES}
    manifest = pd.read_csv(tiny_repo / "data/manifest.csv").set_index("track_id")
    assert len(manifest) == 5 and manifest["status"].eq("ok").all()

    # nothing changed, or only mtimes: only the look at the inputs runs
    assert ran(run(["dvc", "repro", "scrape_images"], tiny_repo)) == {"inputs"}
    for f in images.iterdir():
        os.utime(f)
    os.utime(csv)
    assert ran(run(["dvc", "repro", "scrape_images"], tiny_repo)) == {"inputs"}

    # rows appended to the CSV: the table is read again and the new track scraped
    with csv.open("a") as f:
        f.write("t4,40,p4.png\n")
    assert ran(run(["dvc", "repro", "scrape_images"], tiny_repo)) == {"inputs", *STAGES}
    assert len(pd.read_csv(tiny_repo / "data/raw/tracks.csv")) == 6

    # a picture replaced under the same name: only the scrape re-runs, and it takes the new one
    before = pd.read_csv(tiny_repo / "data/manifest.csv").set_index("track_id")
    picture(images / "p1.png", 99)
    assert ran(run(["dvc", "repro", "scrape_images"], tiny_repo)) == {"inputs", "scrape_images"}
    after = pd.read_csv(tiny_repo / "data/manifest.csv").set_index("track_id")
    assert after.loc["t1", "sha256"] != before.loc["t1", "sha256"]
    assert (after.drop(index="t1")["sha256"] == before.drop(index="t1")["sha256"]).all()
    cover = CoverStore(tiny_repo / "data/shards").open(after.loc["t1", "cover_id"])
    stored = np.asarray(cover.resize((80, 80)), float)
    new = np.asarray(Image.open(images / "p1.png").convert("RGB"), float)
    assert np.abs(stored - new).mean() < 4      # the stored cover is the new picture (JPEG'd)
    assert len(list((tiny_repo / "data/covers/images").glob("*.jpg"))) == 6


def test_csv_path_edited_in_place_re_runs_fetch(tiny_repo, tmp_path, monkeypatch):
    from fakes.kaggle_csv import kaggle_like_csv

    monkeypatch.setenv("COVERPOP_CACHE", str(tmp_path / "cache"))
    csv = tmp_path / "spotify.csv"
    kaggle_like_csv(csv, rows=300)
    set_params(tiny_repo, {"data.source": "csv", "data.csv.path": str(csv)})
    assert ran(run(["dvc", "repro", "fetch_csv"], tiny_repo)) == {"inputs", "fetch_csv"}
    assert ran(run(["dvc", "repro", "fetch_csv"], tiny_repo)) == {"inputs"}
    kaggle_like_csv(csv, rows=320, seed=1)
    assert ran(run(["dvc", "repro", "fetch_csv"], tiny_repo)) == {"inputs", "fetch_csv"}
    assert len(pd.read_csv(tiny_repo / "data/raw/tracks.csv")) == 320
