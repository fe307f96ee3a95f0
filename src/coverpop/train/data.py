"""Covers as tensors: decoded and resized once per size (cached on disk), uint8, normalised per batch.

Epochs never touch a JPEG: each cover is decoded and resized once per size into the image cache
on disk (image_cache.py: one uint8 record per cover, keyed by its sha256, memory-mapped), shared
by every experiment, queue run and DDP rank. Normalisation and augmentation run on whole batches
on the training device.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from tqdm import tqdm

from coverpop.core.errors import CoverpopError, file_problem
from coverpop.covers.store import CoverStore
from coverpop.train.image_cache import ImageSet, cached_images

_DECODE_VERSION = "to_uint8-bilinear-v1"  # bump when to_uint8 changes: old caches then miss


def to_uint8(img: Image.Image, size: int) -> np.ndarray:
    """HWC uint8 → CHW uint8 at size×size (draft() lets JPEG decode at a reduced scale).
    Training, evaluation and predict all go through this one function."""
    img.draft("RGB", (size, size))
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(img).transpose(2, 0, 1)


def _decode(path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return to_uint8(img, size)
    except (OSError, ValueError) as err:
        raise CoverpopError(f"{path}: cannot read image ({err})") from None


def digest(*parts) -> str:
    """Short stable hash of JSON-able parts: the cache keys."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def load_images(files: list[str | Path], size: int, progress: bool = True,
                hashes: list[str] | None = None) -> torch.Tensor | ImageSet:
    """N×3×size×size uint8. With `hashes` (the covers' sha256): an ImageSet read from the image
    cache, where each cover is decoded at most once per size (image_cache.py); without them, a
    tensor decoded now."""
    if hashes is not None:
        if len(hashes) != len(files):
            raise ValueError("files and hashes differ in length")
        return cached_images(hashes, (3, size, size), f"{_DECODE_VERSION}-{size}px",
                             lambda i: _decode(files[i], size), progress)
    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    workers = min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
        decoded = pool.map(lambda f: _decode(f, size), files)
        for i, arr in enumerate(tqdm(decoded, total=len(files), desc=f"decode {size}px",
                                     unit="img", disable=not progress)):
            out[i] = arr
    return torch.from_numpy(out)


def take(images: torch.Tensor | ImageSet, rows: torch.Tensor) -> torch.Tensor | ImageSet:
    """Rows of an image set; from the cache, nothing is read until a batch is asked for."""
    return images.subset(rows) if isinstance(images, ImageSet) else images[rows]


@dataclass
class CoverTensors:
    """Ready inputs: uint8 images (N, 3, S, S), popularity 0–100, and which rows train/validate."""

    images: torch.Tensor | ImageSet
    popularity: torch.Tensor
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    image_key: str  # identity of the image set (for the embedding cache)
    blank_inputs: bool = False  # every image is the same black square
    hashes: list[str] | None = None  # each row's cover sha256 (the per-cover embedding cache)

    def blank(self) -> CoverTensors:
        """Same rows and targets, every image black: what can the model learn without pixels?"""
        zeros = torch.zeros((1, *self.images.shape[1:]), dtype=torch.uint8)
        return CoverTensors(zeros.expand(len(self.images), -1, -1, -1), self.popularity, self.train_idx,
                    self.val_idx, "blank-" + digest(tuple(self.images.shape)), blank_inputs=True)


SPLIT_COLUMNS = ("cover_id", "sha256", "popularity", "split")


def load_covers(store: str | Path | CoverStore, cover_ids: list[str], hashes: list[str], size: int,
                progress: bool = True) -> ImageSet:
    """Covers of the cover store (covers/store.py) by id, decoded once per size into the image
    cache (keyed by their sha256)."""
    store = store if isinstance(store, CoverStore) else CoverStore(store)

    def decode(i: int) -> np.ndarray:
        try:
            with store.open(cover_ids[i]) as img:
                return to_uint8(img, size)
        except (OSError, ValueError) as err:
            raise CoverpopError(f"{store.folder}: cover {cover_ids[i]}: cannot read image "
                                f"({err})") from None
    return cached_images(hashes, (3, size, size), f"{_DECODE_VERSION}-{size}px", decode, progress)


def load_split(path: str | Path, store: str | Path | CoverStore, image_size: int, splits=("train", "val"),
               progress: bool = True) -> tuple[CoverTensors, pd.DataFrame]:
    """data/split.csv → CoverTensors for the given splits (rows in file order) and those rows;
    the covers come from the cover store `store`."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise CoverpopError(f"{path}: {problem} (it is the dedupe_split stage's output: run "
                            "`dvc repro dedupe_split`)")
    df = pd.read_csv(path, dtype={"track_id": str, "cover_id": str, "album_id": str,
                                  "sha256": str}, keep_default_na=False)
    for col in SPLIT_COLUMNS:
        if col not in df.columns:
            raise CoverpopError(f"{path}: missing column '{col}'")
    rows = df[df["split"].isin(splits)].reset_index(drop=True)
    if not (rows["split"] == "train").any():
        raise CoverpopError(f"{path}: no rows with split=train")
    covers = store if isinstance(store, CoverStore) else CoverStore(store)
    missing = [c for c in rows["cover_id"] if c not in covers]
    if missing:
        raise CoverpopError(f"{path}: {len(missing)} covers not in {covers.folder}, first "
                            f"{missing[0]} (run `dvc repro` from scrape_images)")
    images = load_covers(covers, list(rows["cover_id"]), list(rows["sha256"]), image_size, progress)
    pop = torch.tensor(pd.to_numeric(rows["popularity"]).to_numpy(), dtype=torch.float32)
    train = torch.tensor(np.flatnonzero(rows["split"] == "train"), dtype=torch.long)
    val = torch.tensor(np.flatnonzero(rows["split"] == "val"), dtype=torch.long)
    key = digest(list(rows["sha256"]), image_size)
    return CoverTensors(images, pop, train, val, key, hashes=list(rows["sha256"])), rows


def dataset_mean_std(images: torch.Tensor | ImageSet, chunk: int = 256) -> tuple[tuple, tuple]:
    """Per-channel mean/std of uint8 images on the 0–1 scale (the train split's own statistics)."""
    total = torch.zeros(3, dtype=torch.float64)
    sq = torch.zeros(3, dtype=torch.float64)
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        sq += (x * x).sum(dim=(0, 2, 3))
    n = len(images) * images.shape[2] * images.shape[3]
    mean = total / n
    std = (sq / n - mean * mean).clamp_min(1e-6).sqrt().clamp_min(1e-3)
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def resolve_normalization(kind: str, weights_mean_std: tuple, train_images: torch.Tensor | None = None
                          ) -> tuple[tuple, tuple]:
    """`normalization` param → (mean, std) for 0–1 pixels. `model` is what the backbone's weights
    were trained with (timm's pretrained_cfg, or the packaged weights' own: see pretrained.py)."""
    if kind == "imagenet":
        return IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    if kind == "model":
        return tuple(weights_mean_std[0]), tuple(weights_mean_std[1])
    if kind == "dataset":
        if train_images is None or len(train_images) == 0:
            raise CoverpopError("normalization=dataset needs train images")
        return dataset_mean_std(train_images)
    if kind == "none":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    raise ValueError(f"normalization={kind!r}")  # the schema lets no other value through


class Normalize(torch.nn.Module):
    """Pixels (uint8, or float on the 0–255 scale) → normalised float; part of the model so a
    checkpoint predicts on raw pixels."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(list(std)).view(1, 3, 1, 1) * 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


def augment(x: torch.Tensor, generator: torch.Generator, scale=(0.7, 1.0),
            flip: bool = True) -> torch.Tensor:
    """Random resized crop + horizontal flip for a whole float batch in one grid_sample.

    Each sample gets its own crop (area share in `scale`, anywhere inside the image) and coin-flip
    mirror; one affine warp on the device, costing about one extra conv layer.
    """
    n, dev = x.shape[0], x.device

    def rand():
        return torch.rand(n, generator=generator).to(dev)

    side = (scale[0] + (scale[1] - scale[0]) * rand()).sqrt()  # crop side as share of the image
    cx = (1 - side) * (2 * rand() - 1)
    cy = (1 - side) * (2 * rand() - 1)
    sx = side * torch.where(rand() < 0.5, -1.0, 1.0) if flip else side
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = side, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def batch_grid(x: torch.Tensor, max_images: int = 64) -> np.ndarray:
    """The exact float batch the network sees → one uint8 HxWx3 picture (batch min..max → 0..255)."""
    import torchvision

    x = x[:max_images].detach().float().cpu()
    lo, hi = x.min(), x.max()
    x = (x - lo) / (hi - lo).clamp_min(1e-8)
    grid = torchvision.utils.make_grid(x, nrow=int(np.ceil(np.sqrt(len(x)))), padding=2, pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
