"""The covers folder's journal: one JSON record per track, what the scrape found and why.

During a run each finished track is appended (and flushed) as it completes, so a kill loses at
most the covers in flight. At the end of every run (finished, stopped or interrupted) the journal
is rewritten once, atomically, with one record per track in track-id order: the same data gives
the same bytes, whatever order the threads finished in.

A failure is remembered with the settings that produced it (`settings`: a hash of the resolver,
its endpoints and the cover size); only a run with the same settings trusts it.
"""

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from coverpop.core.atomic import disk_errors, write_text

JOURNAL = "journal.jsonl"

# Failures that say something about the track, not about the moment: trusted by a later run with
# the same settings (unless scrape.retry_failed). Every other failure (timeouts, 5xx, an HTML page
# where JSON or an image was expected, an unreadable file, ...) may be transient and is retried.
PERMANENT = frozenset({"not_found", "no_image", "bad_id", "bad_path", "http_410",
                       "too_small", "bad_aspect"})

# What a resolver's answers depend on, besides its name and the cover size: the params it reads
# its endpoints from, and the environment variables that override them.
ENDPOINTS = {
    "spotify_api": (("api_url", "COVERPOP_SPOTIFY_API_URL"), ("token_url", "COVERPOP_SPOTIFY_TOKEN_URL"),
                    ("image_host", "COVERPOP_IMAGE_HOST")),
    "oembed": (("oembed_url", "COVERPOP_OEMBED_URL"), ("image_host", "COVERPOP_IMAGE_HOST")),
    "url": (("url_column", ""), ("image_host", "COVERPOP_IMAGE_HOST")),
}


@dataclass
class Record:
    track_id: str
    cover_id: str = ""
    album_id: str = ""
    album_name: str = ""
    release_date: str = ""
    file: str = ""            # relative to the covers folder: images/<cover_id>.jpg
    width: int = 0
    height: int = 0
    source_width: int = 0     # the image as downloaded, before crop and resize
    source_height: int = 0
    bytes: int = 0            # size of the stored file: the cheap first check of a finished cover
    sha256: str = ""
    phash: str = ""           # perceptual hash of the stored file (16 hex digits), for dedupe
    status: str = "failed"
    error: str = ""
    retryable: bool = False
    settings: str = ""        # fingerprint of the settings this record was made with


def reason_of(rec: dict) -> str:
    return str(rec.get("error") or "").split(":")[0]


def _endpoint(value: str) -> str:
    """A base URL without what may be secret or volatile (userinfo, query, fragment)."""
    parts = urlsplit(value)
    if not parts.scheme:
        return value
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def resolver_settings(resolver: str, scrape, data: dict | None = None,
                      environ=os.environ) -> dict[str, str]:
    """The endpoint settings a resolver's failures depend on (credentials stripped). `scrape`:
    the scrape params as a mapping, or an object with them as attributes."""
    found = {}
    for key, env in ENDPOINTS.get(resolver, ()):
        value = scrape.get(key) if isinstance(scrape, Mapping) else getattr(scrape, key, "")
        found[key] = _endpoint(str((env and environ.get(env)) or value or ""))
    if resolver == "local":
        found["images"] = str(((data or {}).get("local") or {}).get("images") or "")
    return found


def fingerprint(resolver: str, size: int, settings: dict | None = None) -> str:
    """A short, stable hash of what a failure depends on (no URL or secret is stored)."""
    clean = {k: _endpoint(str(v)) for k, v in sorted((settings or {}).items())}
    text = json.dumps([resolver, int(size), clean], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _normalise(rec: dict) -> dict:
    """Records of older journals: full paths become images/<name>; missing fields get defaults."""
    base = Record(track_id=str(rec["track_id"])).__dict__
    out = {k: rec.get(k, v) for k, v in base.items()}
    out["track_id"] = str(rec["track_id"])
    if out["file"] and not str(out["file"]).startswith("images/"):
        out["file"] = f"images/{Path(out['file']).name}"
    return out


def read_journal(path: str | Path) -> dict[str, dict]:
    """Last record per track; a line cut short by a kill is ignored."""
    records: dict[str, dict] = {}
    path = Path(path)
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                records[str(rec["track_id"])] = _normalise(rec)
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue
    return records


def render(records: dict[str, dict]) -> str:
    return "".join(json.dumps(records[t], ensure_ascii=False) + "\n" for t in sorted(records))


def write_sorted(path: str | Path, records: dict[str, dict]) -> bool:
    """Rewrite the journal with one record per track in track-id order (atomic); False when the
    file already holds exactly that (no write, so a run with nothing new touches nothing)."""
    path = Path(path)
    text = render(records)
    if path.exists() and path.read_bytes() == text.encode("utf-8"):
        return False
    write_text(path, text)
    return True


class Appender:
    """Append records as they finish; a line cut short by a kill is ended first, so the next
    record starts on a line of its own (read_journal skips the broken one)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        cut = False
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open("rb") as f:
                f.seek(-1, 2)
                cut = f.read(1) != b"\n"
        with disk_errors(self.path):   # a full or read-only disk: one line naming the journal
            self.f = self.path.open("a", encoding="utf-8", newline="\n")
            if cut:
                self.f.write("\n")

    def add(self, rec: dict) -> None:
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with disk_errors(self.path):
            try:
                self.f.write(line)
                self.f.flush()
            except OSError:
                # What did not reach the disk must not be written later, glued to the next
                # record: drop the buffer (a partial line on disk is skipped when read, and the
                # next Appender ends it).
                self._reopen()
                raise

    def _reopen(self) -> None:
        try:
            os.close(self.f.fileno())     # the buffer dies with the descriptor, unwritten
        except OSError:
            pass
        try:
            self.f.close()
        except (OSError, ValueError):
            pass
        self.f = self.path.open("a", encoding="utf-8", newline="\n")

    def close(self) -> None:
        try:
            self.f.close()
        except OSError:      # a failed flush was already reported by add()
            pass
