"""Stage train: fit a timm model on the train split, pick the best epoch on val, save a checkpoint."""

import argparse

import pandas as pd
import torch
from dvclive import Live

from coverpop.data import load_images, norm_stats
from coverpop.errors import run_stage
from coverpop.models import CoverRegressor
from coverpop.params import load_params
from coverpop.predict import save_checkpoint
from coverpop.training import TrainConfig, train

TARGET_SCALE = 100.0  # popularity points ↔ the model's 0-1 scale


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    ap.add_argument("model_out")
    ap.add_argument("live_dir")
    args = ap.parse_args()
    params = load_params()
    t = params["train"]
    size, name = int(params["image_size"]), params["model"]
    torch.manual_seed(params["seed"])

    rows = pd.read_csv(args.split)
    train_rows, val_rows = rows[rows["split"] == "train"], rows[rows["split"] == "val"]
    x_train = load_images(train_rows["file"].tolist(), size)
    x_val = load_images(val_rows["file"].tolist(), size)
    y_train = torch.tensor(train_rows["popularity"].to_numpy() / TARGET_SCALE, dtype=torch.float32)
    y_val = torch.tensor(val_rows["popularity"].to_numpy() / TARGET_SCALE, dtype=torch.float32)

    mean, std = norm_stats(params["normalization"], name, x_train)
    model = CoverRegressor(name, size, mean, std, output=t["output"],
                           pretrained=bool(params["pretrained"]))
    cfg = TrainConfig(epochs=int(t["epochs"]), batch_size=int(t["batch_size"]), lr=float(t["lr"]),
                      weight_decay=float(t["weight_decay"]), seed=int(params["seed"]))
    with Live(args.live_dir, dvcyaml=None, save_dvc_exp=False) as live:
        result = train(model, x_train, y_train, x_val, y_val, cfg, live)
        live.summary.update(result)
    save_checkpoint(args.model_out, model, model=name, image_size=size, mean=mean, std=std,
                    output=t["output"], head_hidden=0, target_scale=TARGET_SCALE,
                    normalization=params["normalization"], best_epoch=result["best_epoch"])
    print(f"train: best epoch {result['best_epoch']} (val loss {result['best_val_loss']:.4f}) "
          f"-> {args.model_out}")


if __name__ == "__main__":
    run_stage(main)
