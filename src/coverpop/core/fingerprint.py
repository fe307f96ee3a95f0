"""Content fingerprints of files outside the repo, cheap to repeat.

A file's sha256 is recomputed only when its size or mtime_ns changed since the last look (the
same trick as git's index and DVC's state db), so fingerprinting a folder of 50,000 unchanged
covers costs a directory walk, not 50,000 reads. The remembered (size, mtime_ns, sha256) live in
the user's cache folder, keyed by absolute path; the fingerprint itself holds content only, so a
`touch` changes nothing downstream.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

from coverpop.core.atomic import write_text
from coverpop.core.cache import cache_root

CHUNK = 1 << 20
RACY_NS = 2_000_000_000   # files younger than this are hashed again next time


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    """sha256 of files under one root, remembered with their size and mtime_ns."""

    def __init__(self, root: str | Path, cache_dir: str | Path | None = None):
        self.root = Path(root).absolute()
        key = hashlib.sha256(str(self.root).encode()).hexdigest()[:24]
        self.path = Path(cache_dir or cache_root() / "fingerprints") / f"{key}.json"
        self.entries: dict[str, list] = {}
        self.hashed = 0   # files read this time (the rest came from the cache)
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            if saved.get("root") == str(self.root):
                self.entries = saved["files"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass   # no cache or a broken one: everything is hashed again
        self._dirty = False

    def sha256(self, rel: str, st: os.stat_result | None = None) -> tuple[int, str]:
        """(size, sha256) of root/rel; read only when size or mtime_ns changed."""
        st = st or os.stat(self.root / rel)
        known = self.entries.get(rel)
        if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            return st.st_size, known[2]
        sha = sha256_file(self.root / rel)
        # "Racy" entries (git's word): a file modified within the filesystem's timestamp
        # granularity of our look could change again without its mtime moving, so one this
        # fresh is remembered without its mtime and read again next time.
        fresh = time.time_ns() - st.st_mtime_ns < RACY_NS
        self.entries[rel] = [st.st_size, -1 if fresh else st.st_mtime_ns, sha]
        self.hashed += 1
        self._dirty = True
        return st.st_size, sha

    def save(self, keep: set[str] | None = None) -> None:
        """Write the cache back if anything changed (entries not in `keep` are forgotten)."""
        if keep is not None and set(self.entries) - keep:
            self.entries = {k: v for k, v in self.entries.items() if k in keep}
            self._dirty = True
        if self._dirty:
            write_text(self.path, json.dumps({"root": str(self.root), "files": self.entries},
                                             separators=(",", ":")))
            self._dirty = False


def _unusable(path: Path, rel: str) -> str:
    """Why a directory entry is not an image file to hash ('' when it is)."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8, so no CSV can name it"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a link to a missing file"
    except OSError as err:
        return f"cannot be looked at ({err.strerror})"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, socket or device)"
    return ""


def file_fingerprint(path: str | Path, cache_dir: str | Path | None = None) -> dict:
    """{"size", "sha256"} of one file (its folder's cache remembers it)."""
    path = Path(path)
    cache = HashCache(path.parent, cache_dir)
    size, sha = cache.sha256(path.name)
    cache.save()
    return {"size": size, "sha256": sha}


def folder_fingerprint(root: str | Path, cache_dir: str | Path | None = None,
                       skipped: list[tuple[str, str]] | None = None
                       ) -> tuple[list[tuple[str, int, str]], int]:
    """([(relative posix name, size, sha256)] sorted by name, files read this time) for every
    file under `root`; hidden files and folders (".*") are skipped. So is every entry that is
    not a readable regular file (a broken link, a FIFO, a name that is not UTF-8, ...): it is
    added to `skipped` as (name, why), and a CSV row naming it fails on its own when scraped."""
    cache = HashCache(root, cache_dir)
    rows = []
    for dirpath, dirnames, filenames in os.walk(cache.root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(cache.root)
        for name in filenames:
            if name.startswith("."):
                continue
            rel = (rel_dir / name).as_posix()
            why = _unusable(Path(dirpath) / name, rel)
            if not why:
                try:
                    st = os.stat(Path(dirpath) / name)
                    rows.append((rel, *cache.sha256(rel, st)))
                    continue
                except OSError as err:
                    why = f"cannot be read ({err.strerror})"
            if skipped is not None:
                skipped.append((rel.encode("utf-8", "backslashreplace").decode(), why))
    rows.sort()
    cache.save(keep={r[0] for r in rows})
    return rows, cache.hashed
