"""The training loop: plain PyTorch, read top to bottom."""

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from coverpop.models import CoverRegressor


@dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.05   # share of steps with a linear lr warm-up
    augment: bool = True   # random horizontal flips
    seed: int = 0


def cosine_with_warmup(step: int, total: int, warmup: float) -> float:
    w = max(1, int(total * warmup))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1 + math.cos(math.pi * (step - w) / max(1, total - w)))


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def train(model: CoverRegressor, x_train: torch.Tensor, y_train: torch.Tensor,
          x_val: torch.Tensor, y_val: torch.Tensor, cfg: TrainConfig, live=None) -> dict:
    """Fit on (uint8 images, 0-1 targets); keep the weights of the best val-loss epoch.
    Logs train/loss, val/loss, val/mae (points) and val/spearman per epoch to dvclive."""
    torch.manual_seed(cfg.seed)
    model.init_output(float(y_train.mean()))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: cosine_with_warmup(s, total, cfg.warmup))
    loss_fn = nn.MSELoss()
    order = torch.Generator().manual_seed(cfg.seed)
    best = {"val_loss": float("inf"), "epoch": -1, "state": None}

    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=order)
        running, seen = 0.0, 0
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if cfg.augment:
                flip = torch.rand(len(xb), generator=order) < 0.5
                xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item() * len(idx)
            seen += len(idx)

        pred = predict(model, x_val)
        val_loss = loss_fn(pred, y_val).item()
        val_mae = (pred - y_val).abs().mean().item() * 100
        val_rho = float(spearmanr(pred.numpy(), y_val.numpy()).statistic)
        print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {running / seen:.4f}  "
              f"val loss {val_loss:.4f}  val MAE {val_mae:.2f}  val Spearman {val_rho:.3f}")
        if live is not None:
            live.log_metric("train/loss", running / seen)
            live.log_metric("val/loss", val_loss)
            live.log_metric("val/mae", val_mae)
            live.log_metric("val/spearman", 0.0 if np.isnan(val_rho) else val_rho)
            live.next_step()
        if val_loss < best["val_loss"]:
            best = {"val_loss": val_loss, "epoch": epoch + 1,
                    "state": copy.deepcopy(model.state_dict())}

    model.load_state_dict(best["state"])
    return {"best_epoch": best["epoch"], "best_val_loss": best["val_loss"]}
