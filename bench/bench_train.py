"""Training speed, as ratios measured in one process (not a test: numbers go to the README).

(a) loop efficiency: images/s of the real training loop (`training.fit`: uint8 gather, to-device,
    normalise, augment, channels_last, autocast, step, schedule) vs the bare model step on ready
    float tensors — same model, batch, memory format and precision. Goal ≥ 0.9.
(b) head-only speed-up: one epoch of head training on cached embeddings vs one epoch that runs the
    frozen backbone forward on every batch, and vs full fine-tuning. Goal ≥ 20×.

    PYTHONPATH=src python bench/bench_train.py --model resnet18 --size 64
    PYTHONPATH=src python bench/bench_train.py --model resnet50 --size 224 --batch 128 --n 2048  # GPU
    PYTHONPATH=src python bench/bench_train.py --smoke   # seconds, tiny data: does it still run?

Synthetic covers (random uint8) — speed does not depend on what the pixels show.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from coverpop.train.data import CoverTensors
from coverpop.train.image_cache import cached_images
from coverpop.train.loop import TrainConfig, fit, resolve_device, uses_amp, uses_channels_last
from coverpop.train.models import CoverRegressor
from coverpop.train.pretrained import resolve_weights


def synthetic(n: int, size: int, seed: int = 0) -> CoverTensors:
    """Random covers, read the way training reads them: from the image cache (memory-mapped)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    pop = torch.rand(n, generator=g) * 100
    images = cached_images([f"bench-{seed}-{i}" for i in range(n)], (3, size, size),
                           f"bench-{size}px", lambda i: pixels[i].numpy(), progress=False)
    return CoverTensors(images, pop, torch.arange(n), torch.arange(0), f"bench-{n}-{size}-{seed}")


def bare_rates(cfg: TrainConfig, data: CoverTensors, steps: int, blocks: int) -> list[float]:
    """The model step alone: forward, loss, backward, AdamW step on tensors already prepared."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = CoverRegressor(cfg.model, cfg.image_size, (0.5,) * 3, (0.5,) * 3, cfg.output,
                           cfg.head_hidden, weights=resolve_weights(cfg.model, cfg.pretrained))
    model.to(device).train()
    channels_last = uses_channels_last(cfg, model, device)
    amp = uses_amp(cfg, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    x = data.images[: cfg.batch_size].float().to(device)  # the model normalises pixels itself
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = (data.popularity[: cfg.batch_size] / 100).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    net = torch.compile(model) if cfg.compile else model

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.mse_loss(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    clock = time.perf_counter if _wall(cfg) else time.process_time
    rates = []
    for _ in range(blocks):
        _sync(device)
        t0 = clock()
        for _ in range(steps):
            step()
        _sync(device)
        rates.append(steps * cfg.batch_size / (clock() - t0))
    return rates


def _wall(cfg: TrainConfig) -> bool:
    """GPU: wall time. CPU: this process's CPU time, which other users of a shared machine
    disturb far less than wall time (the loop does no I/O, so the two agree when it is quiet)."""
    return resolve_device(cfg.device).type != "cpu"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loop_rates(cfg: TrainConfig, data: CoverTensors) -> list[float]:
    """Images/s of each epoch after the first (which pays for warm-up: autotune, compile)."""
    result = fit(cfg, data, resolve_weights(cfg.model, cfg.pretrained), (0.5,) * 3, (0.5,) * 3)
    steps = max(1, len(data.train_idx) // cfg.batch_size)
    key = "seconds" if _wall(cfg) else "cpu_seconds"
    return [steps * cfg.batch_size / r[key] for r in result.history[1:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=512, help="images per epoch")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pretrained", default="false")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: a,b")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=2, help="timed epochs per round")
    ap.add_argument("--rounds", type=int, default=2, help="loop/bare alternations")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--smoke", action="store_true", help="seconds, tiny data: does it still run?")
    args = ap.parse_args()
    if args.smoke:
        args.model, args.size, args.batch, args.n, args.repeats, args.rounds = \
            "resnet10t", 32, 8, 16, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="coverpop-bench-") as cache:
        if not os.environ.get("COVERPOP_CACHE"):   # the embedding cache, removed afterwards
            os.environ["COVERPOP_CACHE"] = cache
        measure(args)


def measure(args) -> None:

    base = dict(model=args.model, image_size=args.size, batch_size=args.batch, device=args.device,
                pretrained=args.pretrained, compile=args.compile, epochs=2, warmup_epochs=0,
                blank_baseline=False, progress=False)
    data = synthetic(args.n, args.size)
    device = resolve_device(args.device)
    out = {"model": args.model, "image_size": args.size, "batch": args.batch, "images": args.n,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
           f"{device.type} ({torch.get_num_threads()} threads)", "torch": torch.__version__,
           "clock": "wall" if device.type != "cpu" else "process CPU time"}
    skip = set(args.skip.split(","))
    if "a" not in skip:
        # Alternate loop and bare runs and keep each one's best: on a shared machine, the best
        # of several is the figure least disturbed by other work.
        steps = max(1, args.n // args.batch)
        for augment in (False, True):
            cfg = TrainConfig(**{**base, "epochs": 1 + args.repeats}, augment=augment).validated()
            loop, bare = [], []
            for _ in range(args.rounds):
                loop += loop_rates(cfg, data)
                bare += bare_rates(cfg, data, steps, args.repeats)
            tag = "augment" if augment else "plain"
            out[f"a_{tag}_loop_img_s"] = round(max(loop), 1)
            out[f"a_{tag}_bare_img_s"] = round(max(bare), 1)
            out[f"a_{tag}_ratio"] = round(max(loop) / max(bare), 3)
            print(f"(a) {tag:8s} loop {max(loop):9.1f} img/s   bare step {max(bare):9.1f} img/s   "
                  f"ratio {max(loop) / max(bare):.3f}", flush=True)
    if "b" not in skip:
        head = TrainConfig(**{**base, "epochs": 3}, freeze_backbone=True, augment=False).validated()
        weights = resolve_weights(head.model, head.pretrained)
        t0 = time.perf_counter()
        fit(head, data, weights, (0.5,) * 3, (0.5,) * 3)  # fills the embedding cache
        out["b_cache_fill_s"] = round(time.perf_counter() - t0, 2)
        cached = fit(head, data, weights, (0.5,) * 3, (0.5,) * 3)  # cache hit
        key = "seconds" if _wall(head) else "cpu_seconds"
        head_s = min(r[key] for r in cached.history)
        frozen = fit(TrainConfig(**base, freeze_backbone=True, augment=True).validated(), data,
                     weights, (0.5,) * 3, (0.5,) * 3)
        frozen_s = frozen.history[-1][key]
        full = fit(TrainConfig(**base, augment=True).validated(), data, weights, (0.5,) * 3, (0.5,) * 3)
        full_s = full.history[-1][key]
        out.update(b_head_epoch_s=round(head_s, 4), b_frozen_forward_epoch_s=round(frozen_s, 3),
                   b_full_epoch_s=round(full_s, 3), b_speedup_vs_frozen_forward=round(frozen_s / head_s, 1),
                   b_speedup_vs_full=round(full_s / head_s, 1))
        print(f"(b) head epoch on cached embeddings {head_s * 1000:.1f} ms; frozen-backbone forward "
              f"epoch {frozen_s:.2f} s ({frozen_s / head_s:.0f}x); full fine-tune epoch {full_s:.2f} s "
              f"({full_s / head_s:.0f}x)", flush=True)
    print(json.dumps(out, indent=2))
    rates = {k: v for k, v in out.items() if k.startswith(("a_", "b_"))}
    if args.smoke and not (len(rates) == 12 and all(v >= 0 for v in rates.values())
                           and out["a_plain_ratio"] > 0 and out["a_augment_ratio"] > 0):
        raise SystemExit(f"bench_train: expected 12 figures, none negative or nan, got {rates}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
