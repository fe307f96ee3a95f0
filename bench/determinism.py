"""Does training repeat bit for bit? Two identical runs of the real loop, their checkpoints
compared byte for byte, per `train.deterministic` setting, with the time each took (not a test:
the CUDA answer needs a GPU, and the speed cost of deterministic kernels goes in the docs).

    PYTHONPATH=src python bench/determinism.py                                  # CPU
    PYTHONPATH=src python bench/determinism.py --device cuda --model resnet18 --size 64 --n 2048
    PYTHONPATH=src python bench/determinism.py --smoke   # seconds, tiny data: does it still run?

Synthetic covers whose popularity is their brightness (something to learn), so the numbers
depend on nothing outside this file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import time

import torch

from coverpop.train.data import CoverTensors
from coverpop.train.loop import TrainConfig, run


def covers(n: int, size: int, seed: int = 0) -> CoverTensors:
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n, 1, 1, 1), generator=g).float()
    noise = torch.randint(-40, 40, (n, 3, size, size), generator=g).float()
    images = (base + noise).clamp(0, 255).to(torch.uint8)
    cut = n * 3 // 4
    return CoverTensors(images, images.float().mean((1, 2, 3)) / 2.55, torch.arange(cut),
                        torch.arange(cut, n), f"determinism-{n}-{size}-{seed}")


def one_run(cfg: TrainConfig, data: CoverTensors) -> tuple[str, dict, float]:
    """(sha256 of the checkpoint bytes, state dict, seconds)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result, _, meta = run(cfg, data)
    seconds = time.perf_counter() - t0
    buf = io.BytesIO()
    torch.save({**meta, "state_dict": result.model.state_dict()}, buf)  # as save_checkpoint does
    return hashlib.sha256(buf.getvalue()).hexdigest(), result.model.state_dict(), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="resnet10t")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--settings", nargs="+", default=["auto", "true", "false"],
                    help="train.deterministic values to try")
    ap.add_argument("--smoke", action="store_true", help="seconds, tiny data: does it still run?")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.size, args.epochs, args.settings = 32, 16, 1, ["auto"]
    data = covers(args.n, args.size)
    out = {"device": args.device, "torch": torch.__version__, "model": args.model,
           "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
           "runs": []}
    for setting in args.settings:
        value = {"true": True, "false": False}.get(setting, setting)
        cfg = TrainConfig(model=args.model, image_size=args.size, epochs=args.epochs,
                          batch_size=64, device=args.device, deterministic=value,
                          blank_baseline=False, progress=False).validated()
        (h1, s1, t1), (h2, s2, t2) = one_run(cfg, data), one_run(cfg, data)
        max_diff = max(float((s1[k].float() - s2[k].float()).abs().max()) for k in s1
                       if s1[k].is_floating_point())
        row = {"deterministic": setting, "identical_bytes": h1 == h2,
               "max_param_diff": max_diff, "seconds": [round(t1, 2), round(t2, 2)]}
        out["runs"].append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(out, indent=1))
    # on the CPU `auto` is deterministic: two runs must give the same checkpoint bytes
    if args.smoke and args.device == "cpu" and not all(r["identical_bytes"] for r in out["runs"]):
        raise SystemExit("determinism: two identical CPU runs gave different checkpoints")


if __name__ == "__main__":
    main()
