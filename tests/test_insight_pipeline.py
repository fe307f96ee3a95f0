"""Insight on real pipeline outputs: the analysis recovers what the demo planted, Grad-CAM lands
in the evaluate gallery, and `coverpop predict` works on a checkpoint from a real training run."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_repo_copy, run
from PIL import Image

from coverpop import cli
from coverpop.covers.store import CoverStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analyzed_repo(tmp_path_factory) -> Path:
    """A tiny repo with enough albums for the planted effects to show (~700 covers), run up to
    `analyze` only: no training needed."""
    repo = make_repo_copy(tmp_path_factory.mktemp("insight") / "repo",
                          {"data.demo.n_albums": 700, "select.n": 1000, "analyze.bootstrap": 300})
    run(["dvc", "repro", "analyze"], repo)
    return repo


def test_analysis_recovers_the_planted_effects(analyzed_repo):
    m = json.loads((analyzed_repo / "metrics/analysis/summary.json").read_text())
    assert m["n_covers"] >= 500
    # The detectors see what was drawn (their truth comes from the demo_* columns).
    check = m["detector_check"]
    assert check["face_recall"] > 0.7 and check["face_precision"] > 0.9
    assert check["text_recall"] > 0.5 and check["text_precision"] > 0.9
    assert check["saturation_spearman"] > 0.8
    # Planted: face +20, text +9, saturation +16 per unit (before zero-inflation).
    face, text, sat = m["face"], m["text"], m["saturation"]
    assert face["mean_diff_low"] > 0 and face["cliffs_delta_low"] > 0 and face["p_adjusted"] < 1e-3
    assert 10 < face["mean_diff"] < 30
    assert face["top_share"] > face["bottom_share"] and face["top_minus_bottom_low"] > 0
    assert text["mean_diff_low"] > 0 and text["p_adjusted"] < 0.01
    assert text["mean_diff"] < face["mean_diff"]  # the smaller planted effect stays smaller
    assert sat["spearman_low"] > 0 and sat["p_adjusted"] < 0.01
    assert face["adjusted_low"] > 0 and sat["adjusted_low"] > 0
    # Not everything is "significant": brightness was not planted.
    assert m["brightness"]["spearman_low"] < 0.1


def test_analysis_outputs_for_dvc(analyzed_repo):
    repo = analyzed_repo
    features = pd.read_csv(repo / "data/features.csv")
    split = pd.read_csv(repo / "data/split.csv")
    assert len(features) == len(split) and features["faces"].notna().all()
    bins = pd.read_csv(repo / "metrics/analysis/face_share_by_popularity.csv")
    assert bins["n"].sum() == len(split)
    assert Image.open(repo / "metrics/analysis/effects.png").format == "PNG"
    plots = json.loads(run(["dvc", "plots", "show", "--json"], repo).stdout)
    # the reports are plain files (DVC-tracked), neither charts nor metrics columns
    assert (repo / "metrics/analysis/summary.json").is_file()
    assert not {"metrics/analysis/summary.json", "metrics/analysis/report.json"} & set(plots["data"])
    assert not [e for e in plots.get("errors", []) if "analysis" in e["source"]]
    shares = plots["data"]["metrics/analysis/face_share_by_popularity.csv"][0]["content"]
    assert shares["title"]["text"] == "Share of covers with a face, by popularity"
    assert len(shares["data"]["values"]) == len(bins)
    assert "metrics/analysis/effects.png" in plots["data"]
    assert "Stage 'analyze' didn't change" in run(["dvc", "repro", "analyze"], repo).stdout


def test_bad_analyze_param_is_one_line(analyzed_repo):
    from conftest import set_params

    set_params(analyzed_repo, {"analyze.splits": ["train", "holdout"]})
    try:
        proc = run(["dvc", "repro", "analyze"], analyzed_repo, check=False)
    finally:
        set_params(analyzed_repo, {"analyze.splits": ["train", "val", "test"]})
    assert proc.returncode != 0
    assert "error: params.yaml: analyze.splits=['train', 'holdout'] must be a list of train, val, test" \
        in proc.stderr
    assert "Traceback" not in proc.stderr


def test_evaluate_gallery_has_grad_cam(built_repo):
    with Image.open(built_repo / "metrics/eval/saliency.png") as im:
        assert im.format == "PNG" and im.width > 300


def predict(repo: Path, *args: str, check=True):
    return run([sys.executable, "-m", "coverpop.cli", "predict", *args], repo, check=check)


def cover_files(repo: Path, cover_ids, folder: Path) -> list[str]:
    """Covers of the repo's cover store as plain files: what a user hands to predict."""
    store = CoverStore(repo / "data/shards")
    folder.mkdir(exist_ok=True)
    for cover_id in cover_ids:
        (folder / f"{cover_id}.jpg").write_bytes(store.read(cover_id))
    return [str(folder / f"{c}.jpg") for c in cover_ids]


def test_predict_on_a_trained_checkpoint(built_repo, tmp_path, capsys, monkeypatch):
    repo = built_repo
    preds = pd.read_csv(repo / "metrics/eval/predictions.csv", dtype={"track_id": str})
    split = pd.read_csv(repo / "data/split.csv", dtype={"track_id": str, "cover_id": str})
    files = cover_files(repo, split.set_index("track_id").loc[preds["track_id"].head(3),
                                                              "cover_id"], tmp_path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(Path(files[0]).read_bytes()[:200])
    proc = predict(repo, files[0], str(broken), *files[1:], check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(f"error: {broken}: not a readable image")
    assert len(proc.stderr.strip().splitlines()) == 1
    out = proc.stdout.strip().splitlines()   # the good covers are still predicted
    assert [line.split()[1] for line in out] == files
    # The CLI agrees with what the evaluate stage predicted for the same covers.
    got = [float(line.split()[0]) for line in out]
    assert got == pytest.approx(preds["predicted"].head(3).tolist(), abs=0.1)
    # --json --features through the same entry point, in this process (the command as a process
    # is checked above: a second one would only pay torch's import again)
    monkeypatch.chdir(repo)
    assert cli.main(["predict", files[0], "--json", "--features"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["file"] == files[0] and 0 <= rows[0]["popularity"] <= 100
    assert rows[0]["popularity"] == pytest.approx(got[0], abs=0.05)
    assert {"faces", "colourfulness", "saturation", "text"} <= set(rows[0]["features"])


def test_predict_with_a_cut_off_checkpoint_is_one_line(built_repo, tmp_path, capsys):
    repo = built_repo
    split = pd.read_csv(repo / "data/split.csv", dtype={"cover_id": str})
    (cover,) = cover_files(repo, split["cover_id"].head(1), tmp_path / "covers")
    bad_model = tmp_path / "model.pt"
    bad_model.write_bytes((repo / "models/model.pt").read_bytes()[:1000])  # a cut-off download
    assert cli.main(["predict", cover, "--model", str(bad_model)]) == 1   # as tests/test_cli.py
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"error: {bad_model}: not a usable coverpop checkpoint" in err
    assert "dvc pull" in err


def test_load_predictor_is_what_the_cli_uses(built_repo):
    # Guard the contract the CLI relies on: load_predictor(path).predict(list of PIL images).
    from coverpop.train.checkpoint import load_predictor

    p = load_predictor(built_repo / "models/model.pt")
    out = p.predict([Image.new("RGB", (50, 50), "red"), Image.new("RGB", (80, 80), "blue")])
    assert out.shape == (2,) and torch.from_numpy(out).isfinite().all()
