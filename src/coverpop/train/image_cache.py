"""Decoded covers on disk, one fixed-size record per cover, read through a memory map.

Under cache_root()/images/<decode settings>-<size>px/ (one folder per decode version and size):
  pixels.u8   one record per cover, 3 x size x size uint8 (CHW), in the order they were added
  index.txt   line i: the sha256 of the cover in record i

A cover is decoded once per size and never again, whatever image set it is part of: a new cover
appends one record. Every experiment, queued run and DDP rank on the machine shares the folder.
Writers take the folder's lock (core/lock.py) and write records before the index lines that name
them, both fsynced, a batch at a time: a killed writer leaves at most a tail no index line names,
which the next writer cuts off. Readers take no lock: they use complete index lines only and map
exactly the records those lines name.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from coverpop.core.cache import cache_root
from coverpop.core.errors import CoverpopError
from coverpop.core.lock import exclusive

PIXELS, INDEX = "pixels.u8", "index.txt"
BATCH = 512                 # records written (and fsynced) at a time: a kill loses at most these
DROP_BYTES = 64 * 2**20     # mapped pages read before they are dropped from this process
                            # (they count in its RSS; a 128 px batch is 6 MB)


def _read_index(folder: Path) -> list[str]:
    """The complete lines of the index (a line cut short by a kill is not one)."""
    try:
        data = (folder / INDEX).read_bytes()
    except FileNotFoundError:
        return []
    return data[: data.rfind(b"\n") + 1].decode("ascii").splitlines()


class _Mapped:
    """The first n records of a pack, mapped read-only; counts what is read to drop pages."""

    def __init__(self, path: Path, n: int, shape: tuple[int, int, int]):
        record = int(np.prod(shape))
        self.mm = None
        self.pixels = np.zeros((0, *shape), np.uint8)
        if n:
            with open(path, "rb") as f:
                self.mm = mmap.mmap(f.fileno(), n * record, access=mmap.ACCESS_READ)
            self.pixels = np.frombuffer(self.mm, np.uint8).reshape(n, *shape)
        self.read = 0

    def gather(self, slots: np.ndarray) -> np.ndarray:
        out = self.pixels[slots]
        if not out.flags.owndata:   # a view of the map (an int or a slice): copy it to RAM
            out = out.copy()
        self.read += out.nbytes
        if self.read > DROP_BYTES and self.mm is not None and hasattr(self.mm, "madvise"):
            # The pages stay in the page cache (reading them again is a memory copy); dropping
            # them from this process keeps its resident memory at a batch, not the whole set.
            self.mm.madvise(mmap.MADV_DONTNEED)
            self.read = 0
        return out


class ImageSet:
    """N cached covers as an (N, 3, S, S) uint8 set read on demand: indexing it (an int, a
    slice, a tensor of rows) returns a tensor of those rows; nothing else is held in memory.
    Stands in for the uint8 tensor the training loop indexes."""

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, mapped: _Mapped, slots: np.ndarray):
        self._mapped, self.slots = mapped, slots
        self.shape = torch.Size((len(slots), *mapped.pixels.shape[1:]))

    def __len__(self) -> int:
        return len(self.slots)

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def element_size(self) -> int:
        return 1

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, tuple):           # images[rows, channel, ...]: rows first, then the rest
            out = self[key[0]]
            return out[key[1:]] if np.ndim(key[0]) == 0 and not isinstance(key[0], slice) \
                else out[(slice(None), *key[1:])]
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        return torch.from_numpy(self._mapped.gather(self.slots[key]))

    def subset(self, rows) -> ImageSet:
        """Rows `rows` as an ImageSet (nothing read yet)."""
        rows = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        return ImageSet(self._mapped, self.slots[rows])

    def to(self, device, chunk: int = 1024) -> torch.Tensor:
        """The whole set as one tensor on `device` (a GPU: batches are then a gather there),
        copied `chunk` rows at a time so host memory holds one chunk."""
        out = torch.empty(tuple(self.shape), dtype=torch.uint8, device=device)
        for i in range(0, len(self), chunk):
            out[i:i + chunk] = self[i:i + chunk].to(device)
        return out


def cached_images(hashes: Sequence[str], shape: tuple[int, int, int], name: str,
                  decode: Callable[[int], np.ndarray], progress: bool = True) -> ImageSet:
    """The covers with these sha256s (row i = hashes[i]) from the cache folder `name`;
    decode(i) -> uint8 `shape` array is called for row i only when its cover is not there yet
    (once per distinct hash)."""
    folder = cache_root() / "images" / name
    index = _read_index(folder)
    known = set(index)
    missing = list(dict.fromkeys(h for h in hashes if h not in known))
    if missing:
        first_row = {}
        for i, h in enumerate(hashes):
            first_row.setdefault(h, i)
        with exclusive(folder, "image cache", wait=True):
            index = _append(folder, missing, first_row, shape, decode, progress)
    slot = {h: i for i, h in enumerate(index)}
    have = (folder / PIXELS).stat().st_size if index else 0
    if have < len(index) * int(np.prod(shape)):
        raise CoverpopError(f"{folder}: image cache damaged ({PIXELS} shorter than {INDEX} says); "
                            "delete the folder, it is rebuilt on the next run")
    mapped = _Mapped(folder / PIXELS, len(index), shape)
    return ImageSet(mapped, np.fromiter((slot[h] for h in hashes), np.int64, len(hashes)))


def _append(folder: Path, wanted: list[str], first_row: dict, shape, decode, progress) -> list[str]:
    """Under the folder's lock: add the wanted covers not there yet; the index after it."""
    folder.mkdir(parents=True, exist_ok=True)
    index = _read_index(folder)
    known = set(index)          # another writer may have added some while we waited
    todo = [h for h in wanted if h not in known]
    record = int(np.prod(shape))
    with open(folder / PIXELS, "ab") as pixels, open(folder / INDEX, "ab") as lines:
        pixels.truncate(len(index) * record)        # a killed writer's unnamed tail
        lines.truncate(sum(len(h) + 1 for h in index))
        workers = min(4, os.cpu_count() or 1)
        bar = tqdm(total=len(todo), desc=f"decode {shape[-1]}px", unit="img",
                   disable=not progress)
        with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
            for start in range(0, len(todo), BATCH):   # a batch in flight: memory stays flat
                batch = todo[start:start + BATCH]
                for arr in pool.map(lambda h: decode(first_row[h]), batch):
                    pixels.write(np.ascontiguousarray(arr, np.uint8).tobytes())
                    bar.update()
                _commit(pixels, lines, batch)
        bar.close()
    return index + todo


def _commit(pixels, lines, batch: list[str]) -> None:
    """Records first, then the index lines naming them: an index line never names a record that
    is not on disk."""
    if not batch:
        return
    pixels.flush()
    os.fsync(pixels.fileno())
    lines.write("".join(h + "\n" for h in batch).encode("ascii"))
    lines.flush()
    os.fsync(lines.fileno())
