"""Stage evaluate: the model and the baselines on the test split, gains with bootstrap CIs.

Writes the headline numbers to the metrics file (`dvc exp show` columns) and the full report,
predictions, gallery and Grad-CAM overlays to the plots folder.
"""

import _env  # noqa: F401  (first: a one-line error when the environment is not active)

from pathlib import Path

import pandas as pd

from coverpop.core.atomic import write_csv, write_json
from coverpop.core.errors import run_stage
from coverpop.core.metrics import gain_ci, regression_metrics
from coverpop.core.params import load_params, stage_paths
from coverpop.covers.store import CoverStore
from coverpop.evaluate.baselines import (
    genre_year_baseline,
    mean_baseline,
    random_baseline,
)
from coverpop.evaluate.metadata import (
    cover_features,
    cover_value_report,
    fit_cover_value,
    metadata_columns,
)
from coverpop.evaluate.report import gallery, headline, predictions_frame
from coverpop.evaluate.saliency import explain_test_covers
from coverpop.train.checkpoint import load_predictor
from coverpop.train.data import load_covers

GAIN_METRICS = ("mae", "rmse", "r2", "spearman")


def main() -> None:
    args = stage_paths("split", "store", "model", "metrics_out", "plots_dir")
    params = load_params()
    e, seed = params["evaluate"], int(params["seed"])

    rows = pd.read_csv(args.split, dtype={"track_id": str, "cover_id": str, "sha256": str})
    train, test = rows[rows["split"] == "train"], rows[rows["split"] == "test"]
    predictor = load_predictor(args.model)
    store = CoverStore(args.store)
    test_images = load_covers(store, test["cover_id"].tolist(), test["sha256"].tolist(),
                              predictor.image_size)
    predicted = predictor.predict_uint8(test_images)
    y = test["popularity"].to_numpy()

    baselines = {"mean": mean_baseline(train, test), "random": random_baseline(train, test, seed)}
    genre_year = genre_year_baseline(train, test, seed)
    if genre_year is not None:
        baselines["genre_year"] = genre_year
    report = {"test_covers": len(test), "model": regression_metrics(y, predicted)}
    for name, base in baselines.items():
        report[f"baseline_{name}"] = regression_metrics(y, base)
    for name, base in baselines.items():
        report[f"gain_vs_{name}"] = {m: gain_ci(y, predicted, base, m, int(e["bootstrap"]), seed)
                                     for m in GAIN_METRICS}
    plots = Path(args.plots_dir)
    # Does the cover add anything to genre and year? Ridge on metadata vs cover features + metadata.
    if metadata_columns(train):
        x_train, x_test = cover_features(predictor, args.split, store, test_images)
        value = fit_cover_value(train, test, x_train, x_test, seed)
        value_headline, detail = cover_value_report(y, value, int(e["bootstrap"]), seed)
        report.update(value_headline)
        write_json(plots / "metadata.json", detail)
    else:
        (plots / "metadata.json").unlink(missing_ok=True)
        print("evaluate: the tracks have no genre or year column: metadata_only, "
              "model_with_metadata and cover_added_value skipped")
    write_json(plots / "report.json", report)
    write_json(args.metrics_out, headline(report))

    write_csv(plots / "predictions.csv", predictions_frame(test, predicted))
    gallery(test, predicted, store, plots / "gallery.png", per_row=int(e["gallery"]))
    # insight: where the model looks on its best- and worst-predicted covers (Grad-CAM)
    explain_test_covers(predictor, test, predicted, store, plots / "saliency.png",
                        n=max(1, int(e["gallery"]) // 2))
    m, g = report["model"], report["gain_vs_mean"]["spearman"]
    print(f"evaluate: MAE {m['mae']:.2f}  RMSE {m['rmse']:.2f}  R² {m['r2']:.3f}  "
          f"Spearman {m['spearman']:.3f} (vs mean: +{g['value']:.3f}, 95% CI "
          f"{g['ci_low']:.3f}..{g['ci_high']:.3f}) -> {args.metrics_out}")
    if "cover_added_value" in report:
        v = report["cover_added_value"]["spearman"]
        print(f"evaluate: genre + year Spearman {report['metadata_only']['spearman']:.3f}, with the "
              f"cover {report['model_with_metadata']['spearman']:.3f} (added: {v['value']:+.3f}, "
              f"95% CI {v['ci_low']:+.3f}..{v['ci_high']:+.3f})")


if __name__ == "__main__":
    run_stage(main)
