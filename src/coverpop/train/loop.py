"""The training loop: plain PyTorch, top to bottom, every recipe knob a field of TrainConfig.

`fit` trains one model on ready uint8 images (see `data.load_images`); `run` adds the sanity
baseline (the same recipe on blank inputs) that the train stage reports next to the real metrics.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

from coverpop.core.errors import CoverpopError
from coverpop.core.metrics import score
from coverpop.core.params import one_of
from coverpop.train import distributed as dist
from coverpop.train import embeddings
from coverpop.train.data import (
    NORMALIZATIONS,
    CoverTensors,
    augment,
    batch_grid,
    resolve_normalization,
)
from coverpop.train.models import (
    OUTPUTS,
    TARGET_SCALE,
    CoverRegressor,
    is_vit_like,
    timm_kwargs,
)
from coverpop.train.pretrained import Weights, parse_pretrained, resolve_weights

LOSSES = ("mse", "huber", "l1")
SCHEDULES = ("cosine", "constant")
HUBER_DELTA = 0.1  # on the 0–1 scale: errors past 10 popularity points count linearly


@dataclass
class TrainConfig:
    # top-level params (shared with the other stages)
    model: str = "resnet18"
    pretrained: object = False
    image_size: int = 64
    normalization: str = "imagenet"
    seed: int = 0
    # train: section
    epochs: int = 5
    batch_size: int = 64            # global: split across torchrun processes
    lr: float = 1e-3
    weight_decay: float = 0.05
    lr_schedule: str = "cosine"     # cosine | constant, after a linear warmup
    warmup_epochs: float = 1.0
    freeze_backbone: bool = False   # train the head only (cached embeddings when augment is off)
    head_hidden: int = 0            # 0 = linear head, else an MLP with this many hidden units
    output: str = "sigmoid"         # sigmoid (bounded 0–100) | linear
    loss: str = "mse"               # mse | huber | l1
    augment: bool = True            # random resized crop + horizontal flip
    early_stopping: int = 0         # patience in epochs on val loss; 0 = off
    overfit_batches: int = 0        # sanity check: train on this many fixed batches only
    blank_baseline: bool = True     # also train on blank inputs and report it
    device: str = "auto"            # auto (cuda → mps → cpu) | cpu | cuda | cuda:1 | mps
    compile: object = False         # false | true | a torch.compile backend name
    channels_last: object = "auto"  # auto (CNNs yes, ViTs no) | true | false
    amp: object = "auto"            # bf16 autocast: auto (on CUDA) | true | false
    deterministic: object = "auto"  # deterministic kernels: auto (CPU yes, GPU no) | true | false
    progress: bool = field(default=True, repr=False)

    TOP_LEVEL = ("model", "pretrained", "image_size", "normalization", "seed")

    @classmethod
    def from_params(cls, params: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)} - {"progress"}
        train = dict(params.get("train") or {})
        unknown = sorted(set(train) - names)
        if unknown:
            raise CoverpopError(f"params.yaml: train.{unknown[0]} is not a train param "
                                f"(known: {', '.join(sorted(names - set(cls.TOP_LEVEL)))})")
        values = {k: params[k] for k in cls.TOP_LEVEL if k in params}
        values.update(train)
        return cls(**values).validated()

    def validated(self) -> TrainConfig:
        one_of(self.normalization, NORMALIZATIONS, "normalization")
        one_of(self.output, OUTPUTS, "train.output")
        one_of(self.loss, LOSSES, "train.loss")
        one_of(self.lr_schedule, SCHEDULES, "train.lr_schedule")
        self.pretrained = parse_pretrained(self.pretrained)
        for name in ("image_size", "epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise CoverpopError(f"params.yaml: {name}={getattr(self, name)!r} must be a "
                                    f"positive integer")
        for name in ("early_stopping", "overfit_batches", "head_hidden"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise CoverpopError(f"params.yaml: train.{name}={getattr(self, name)!r} must be "
                                    f"0 or a positive integer")
        if self.lr <= 0 or self.warmup_epochs < 0 or self.weight_decay < 0:
            raise CoverpopError("params.yaml: train.lr must be > 0, warmup_epochs and "
                                "weight_decay >= 0")
        return self


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CoverpopError(f"params.yaml: train.device={name!r} is not a device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CoverpopError(f"params.yaml: train.device={name!r} but no CUDA GPU is visible")
    if device.type == "cuda" and dist.world() > 1:
        device = torch.device("cuda", dist.local_rank())
    return device


def _flag(value, auto: bool, name: str) -> bool:
    if value == "auto":
        return auto
    if isinstance(value, bool):
        return value
    raise CoverpopError(f"params.yaml: train.{name}={value!r} must be auto, true or false")


def set_determinism(value, device: torch.device) -> bool:
    """Deterministic kernels: free on the CPU, so `auto` turns them on there; on a GPU they can
    cost speed, so `auto` leaves them off and `true` asks for them (cuBLAS then needs a fixed
    workspace, set here unless the environment already sets it; cuDNN autotuning stays off).
    An op with no deterministic kernel warns instead of failing."""
    on = _flag(value, device.type == "cpu", "deterministic")
    if on and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(on, warn_only=True)
    return on


def loss_fn(name: str):
    return {"mse": F.mse_loss, "l1": F.l1_loss,
            "huber": lambda p, y: F.huber_loss(p, y, delta=HUBER_DELTA)}[name]


def val_metrics(true: np.ndarray, pred: np.ndarray) -> dict:
    """Val MAE, RMSE and Spearman on the 0–100 scale, scored as the evaluate stage scores them."""
    return {name: score(np.asarray(true, float), np.asarray(pred, float), name)
            for name in ("mae", "rmse", "spearman")}


def lr_lambda(cfg: TrainConfig, steps_per_epoch: int, total_steps: int):
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


class _Head(torch.nn.Module):
    """The trainable part when inputs are cached embeddings (a module so DDP can wrap it)."""

    def __init__(self, model: CoverRegressor):
        super().__init__()
        self.model = model

    def forward(self, feats):
        return self.model.forward_head(feats)


@dataclass
class FitResult:
    model: CoverRegressor
    history: list            # one dict per epoch: train_loss, val_loss, val_mae, …, seconds
    best_epoch: int
    val: dict                # metrics of the kept (best) model on val, 0–100 scale
    train_mean: float        # 0–100
    first_batch: np.ndarray | None
    train_images_per_s: float
    val_pred: np.ndarray = field(default_factory=lambda: np.empty(0))


def fit(cfg: TrainConfig, data: CoverTensors, weights: Weights, mean, std, live=None) -> FitResult:
    device = resolve_device(cfg.device)
    set_determinism(cfg.deterministic, device)
    torch.manual_seed(cfg.seed)
    model = CoverRegressor(cfg.model, cfg.image_size, mean, std, cfg.output, cfg.head_hidden,
                           weights=weights)
    y = data.popularity.float() / TARGET_SCALE
    train_mean = float(y[data.train_idx].mean())
    model.init_output(train_mean)  # first prediction = train mean; first loss = variance
    model.to(device)
    channels_last = _flag(cfg.channels_last, not is_vit_like(cfg.model), "channels_last")
    amp = _flag(cfg.amp, device.type == "cuda", "amp")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    augment_on = cfg.augment and cfg.overfit_batches == 0
    if cfg.freeze_backbone:
        model.backbone.requires_grad_(False)

    # Inputs: cached embeddings when the backbone is frozen and sees each image the same way.
    use_embeddings = cfg.freeze_backbone and not augment_on
    if use_embeddings:
        build = timm_kwargs(cfg.model, cfg.image_size)
        key = embeddings.embedding_key(cfg.model, weights.key + (f":seed{cfg.seed}" if
                                       weights.kind == "none" else ""), cfg.image_size, mean, std,
                                       data.image_key, build, "bf16" if amp else "fp32")

        def make():
            images = data.images[:1] if data.blank_inputs else data.images
            feats = embeddings.compute(model, images, device, amp=amp,
                                       channels_last=channels_last,
                                       progress=cfg.progress and dist.is_main())
            return feats.expand(len(data.images), -1).clone() if len(images) == 1 else feats
        inputs, _ = dist.main_first(lambda: embeddings.cached(key, make))
        net = _Head(model)
    else:
        inputs = data.images
        net = model
    if device.type == "cuda" and inputs.numel() * inputs.element_size() < 0.25 * torch.cuda.mem_get_info(device)[0]:
        inputs = inputs.to(device)  # whole set on the GPU: batches are a gather, no host copy
    y_dev = y.to(device)

    step_net = net
    if dist.world() > 1:
        step_net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        step_net = torch.compile(step_net, **({} if cfg.compile is True else {"backend": cfg.compile}))

    # Batches: a seeded permutation per epoch (same on every rank), then this rank's share.
    order_gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1 + dist.rank())
    train_idx = data.train_idx
    if cfg.overfit_batches:
        train_idx = train_idx[: cfg.overfit_batches * cfg.batch_size]
    per_rank = max(1, cfg.batch_size // dist.world())
    n_local = len(dist.shard(train_idx, even=True))
    steps_per_epoch = max(1, n_local // per_rank if n_local % per_rank < 2 else -(-n_local // per_rank))
    total_steps = steps_per_epoch * cfg.epochs
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, steps_per_epoch, total_steps))
    criterion = loss_fn(cfg.loss)

    def forward(batch: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, the exact tensor the network was given)."""
        n = len(batch)
        if data.blank_inputs:
            # Identical inputs give identical outputs, also through train-mode BatchNorm (a batch
            # of copies has one image's statistics): run two copies (BatchNorm needs >1 value)
            # and broadcast. Same model, steps and gradients as the full batch, ~2/batch_size of
            # the cost; only BatchNorm's running variance sees a smaller count.
            batch = batch[:2]
        x = batch.to(device, non_blocking=True)
        if not use_embeddings:
            x = x.float()  # pixels on the 0–255 scale; the model normalises them itself
            if train and augment_on and not data.blank_inputs:  # a crop of black is black
                x = augment(x, aug_gen)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = (step_net if train else net)(x).float()
        return (out[:1].expand(n) if data.blank_inputs else out), x

    first_batch = None
    history, best, best_state, best_epoch, stale = [], math.inf, None, 0, 0
    seen = 0
    for epoch in range(cfg.epochs):
        model.train()
        if cfg.freeze_backbone:
            model.backbone.eval()  # frozen means frozen BatchNorm statistics too
        perm = train_idx if cfg.overfit_batches else train_idx[torch.randperm(len(train_idx), generator=order_gen)]
        local = dist.shard(perm, even=True)
        t0, c0 = time.perf_counter(), time.process_time()
        loss_sum = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            idx = local[step * per_rank:(step + 1) * per_rank]
            pred, x = forward(inputs[idx.to(inputs.device)], train=True)
            loss = criterion(pred, y_dev[idx.to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(idx)  # no .item(): the GPU never waits for the host
            if first_batch is None:  # what the backbone is fed: after augmentation and normalising
                with torch.no_grad():
                    first_batch = batch_grid(model.normalize(
                        x if not use_embeddings else data.images[idx].to(device)))
        train_loss = float(loss_sum) / max(1, min(len(local), steps_per_epoch * per_rank))
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        seen += min(len(local), steps_per_epoch * per_rank)
        train_loss = float(np.mean(dist.gather(train_loss)))

        val_pred, val_loss = _predict_rows(net, forward, inputs, data.val_idx, per_rank, y_dev,
                                           criterion)
        row = {"epoch": epoch, "train_loss": train_loss, "seconds": seconds,
               "cpu_seconds": cpu_seconds, "lr": sched.get_last_lr()[0]}
        if len(data.val_idx):
            row.update(val_loss=val_loss, **{f"val_{k}": v for k, v in val_metrics(
                data.popularity[data.val_idx].numpy(), val_pred * TARGET_SCALE).items()})
        history.append(row)
        if cfg.progress and dist.is_main():
            print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}"
                  + (f"  val loss {row['val_loss']:.4f}  val MAE {row['val_mae']:.2f}  "
                     f"val Spearman {row['val_spearman']:.3f}" if "val_loss" in row else ""),
                  flush=True)
        if live is not None:
            for k, v in row.items():
                if k not in ("epoch", "lr", "seconds", "cpu_seconds"):
                    live.log_metric(k.replace("_", "/", 1), v)
            live.log_metric("lr", row["lr"], plot=True)
            if epoch == 0 and first_batch is not None:
                live.log_image("first_batch.png", first_batch)
            live.next_step()
        score = val_loss if len(data.val_idx) else train_loss
        if score < best:
            best, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
            if cfg.early_stopping and stale >= cfg.early_stopping:
                break

    if best_state is not None:
        model.load_state_dict(best_state)
    val_pred, _ = _predict_rows(net, forward, inputs, data.val_idx, per_rank, y_dev, criterion)
    val = val_metrics(data.popularity[data.val_idx].numpy(), val_pred * TARGET_SCALE) \
        if len(data.val_idx) else {}
    train_seconds = sum(r["seconds"] for r in history)
    return FitResult(model.cpu().eval(), history, best_epoch, val, train_mean * TARGET_SCALE,
                     first_batch, seen * dist.world() / max(train_seconds, 1e-9), val_pred)


@torch.no_grad()
def _predict_rows(net, forward, inputs, idx, batch_size, y_dev, criterion) -> tuple[np.ndarray, float]:
    """Predictions (0–1 scale) for rows idx, sharded over ranks and gathered back in order."""
    if len(idx) == 0:
        return np.empty(0), math.nan
    net.eval()
    mine = dist.shard(idx, even=False)
    preds = [forward(inputs[mine[i:i + batch_size].to(inputs.device)], train=False)[0].cpu()
             for i in range(0, len(mine), batch_size)]
    local = torch.cat(preds) if preds else torch.empty(0)
    parts = dist.gather(local)
    out = torch.empty(len(idx))
    for r, part in enumerate(parts):
        out[r::dist.world()] = part
    loss = float(criterion(out.to(y_dev.device), y_dev[idx.to(y_dev.device)]))
    return out.numpy(), loss


def run(cfg: TrainConfig, data: CoverTensors, live=None) -> tuple[FitResult, FitResult | None, dict]:
    """Train the model, then (if asked) the same recipe on blank inputs.
    Returns (result, blank result or None, checkpoint metadata)."""
    weights = resolve_weights(cfg.model, cfg.pretrained)
    mean, std = resolve_normalization(cfg.normalization, (weights.mean, weights.std),
                                      data.images[data.train_idx])
    result = fit(cfg, data, weights, mean, std, live=live)
    blank = None
    if cfg.blank_baseline:
        if cfg.progress and dist.is_main():
            print("blank baseline: the same model and recipe on all-black covers", flush=True)
        blank = fit(cfg, data.blank(), weights, mean, std)
    return result, blank, checkpoint_meta(cfg, result, weights, mean, std)


def checkpoint_meta(cfg: TrainConfig, result: FitResult, weights: Weights, mean, std) -> dict:
    """What models/model.pt holds besides the state dict: everything predict needs (the contract
    in CONTEXT.md) plus how the model was made."""
    return {
        "model": cfg.model,
        "image_size": cfg.image_size,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "output": cfg.output,
        "head_hidden": cfg.head_hidden,
        "target_scale": TARGET_SCALE,
        "normalization": cfg.normalization,
        "best_epoch": result.best_epoch + 1,
        "timm_kwargs": timm_kwargs(cfg.model, cfg.image_size),
        "pretrained": str(cfg.pretrained),
        "weights_key": weights.key,
        "train_mean": result.train_mean,
        "val": result.val,
        "config": {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "progress"},
    }
