"""The `dvc plots show` and `dvc plots diff` pages of the tiny demo, in headless Chromium, offline.

Every declared chart draws, nothing appears twice, no table is drawn over row numbers, and the
diff of two experiments puts both on every chart. Chromium and the npm vega builds are installed
by `.ci/run` / `make browser`, never here: without them the tests skip, except under CI=true.
"""

import os
import shutil

import pytest
import yaml
from browser import plots_page
from conftest import EXPERIMENT, TINY_PARAMS
from PIL import Image, ImageStat

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    if lacks := plots_page.missing():
        reason = "the browser check needs " + " and ".join(lacks) + " (or: make browser)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return plots_page.build_template(tmp_path_factory.mktemp("page") / "plots.html")


def test_plots_show_draws_every_declared_chart_once(built_repo, template, tmp_path):
    page = plots_page.render(built_repo, ["show"], tmp_path / "show", template)
    report = plots_page.load(page)
    assert plots_page.check(report, built_repo) == []
    kinds = sorted(chart["kind"] for chart in report["charts"])
    pngs = [f for files in plots_page.declared_charts(built_repo).values() for f in files
            if f.endswith(".png")]
    assert kinds.count("image") == len(pngs) >= 5 and kinds.count("vega") >= 10, kinds
    assert 'src="https://' not in page.read_text()     # offline: no CDN script

    # the picture of the page (what `make plots-screenshot` writes to docs/plots.png)
    png = plots_page.screenshot(page, tmp_path / "plots.png", report)
    with Image.open(png) as im:
        assert im.size == (plots_page.WIDTH, report["height"])
        lo, hi = zip(*ImageStat.Stat(im.convert("L")).extrema)
        assert lo[0] < 50 and hi[0] > 200    # drawn, not a blank page


def test_plots_diff_shows_both_experiments_on_every_chart(built_with_experiment, template,
                                                         tmp_path):
    # the first run: the built demo, committed on main; the second: the session's experiment,
    # another model (conftest.EXPERIMENT)
    repo = built_with_experiment
    revs = ["main", EXPERIMENT["name"]]
    page = plots_page.render(repo, ["diff", *revs], tmp_path / "diff", template)
    report = plots_page.load(page)
    assert plots_page.check(report, repo, revs=revs) == []
    images = [c for c in report["charts"] if c["kind"] == "image"]
    assert images and all(len(c["images"]) == 2 for c in images)    # side by side, one per run
    loss = next(c for c in report["charts"] if c["id"].endswith("train_loss_tsv"))
    rows = loss["spec"]["data"]["values"]
    curves = {rev: [row["loss"] for row in rows if row["rev"] == rev] for rev in revs}
    assert [len(curves[rev]) for rev in revs] == [TINY_PARAMS["train.epochs"]] * 2   # each run's
    assert curves["main"] != curves[EXPERIMENT["name"]]   # ... own curve, not one drawn twice


def test_the_check_sees_what_issue_20_saw(built_repo, template, tmp_path):
    """The old dvc.yaml's faults, put back: each is reported (the check can fail)."""
    repo = tmp_path / "repo"
    shutil.copytree(built_repo, repo, symlinks=True)
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    dvc_yaml["stages"]["dedupe_split"]["plots"] = [{"metrics/dedupe.csv": {"cache": False}}]
    dvc_yaml["plots"] = [
        "metrics/eval/gallery.png",                                 # also a stage plot
        {"Rank effect (Cliff's delta)": {"template": "bar_horizontal", "x": "effect",
                                         "y": {"metrics/analysis/rank_effects.csv": "feature"}}},
    ]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    shutil.copy(repo / "metrics/eval/gallery.png", repo / "metrics/eval/stray.png")  # undeclared
    report = plots_page.load(plots_page.render(repo, ["show"], tmp_path / "show", template))
    problems = "\n".join(plots_page.check(report, repo))
    assert "metrics/eval/gallery.png: declared in 2 charts" in problems
    assert "metrics/analysis/rank_effects.csv: declared in 2 charts" in problems
    assert "metrics/eval/stray.png: beside the charts, declared nowhere in dvc.yaml" in problems
    assert "page error: " in problems and "SyntaxError" in problems     # the apostrophe
    assert "Rank effect (Cliff's delta): did not draw" in problems
    assert ("metrics/dedupe.csv: x is 'step', not a column of metrics/dedupe.csv "
            "(a table drawn over row numbers?)") in problems
