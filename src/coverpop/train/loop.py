"""The training loop: plain PyTorch, top to bottom, every recipe knob a field of TrainConfig.

`fit` trains one model on ready uint8 images (see `data.load_images`); `run` adds the sanity
baseline (the same head and recipe on blank inputs, `blank_config`) that the train stage reports
next to the real metrics.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from coverpop.core.errors import CoverpopError
from coverpop.core.metrics import score
from coverpop.core.params import check, default
from coverpop.train import distributed as dist
from coverpop.train import embeddings
from coverpop.train.data import (
    CoverTensors,
    augment,
    batch_grid,
    resolve_normalization,
    take,
)
from coverpop.train.models import (
    TARGET_SCALE,
    CoverRegressor,
    is_vit_like,
    timm_kwargs,
)
from coverpop.train.pretrained import Weights, parse_pretrained, resolve_weights

HUBER_DELTA = 0.1  # on the 0–1 scale: errors past 10 popularity points count linearly


@dataclass
class TrainConfig:
    """The recipe: the top-level params the train stage reads plus the `train:` section.
    Defaults are the schema's (core/schema.py, what the committed params.yaml holds, never the
    workspace's), for configs built by hand in tests and benchmarks; what each field means and
    allows: core/schema.py, docs/params.md."""

    # top-level params (shared with the other stages)
    model: str = default("model")
    pretrained: object = default("pretrained")
    image_size: int = default("image_size")
    normalization: str = default("normalization")
    seed: int = default("seed")
    # train: section
    epochs: int = default("train.epochs")
    batch_size: int = default("train.batch_size")
    lr: float = default("train.lr")
    weight_decay: float = default("train.weight_decay")
    lr_schedule: str = default("train.lr_schedule")
    warmup_epochs: float = default("train.warmup_epochs")
    freeze_backbone: bool = default("train.freeze_backbone")
    head: str = default("train.head")
    frozen_lr: float = default("train.frozen_lr")
    head_hidden: int = default("train.head_hidden")
    output: str = default("train.output")
    loss: str = default("train.loss")
    augment: bool = default("train.augment")
    early_stopping: int = default("train.early_stopping")
    overfit_batches: int = default("train.overfit_batches")
    blank_baseline: bool = default("train.blank_baseline")
    device: str = default("train.device")
    compile: object = default("train.compile")
    channels_last: object = default("train.channels_last")
    amp: object = default("train.amp")
    deterministic: object = default("train.deterministic")
    progress: bool = field(default=True, repr=False)

    TOP_LEVEL = ("model", "pretrained", "image_size", "normalization", "seed")

    @classmethod
    def from_params(cls, params: dict) -> TrainConfig:
        """The top-level keys the train stage reads plus the `train:` section."""
        top = {k: params[k] for k in cls.TOP_LEVEL if k in params}
        train = dict(params.get("train") or {})
        names = cls.param_names()
        check({f"train.{k}": v for k, v in train.items() if k not in names})  # a typo: one line
        return cls(**top, **train).validated()

    def validated(self) -> TrainConfig:
        """Checked by the params schema, the same check load_params() makes."""
        check({name if name in self.TOP_LEVEL else f"train.{name}": getattr(self, name)
               for name in self.param_names()})
        self.pretrained = parse_pretrained(self.pretrained)
        return self

    @classmethod
    def param_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "progress"]


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


def _flag(value, auto: bool) -> bool:
    """An `auto | true | false` param (checked by the schema)."""
    return auto if value == "auto" else bool(value)


def uses_channels_last(cfg: TrainConfig, model: torch.nn.Module | None = None,
                       device: torch.device | None = None) -> bool:
    """`train.channels_last` resolved: auto means CNNs yes, ViTs no; on the CPU only CNNs with
    depthwise (grouped) convolutions. A training step on one CPU thread, 64 px, batch 64: resnet18
    1.30 s CPU channels_last vs 1.10 s contiguous, mobilenetv3_large_100 0.66 s vs 0.89 s."""
    auto = not is_vit_like(cfg.model)
    if auto and model is not None and device is not None and device.type == "cpu":
        auto = any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in model.modules())
    return _flag(cfg.channels_last, auto)


def uses_amp(cfg: TrainConfig, device: torch.device) -> bool:
    """`train.amp` resolved: auto means bf16 autocast on CUDA only."""
    return _flag(cfg.amp, device.type == "cuda")


def set_determinism(value, device: torch.device) -> bool:
    """Deterministic kernels: free on the CPU, so `auto` turns them on there; on a GPU they can
    cost speed, so `auto` leaves them off and `true` asks for them (cuBLAS then needs a fixed
    workspace, set here unless the environment already sets it; cuDNN autotuning stays off).
    An op with no deterministic kernel warns instead of failing."""
    on = _flag(value, device.type == "cpu")
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
    """Train one model on ready inputs; keep the weights of its best epoch (val loss, else train
    loss). Reads top to bottom: setup, then per epoch train, validate, log, keep the best."""
    run = _setup(cfg, data, weights, mean, std)
    history, best = [], _Best()
    for epoch in range(cfg.epochs):
        row = _train_epoch(run, epoch)
        val, val_pred = _validate(run)
        row.update(val)
        history.append(row)
        _log_epoch(run, row, live)
        stale = best.update(row.get("val_loss", row["train_loss"]), epoch, run.model, val_pred)
        if cfg.early_stopping and stale >= cfg.early_stopping:
            break
    return _finish(run, history, best)


# --- setup ------------------------------------------------------------------------------------

@dataclass
class _Run:
    """What one training run holds: built once by _setup, used by every epoch."""

    cfg: TrainConfig
    data: CoverTensors
    device: torch.device
    model: CoverRegressor
    net: torch.nn.Module       # what evaluation calls: the model, or its head on cached embeddings
    step_net: torch.nn.Module  # what a train step calls: net, wrapped by DDP and torch.compile
    inputs: torch.Tensor       # uint8 images, or cached embeddings
    y: torch.Tensor            # targets on the 0–1 scale, on the device
    train_mean: float          # 0–1
    use_embeddings: bool
    augment_on: bool
    channels_last: bool
    amp: bool
    train_idx: torch.Tensor
    per_rank: int              # batch rows per process
    steps_per_epoch: int
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    criterion: object
    order_gen: torch.Generator
    aug_gen: torch.Generator
    first_batch: np.ndarray | None = None  # what the backbone saw first, as a picture
    seen: int = 0                          # train rows this process stepped through


def _setup(cfg: TrainConfig, data: CoverTensors, weights: Weights, mean, std) -> _Run:
    device = resolve_device(cfg.device)
    set_determinism(cfg.deterministic, device)
    torch.manual_seed(cfg.seed)
    model = CoverRegressor(cfg.model, cfg.image_size, mean, std, cfg.output, cfg.head_hidden,
                           weights=weights)
    y = data.popularity.float() / TARGET_SCALE
    train_mean = float(y[data.train_idx].mean())
    model.init_output(train_mean)  # first prediction = train mean; first loss = variance
    model.to(device)
    channels_last = uses_channels_last(cfg, model, device)
    amp = uses_amp(cfg, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    augment_on = cfg.augment and cfg.overfit_batches == 0
    if cfg.freeze_backbone:
        model.backbone.requires_grad_(False)

    # Inputs: cached embeddings when the backbone is frozen and sees each image the same way.
    use_embeddings = cfg.freeze_backbone and not augment_on
    if use_embeddings:
        inputs = _cached_embeddings(cfg, data, model, weights, mean, std, device, amp,
                                    channels_last)
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
    # a head alone (frozen backbone) on 1,000-odd covers overfits within an epoch at train.lr
    opt = torch.optim.AdamW(trainable, lr=cfg.frozen_lr if cfg.freeze_backbone else cfg.lr,
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, steps_per_epoch, total_steps))
    return _Run(cfg, data, device, model, net, step_net, inputs, y_dev, train_mean, use_embeddings,
                augment_on, channels_last, amp, train_idx, per_rank, steps_per_epoch, opt, sched,
                loss_fn(cfg.loss), order_gen, aug_gen)


def _cached_embeddings(cfg, data, model, weights, mean, std, device, amp, channels_last):
    """The frozen backbone's features of every image, computed once per (weights, images, size)."""
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
    return inputs


def _forward(run: _Run, batch: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction, the exact tensor the network was given)."""
    n = len(batch)
    if run.data.blank_inputs:
        # Identical inputs give identical outputs, also through train-mode BatchNorm (a batch
        # of copies has one image's statistics): run two copies (BatchNorm needs >1 value)
        # and broadcast. Same model, steps and gradients as the full batch, ~2/batch_size of
        # the cost; only BatchNorm's running variance sees a smaller count.
        batch = batch[:2]
    x = batch.to(run.device, non_blocking=True)
    if not run.use_embeddings:
        x = x.float()  # pixels on the 0–255 scale; the model normalises them itself
        if train and run.augment_on and not run.data.blank_inputs:  # a crop of black is black
            x = augment(x, run.aug_gen)
        if run.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.amp):
        out = (run.step_net if train else run.net)(x).float()
    return (out[:1].expand(n) if run.data.blank_inputs else out), x


# --- one epoch --------------------------------------------------------------------------------

def _train_epoch(run: _Run, epoch: int) -> dict:
    """One pass over this rank's share of the train rows; the epoch's history row."""
    cfg, model, data = run.cfg, run.model, run.data
    model.train()
    if cfg.freeze_backbone:
        model.backbone.eval()  # frozen means frozen BatchNorm statistics too
    perm = run.train_idx if cfg.overfit_batches else \
        run.train_idx[torch.randperm(len(run.train_idx), generator=run.order_gen)]
    local = dist.shard(perm, even=True)
    t0, c0 = time.perf_counter(), time.process_time()
    loss_sum = torch.zeros((), device=run.device)
    for step in range(run.steps_per_epoch):
        idx = local[step * run.per_rank:(step + 1) * run.per_rank]
        pred, x = _forward(run, run.inputs[idx.to(run.inputs.device)], train=True)
        loss = run.criterion(pred, run.y[idx.to(run.device)])
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        run.sched.step()
        loss_sum += loss.detach() * len(idx)  # no .item(): the GPU never waits for the host
        if run.first_batch is None:  # what the backbone is fed: after augmentation and normalising
            with torch.no_grad():
                run.first_batch = batch_grid(model.normalize(
                    x if not run.use_embeddings else data.images[idx].to(run.device)))
    rows = min(len(local), run.steps_per_epoch * run.per_rank)
    train_loss = float(loss_sum) / max(1, rows)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    run.seen += rows
    train_loss = float(np.mean(dist.gather(train_loss)))
    return {"epoch": epoch, "train_loss": train_loss, "seconds": seconds,
            "cpu_seconds": cpu_seconds, "lr": run.sched.get_last_lr()[0]}


def _validate(run: _Run) -> tuple[dict, np.ndarray | None]:
    """(val loss and metrics of the model as it is now, its val predictions); ({}, None)
    without val rows."""
    val_idx = run.data.val_idx
    if not len(val_idx):
        return {}, None
    val_pred, val_loss = _predict_rows(run, val_idx)
    return {"val_loss": val_loss, **{f"val_{k}": v for k, v in val_metrics(
        run.data.popularity[val_idx].numpy(), val_pred * TARGET_SCALE).items()}}, val_pred


@torch.no_grad()
def _predict_rows(run: _Run, idx: torch.Tensor) -> tuple[np.ndarray, float]:
    """Predictions (0–1 scale) for rows idx, sharded over ranks and gathered back in order."""
    if len(idx) == 0:
        return np.empty(0), math.nan
    run.net.eval()
    mine = dist.shard(idx, even=False)
    preds = [_forward(run, run.inputs[mine[i:i + run.per_rank].to(run.inputs.device)],
                      train=False)[0].cpu()
             for i in range(0, len(mine), run.per_rank)]
    local = torch.cat(preds) if preds else torch.empty(0)
    parts = dist.gather(local)
    out = torch.empty(len(idx))
    for r, part in enumerate(parts):
        out[r::dist.world()] = part
    loss = float(run.criterion(out.to(run.y.device), run.y[idx.to(run.y.device)]))
    return out.numpy(), loss


# --- logging ----------------------------------------------------------------------------------

def _log_epoch(run: _Run, row: dict, live) -> None:
    """One line on the console (main process), and the epoch's metrics to dvclive."""
    cfg = run.cfg
    if cfg.progress and dist.is_main():
        print(f"epoch {row['epoch'] + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f}"
              + (f"  val loss {row['val_loss']:.4f}  val MAE {row['val_mae']:.2f}  "
                 f"val Spearman {row['val_spearman']:.3f}" if "val_loss" in row else ""),
              flush=True)
    if live is None:
        return
    for k, v in row.items():
        if k not in ("epoch", "lr", "seconds", "cpu_seconds"):
            live.log_metric(k.replace("_", "/", 1), v)
    live.log_metric("lr", row["lr"], plot=True)
    if row["epoch"] == 0 and run.first_batch is not None:
        live.log_image("first_batch.png", run.first_batch)
    live.next_step()


# --- checkpoint: the best epoch's weights -----------------------------------------------------

@dataclass
class _Best:
    """The best epoch so far by its score (lower is better), a CPU copy of its weights and its
    val predictions (the kept model's: _finish need not predict val again)."""

    score: float = math.inf
    epoch: int = 0
    state: dict | None = None
    stale: int = 0  # epochs since the last improvement
    val_pred: np.ndarray | None = None

    def update(self, score: float, epoch: int, model: torch.nn.Module,
               val_pred: np.ndarray | None = None) -> int:
        """Keep the weights when `score` improves; return the epochs without improvement."""
        if score < self.score:
            self.score, self.epoch, self.stale, self.val_pred = score, epoch, 0, val_pred
            self.state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            self.stale += 1
        return self.stale


def _finish(run: _Run, history: list, best: _Best) -> FitResult:
    """Back to the best epoch's weights, scored once more on val."""
    if best.state is not None:
        run.model.load_state_dict(best.state)
    # the kept epoch's val predictions, made by these very weights in eval mode at that epoch
    val_pred = best.val_pred if best.val_pred is not None else \
        _predict_rows(run, run.data.val_idx)[0]
    val = val_metrics(run.data.popularity[run.data.val_idx].numpy(), val_pred * TARGET_SCALE) \
        if len(run.data.val_idx) else {}
    train_seconds = sum(r["seconds"] for r in history)
    return FitResult(run.model.cpu().eval(), history, best.epoch, val,
                     run.train_mean * TARGET_SCALE, run.first_batch,
                     run.seen * dist.world() / max(train_seconds, 1e-9), val_pred)


def run(cfg: TrainConfig, data: CoverTensors, live=None) -> tuple[FitResult, FitResult | None, dict]:
    """Train the model, then (if asked) the same recipe on blank inputs.
    Returns (result, blank result or None, checkpoint metadata)."""
    weights = resolve_weights(cfg.model, cfg.pretrained)
    mean, std = resolve_normalization(cfg.normalization, (weights.mean, weights.std),
                                      take(data.images, data.train_idx))
    result = fit(cfg, data, weights, mean, std, live=live)
    blank = None
    if cfg.blank_baseline:
        if cfg.progress and dist.is_main():
            print("blank baseline: the same head and recipe on a black cover's features", flush=True)
        blank = fit(blank_config(cfg), data.blank(), weights, mean, std)
    return result, blank, checkpoint_meta(cfg, result, weights, mean, std)


def blank_config(cfg: TrainConfig) -> TrainConfig:
    """The recipe of the input-independent baseline (Karpathy's check: what does the model get
    from the targets alone?). On one constant input every network predicts one constant, so a
    second full training buys nothing: the backbone, at its starting weights, runs once on a
    black cover and only the head trains on that one vector, with the real run's loss, output,
    lr, weight decay, schedule, epochs and batches. What it reaches is the best constant the
    recipe can learn."""
    return replace(cfg, freeze_backbone=True, augment=False,
                   frozen_lr=cfg.frozen_lr if cfg.freeze_backbone else cfg.lr)


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
