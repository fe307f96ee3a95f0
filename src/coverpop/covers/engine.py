"""The scrape engine: track rows in, verified covers on disk and a manifest out.

Resumable by design: every finished track is appended to `journal.jsonl` as it completes and
every cover is written atomically, so a killed run loses at most the covers in flight, and the
next run skips what is done. Resolvers (demo, local, Spotify, ...) only say where a cover is and
hand over its bytes; decoding, verifying and storing happen here, once, for all of them.
"""

import json
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from coverpop.core.atomic import write_bytes
from coverpop.core.errors import CoverpopError
from coverpop.core.redact import redact_text
from coverpop.covers.images import BadImage, normalize_cover, sha256
from coverpop.covers.types import CoverError, Resolver

DEFAULT_WORKERS = 16   # network resolvers spend their time waiting: 16 requests in flight

MANIFEST_COLUMNS = ["track_id", "cover_id", "album_id", "album_name", "release_date", "file",
                    "width", "height", "sha256", "status", "error"]


@dataclass
class Record:
    track_id: str
    cover_id: str = ""
    album_id: str = ""
    album_name: str = ""
    release_date: str = ""
    file: str = ""
    width: int = 0
    height: int = 0
    sha256: str = ""
    status: str = "failed"
    error: str = ""
    retryable: bool = False


def read_journal(path: Path) -> dict[str, dict]:
    """Last record per track; a line cut short by a kill is ignored."""
    records: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                records[rec["track_id"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return records


class Scraper:
    def __init__(self, resolver: Resolver, out_dir: str | Path, size: int = 300):
        self.resolver, self.size = resolver, size
        self.out_dir = Path(out_dir)
        self.images = self.out_dir / "images"
        self.journal = self.out_dir / "journal.jsonl"
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.summary = Summary()

    def _lock(self, cover_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(cover_id, threading.Lock())

    def is_done(self, rec: dict | None) -> bool:
        if not rec:
            return False
        if rec["status"] == "ok":
            return rec.get("width") == self.size and Path(rec["file"]).is_file()
        return not rec.get("retryable", False)  # a permanent failure is not retried

    def scrape_track(self, row: dict) -> Record:
        rec = Record(track_id=str(row["track_id"]))
        try:
            ref = self.resolver.resolve(row)
            rec.cover_id, rec.album_id = ref.cover_id, ref.album_id or ref.cover_id
            rec.album_name, rec.release_date = ref.album_name, ref.release_date
            path = self.images / f"{ref.cover_id}.jpg"
            # One lock per cover: tracks of one album fetch their shared cover once.
            with self._lock(ref.cover_id):
                if path.is_file():
                    data = path.read_bytes()
                else:
                    try:
                        data, _, _ = normalize_cover(self.resolver.fetch(ref), self.size)
                    except BadImage as err:
                        raise CoverError("corrupt_image", str(err)) from None
                    write_bytes(path, data)
            rec.file, rec.width, rec.height = str(path), self.size, self.size
            rec.sha256, rec.status = sha256(data), "ok"
        except CoverError as err:   # redacted: the journal and manifest are pushed to the team
            rec.error, rec.retryable = redact_text(err), err.retryable
        return rec

    def run(self, rows: list[dict], workers: int = DEFAULT_WORKERS,
            progress: bool = True) -> list[dict]:
        """Scrape every row not done yet; return the journal's records for `rows`.

        Raises StopScrape (after journaling every track that finished) when a resolver says the
        run must stop, e.g. on a daily quota.
        """
        self.images.mkdir(parents=True, exist_ok=True)
        for stale in self.images.glob(".*.tmp"):   # temp files of a killed run
            stale.unlink(missing_ok=True)
        done = read_journal(self.journal)
        if done:  # covers stored at another size are redone
            for rec in done.values():
                if rec["status"] == "ok" and rec.get("width") != self.size:
                    Path(rec["file"]).unlink(missing_ok=True)
        todo = [r for r in rows if not self.is_done(done.get(str(r["track_id"])))]
        self.summary = Summary(skipped=len(rows) - len(todo))
        prepare = getattr(self.resolver, "prepare", None)
        if prepare and todo:
            prepare([str(r["track_id"]) for r in todo])
        bar = tqdm(total=len(todo), unit="cover", desc=f"scrape ({self.resolver.name})",
                   disable=not progress or None, smoothing=0.1, dynamic_ncols=True)
        stop: Exception | None = None
        with _append(self.journal) as journal, \
                ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending = {pool.submit(self.scrape_track, row) for row in todo}
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        if fut.cancelled():
                            continue
                        try:
                            rec = asdict(fut.result())
                        except Exception as err:  # StopScrape (quota) or a bug: same care
                            if stop is None:   # start nothing new; covers in flight finish
                                stop = err     # and are journaled before we re-raise
                                for other in pending:
                                    other.cancel()
                            continue
                        journal.write(json.dumps(rec) + "\n")
                        journal.flush()
                        done[rec["track_id"]] = rec
                        self.summary.add(rec)
                        bar.set_postfix_str(self.summary.postfix(), refresh=False)
                        bar.update()
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
            finally:
                bar.close()
        if stop is not None:
            raise stop
        return [done[str(r["track_id"])] for r in rows if str(r["track_id"]) in done]


class _append:
    """Open the journal for appending; a line cut short by a kill is ended first, so the next
    record starts on a line of its own (read_journal skips the broken one)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open("rb") as f:
                f.seek(-1, 2)
                cut = f.read(1) != b"\n"
        else:
            cut = False
        self.f = self.path.open("a", encoding="utf-8")
        if cut:
            self.f.write("\n")
        return self.f

    def __exit__(self, *exc):
        self.f.close()


@dataclass
class Summary:
    """What one run did: new covers, tracks skipped as done before, failures by reason."""

    skipped: int = 0
    ok: int = 0
    failed: Counter = field(default_factory=Counter)

    def add(self, rec: dict) -> None:
        if rec["status"] == "ok":
            self.ok += 1
        else:
            self.failed[rec["error"].split(":")[0]] += 1

    def postfix(self) -> str:
        return f"ok={self.ok} failed={sum(self.failed.values())}"

    def line(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.failed.items(),
                                                            key=lambda rn: (-rn[1], rn[0])))
        return (f"{self.ok} new, {self.skipped} done before, {sum(self.failed.values())} failed"
                + (f" ({reasons})" if reasons else ""))


def manifest_frame(records: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(records, columns=MANIFEST_COLUMNS)


def check_success(manifest: pd.DataFrame, min_success: float) -> str:
    """A one-line summary; raise when too few covers were scraped to train on."""
    ok = int((manifest["status"] == "ok").sum())
    reasons = manifest.loc[manifest["status"] != "ok", "error"].str.split(":").str[0]
    by_reason = ", ".join(f"{r} {n}" for r, n in reasons.value_counts().items())
    summary = f"{ok} of {len(manifest)} covers ok" + (f"; failed: {by_reason}" if by_reason else "")
    if len(manifest) and ok / len(manifest) < min_success:
        raise CoverpopError(f"too few covers: {summary} (below scrape.min_success={min_success})")
    return summary
