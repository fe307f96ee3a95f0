"""The cover store: the scraped covers as 256 tar shards and one index, the form DVC tracks.

    data/shards/00.tar … ff.tar   the covers; a cover's shard is the first byte of sha256(cover id)
    data/shards/index.csv         cover_id, shard, offset, bytes, sha256 (one row per cover)

Why shards: DVC hashes every file of a tracked folder on `dvc status` and pays a round trip per
file on push and pull; 300,000 covers as files cost half a minute of status and 300,000 objects,
as 257 files they cost neither. Every stage after the scrape reads covers here, by cover id,
through CoverStore (each read checked against its sha256).

Same covers, same bytes: members sorted by cover id, tar headers with no time, owner or mode of
the machine, the index sorted too. `pack` rewrites only the shards whose set of covers changed:
a new cover rewrites its shard (1/256 of the store), nothing else.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tarfile
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from PIL import Image

from coverpop.core.atomic import atomic_path, clean_dead_temps, write_text
from coverpop.core.errors import CoverpopError
from coverpop.core.lock import exclusive

INDEX = "index.csv"
COLUMNS = ("cover_id", "shard", "offset", "bytes", "sha256")


def shard_of(cover_id: str) -> str:
    return hashlib.sha256(cover_id.encode()).hexdigest()[:2]


class CoverStore:
    """Read covers by cover id from a store folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / INDEX
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
        except FileNotFoundError:
            raise CoverpopError(f"{path}: not found (run the scrape_images stage, or "
                                "`dvc pull` to fetch the team's covers)") from None
        if not rows or tuple(rows[0]) != COLUMNS:
            raise CoverpopError(f"{path}: not a cover index (expected columns "
                                f"{','.join(COLUMNS)})")
        try:
            self.entries = {r[0]: (r[1], int(r[2]), int(r[3]), r[4]) for r in rows[1:]}
        except (IndexError, ValueError):
            raise CoverpopError(f"{path}: a row is damaged (restore it: `dvc checkout`)") from None

    def __contains__(self, cover_id: str) -> bool:
        return cover_id in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def sha256(self, cover_id: str) -> str:
        return self.entries[cover_id][3]

    def read(self, cover_id: str) -> bytes:
        """The cover's bytes, checked against its sha256."""
        try:
            shard, offset, size, sha = self.entries[cover_id]
        except KeyError:
            raise CoverpopError(f"{self.folder / INDEX}: no cover {cover_id!r} (run the "
                                "scrape_images stage again)") from None
        path = self.folder / f"{shard}.tar"
        try:
            with open(path, "rb") as f:
                data = os.pread(f.fileno(), size, offset)
        except FileNotFoundError:
            raise CoverpopError(f"{path}: missing (`dvc checkout` or `dvc pull` restores it)") from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise CoverpopError(f"{path}: cover {cover_id} (byte {offset}) does not match its "
                                "sha256: the shard is damaged (`dvc checkout` or `dvc pull` "
                                "restores it)")
        return data

    def open(self, cover_id: str) -> Image.Image:
        """The cover as a PIL image (use it in a `with` block, like Image.open)."""
        return Image.open(io.BytesIO(self.read(cover_id)))


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_shard(path: Path, members: list[tuple[str, bytes]]) -> list[int]:
    """One shard, atomically; the data offset of each member."""
    offsets = []
    with atomic_path(path) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for cover_id, data in members:
                tar.addfile(_member(f"{cover_id}.jpg", len(data)), io.BytesIO(data))
                # the data sits just before the end, padded to whole 512-byte blocks
                offsets.append(tar.offset - -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE)
    return offsets


def stored_covers(folder: str | Path) -> dict[str, str]:
    """cover id -> sha256 of what the store holds ({} when there is no store yet)."""
    old = _read_old(Path(folder))
    return {c: e[3] for c, e in old.entries.items()} if old is not None else {}


def _read_old(folder: Path) -> CoverStore | None:
    try:
        return CoverStore(folder) if (folder / INDEX).exists() else None
    except CoverpopError:
        return None   # a damaged index: every shard is rewritten from the scrape's files


def pack(folder: str | Path, covers: Mapping[str, str], read_new: Callable[[str], bytes]) -> int:
    """Make the store hold exactly `covers` (cover id -> sha256); return the shards rewritten.

    A cover's bytes come from the store as it is when it holds them with that sha256, else
    from read_new(cover_id) (the scrape's file); either way they are checked against the sha256.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive(folder, "cover store writer"):
        return _pack(folder, covers, read_new)


def _pack(folder: Path, covers: Mapping[str, str], read_new) -> int:
    clean_dead_temps(folder)
    old = _read_old(folder)
    held = Counter(e[0] for e in old.entries.values()) if old is not None else Counter()
    by_shard: dict[str, list[str]] = {}
    for cover_id in sorted(covers):
        by_shard.setdefault(shard_of(cover_id), []).append(cover_id)
    rows, rewritten = [], 0
    for shard, ids in sorted(by_shard.items()):
        path = folder / f"{shard}.tar"
        if old is not None and path.exists() and held[shard] == len(ids) and all(
                c in old and old.sha256(c) == covers[c] for c in ids):   # the same covers
            rows += [(c, *old.entries[c]) for c in ids]
            continue
        members = [(c, _bytes(old, c, covers[c], read_new)) for c in ids]
        offsets = _write_shard(path, members)
        rows += [(c, shard, off, len(data), covers[c]) for (c, data), off in zip(members, offsets)]
        rewritten += 1
    for stale in folder.glob("*.tar"):
        if stale.stem not in by_shard:
            stale.unlink()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    index = folder / INDEX
    if not index.exists() or index.read_text(encoding="utf-8") != text.getvalue():
        write_text(index, text.getvalue())
    return rewritten


def _bytes(old: CoverStore | None, cover_id: str, sha: str, read_new) -> bytes:
    if old is not None and cover_id in old and old.sha256(cover_id) == sha:
        try:
            return old.read(cover_id)
        except CoverpopError:
            pass   # a damaged shard: the scrape's file may still be good
    try:
        data = read_new(cover_id)
    except OSError as err:
        raise CoverpopError(f"cover {cover_id}: not in the store and its file cannot be read "
                            f"({err.strerror or err}); run the scrape_images stage again") from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise CoverpopError(f"cover {cover_id}: its file does not match its sha256; run the "
                            "scrape_images stage again")
    return data
