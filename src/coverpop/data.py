"""Covers as tensors: decoded and resized once, kept as uint8, normalised per batch."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from coverpop.errors import CoverpopError
from coverpop.params import choice

NORMALIZATIONS = ("imagenet", "model", "dataset", "none")


def to_uint8(img: Image.Image, size: int) -> np.ndarray:
    """HWC uint8 → CHW uint8 at size×size (draft() lets JPEG decode at a reduced scale)."""
    img.draft("RGB", (size, size))
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(img).transpose(2, 0, 1)


def load_images(files: list[str | Path], size: int, progress: bool = True) -> torch.Tensor:
    """N×3×size×size uint8."""
    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for i, f in enumerate(tqdm(files, desc=f"decode {size}px", unit="img", disable=not progress)):
        try:
            with Image.open(f) as img:
                out[i] = to_uint8(img, size)
        except (OSError, ValueError) as err:
            raise CoverpopError(f"{f}: cannot read image ({err})") from None
    return torch.from_numpy(out)


def norm_stats(kind: str, model_name: str, train_images: torch.Tensor | None = None
               ) -> tuple[list[float], list[float]]:
    """Mean and std (per channel, for 0-1 pixels) for `normalization`."""
    choice(kind, NORMALIZATIONS, "normalization")
    if kind == "none":
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    if kind == "imagenet":
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
        return list(IMAGENET_DEFAULT_MEAN), list(IMAGENET_DEFAULT_STD)
    if kind == "model":
        import timm
        cfg = timm.get_pretrained_cfg(model_name)
        if cfg is None:
            raise CoverpopError(f"normalization=model: timm has no pretrained config for {model_name!r}")
        return list(cfg.mean), list(cfg.std)
    x = train_images.float().div_(255)
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


class Normalize(torch.nn.Module):
    """uint8 batch → float, normalised; part of the model so a checkpoint predicts on raw pixels."""

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std
