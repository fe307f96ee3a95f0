"""Does the cover add anything to genre and year? The metadata-only and cover + metadata ridge
models, their gain with a CI, and the evaluate stage that reports them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import pack_covers, write_params
from PIL import Image

from coverpop.evaluate.metadata import (
    cover_value_report,
    fit_cover_value,
    metadata_design,
)

REPO = Path(__file__).resolve().parents[1]
GENRES = ["pop", "jazz", "metal", "rock"]


def tracks(n, seed, cover_weight):
    """Genre and year explain a lot; `cover_weight` of a 50-dim cover feature vector adds more."""
    rng = np.random.default_rng(seed)
    genre = rng.choice(GENRES, n)
    year = rng.integers(2000, 2024, n)
    x = rng.normal(size=(n, 50)) * rng.uniform(0.5, 2, 50) + 1
    cover = (x[:, 0] - 1) / 0.5 + (x[:, 1] - 1)  # two of the 50 columns carry the cover signal
    pop = (pd.Series(genre).map({"pop": 50, "jazz": 20, "metal": 30, "rock": 35}).to_numpy()
           + (year - 2000) + cover_weight * cover + rng.normal(0, 10, n))
    df = pd.DataFrame({"genre": genre, "year": year, "popularity": np.clip(pop, 0, 100)})
    return df, x


def test_cover_value_finds_a_cover_signal_beyond_metadata_and_none_without_one():
    for weight, expect_gain in ((6.0, True), (0.0, False)):
        train, x_train = tracks(800, 0, weight)
        test, x_test = tracks(400, 1, weight)
        value = fit_cover_value(train, test, x_train, x_test, seed=0)
        y = test["popularity"].to_numpy()
        headline, detail = cover_value_report(y, value, n_boot=200, seed=0)
        assert set(headline) == {"metadata_only", "model_with_metadata", "cover_added_value"}
        assert set(headline["metadata_only"]) == {"spearman"}
        assert headline["metadata_only"]["spearman"] > 0.4  # genre and year do explain a lot
        gain = headline["cover_added_value"]["spearman"]
        assert gain["ci_low"] <= gain["value"] <= gain["ci_high"]
        assert set(detail["cover_added_value"]) >= {"spearman", "mae"}
        mae = detail["cover_added_value"]["mae"]
        if expect_gain:
            assert gain["ci_low"] > 0 and mae["ci_low"] > 0
        else:
            assert gain["ci_low"] < 0.02 and abs(gain["value"]) < 0.03
            assert value.fused_fit.alpha > 100 * value.meta_fit.alpha  # covers shrunk away


def test_models_never_see_test_rows():
    """Poison the test rows (targets and metadata): every fitted number stays the same."""
    train, x_train = tracks(500, 0, 4.0)
    test, x_test = tracks(200, 1, 4.0)
    clean = fit_cover_value(train, test, x_train, x_test, seed=0)
    bad = test.assign(popularity=100 - test["popularity"], genre="unheard-of", year=1950)
    dirty = fit_cover_value(train, bad, x_train, x_test * 5, seed=0)
    for a, b in ((clean.meta_fit, dirty.meta_fit), (clean.fused_fit, dirty.fused_fit)):
        assert a.alpha == b.alpha and np.array_equal(a.coef, b.coef)
        assert a.intercept == b.intercept
    assert not np.array_equal(clean.with_metadata, dirty.with_metadata)  # the poison did arrive


def test_metadata_design_uses_what_the_tracks_have():
    train, _ = tracks(100, 0, 0.0)
    only_year = train.drop(columns="genre")
    m_train, m_test = metadata_design(only_year, only_year.head(5))
    assert m_train.shape[1] == m_test.shape[1] and m_train.shape[1] >= 3  # year spline only
    assert fit_cover_value(train[["popularity"]], train[["popularity"]],
                           np.zeros((100, 3)), np.zeros((100, 3))) is None


# --- the evaluate stage, on a tiny workspace ---------------------------------------------------

def workspace(root: Path, with_metadata: bool, n: int = 60) -> Path:
    """data/split.csv + covers whose brightness is popularity, a probe checkpoint, params.yaml."""
    from coverpop.train.checkpoint import save_checkpoint
    from coverpop.train.data import load_split
    from coverpop.train.loop import TrainConfig
    from coverpop.train.probe import run_probe

    images = root / "data" / "covers"
    images.mkdir(parents=True)
    files = {}
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        level = int(rng.integers(0, 256))
        arr = np.clip(level + rng.integers(-30, 30, (40, 40, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(images / f"c{i:03d}.jpg", quality=95)
        files[f"c{i:03d}"] = images / f"c{i:03d}.jpg"
        row = {"track_id": f"t{i}", "album_id": f"a{i}", "cover_id": f"c{i:03d}",
               "popularity": round(arr.mean() / 2.55, 1),
               "split": ["train", "train", "train", "val", "test"][i % 5]}
        if with_metadata:
            row.update(genre=GENRES[i % 4], year=2000 + i % 20)
        rows.append(row)
    shas = pack_covers(root / "data" / "shards", files)
    rows = [{**r, "sha256": shas[r["cover_id"]]} for r in rows]
    pd.DataFrame(rows).to_csv(root / "data" / "split.csv", index=False)
    params = {"model": "test_resnet", "pretrained": False, "image_size": 32,
              "normalization": "imagenet", "seed": 0,
              "train": {"freeze_backbone": True, "augment": False, "head": "ridge",
                        "blank_baseline": False},
              "split": {"group_by": "album"},
              "evaluate": {"bootstrap": 50, "gallery": 2, "cv_folds": 3}}
    write_params(root, params)
    cfg = TrainConfig.from_params(params)
    cfg.progress = False
    data, _ = load_split(root / "data/split.csv", root / "data/shards", 32, progress=False)
    result, _, meta = run_probe(cfg, data)
    save_checkpoint(root / "models" / "model.pt", result.model, **meta)
    return root


def run_evaluate(root: Path) -> subprocess.CompletedProcess:
    # the same COVERPOP_CACHE as the probe that trained the checkpoint (the autouse fixture)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(REPO / "stages" / "evaluate.py"), "data/split.csv", "data/shards",
           "models/model.pt", "metrics/evaluate.json", "metrics/eval", "data/features.csv"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COVERPOP_CACHE", str(tmp_path / "cache"))


@pytest.mark.slow  # a stage process or a pipeline: seconds
def test_evaluate_stage_reports_metadata_models_with_cis(tmp_path):
    root = workspace(tmp_path / "ws", with_metadata=True)
    proc = run_evaluate(root)
    report = json.loads((root / "metrics" / "evaluate.json").read_text())
    # the headline: the checkpoint on the test split, named as such, and the out-of-fold answer
    assert set(report) == {"test_covers", "model", "oof"}
    oof = report["oof"]
    assert oof["covers"] == 60   # every kept cover: train, val and test
    # no features.csv here: no interpretable step, so the backbone's gain is the cover's
    assert set(oof) == {"covers", "covers_only", "metadata_only", "cover_added_value"}
    gain = oof["cover_added_value"]["spearman"]
    assert set(gain) == {"value", "ci_low", "ci_high"}
    assert gain["ci_low"] <= gain["value"] <= gain["ci_high"]
    assert "without the interpretable cover features" in proc.stdout
    full = json.loads((root / "metrics" / "eval" / "report.json").read_text())
    assert {"model", "baseline_genre_year", "metadata_only", "cover_added_value",
            "oof"} <= set(full)
    # one model under two names: the genre + year baseline is the metadata-only model
    assert full["baseline_genre_year"]["spearman"] == full["metadata_only"]["spearman"]
    detail = json.loads((root / "metrics" / "eval" / "metadata.json").read_text())
    assert detail["metadata_columns"] == ["genre", "year"]
    mae = detail["cover_added_value"]["mae"]
    assert mae["ci_low"] <= mae["value"] <= mae["ci_high"]
    assert "with the cover" in proc.stdout
    oof_rows = pd.read_csv(root / "metrics" / "eval" / "oof_predictions.csv")
    assert len(oof_rows) == 60 and oof_rows["covers_only"].notna().all()
    assert (root / "metrics" / "eval" / "verdict.png").is_file()
    # the test-split predictions come from the cached features through the checkpoint's head:
    # the same numbers as the checkpoint on the pixels
    from coverpop.train.checkpoint import load_predictor
    from coverpop.train.data import load_covers

    split = pd.read_csv(root / "data" / "split.csv", dtype={"cover_id": str, "sha256": str})
    test = split[split["split"] == "test"]
    predictor = load_predictor(root / "models" / "model.pt")
    direct = predictor.predict_uint8(load_covers(root / "data" / "shards", list(test["cover_id"]),
                                                 list(test["sha256"]), 32, progress=False)[:])
    shown = pd.read_csv(root / "metrics" / "eval" / "predictions.csv")["predicted"]
    np.testing.assert_allclose(shown, direct, atol=0.011)


@pytest.mark.slow  # a stage process or a pipeline: seconds
def test_evaluate_without_metadata_columns_skips_with_a_message(tmp_path):
    root = workspace(tmp_path / "ws", with_metadata=False)
    proc = run_evaluate(root)
    report = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert not {"metadata_only", "model_with_metadata", "cover_added_value"} & set(report)
    assert set(report["oof"]) == {"covers", "covers_only"}
    assert "no genre or year column" in proc.stdout
    detail = json.loads((root / "metrics" / "eval" / "metadata.json").read_text())
    assert detail == {"metadata_columns": [], "skipped": "the tracks have no genre or year column"}
    assert "model" in report
