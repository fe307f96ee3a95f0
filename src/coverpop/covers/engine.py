"""The scrape engine: track rows in, verified covers on disk and a manifest out.

Resumable by design: every finished track is appended to `journal.jsonl` as it completes and
every cover is written atomically, so a killed run loses at most the covers in flight, and the
next run skips what is done. Resolvers (demo, local, Spotify, ...) only say where a cover is and
hand over its bytes; decoding, verifying and storing happen here, once, for all of them.

What the next run trusts, and what it does again:
- a finished cover, when its file still has the journal's size and sha256 (else it is fetched
  again: a zeroed or truncated file is never passed on);
- a cover stored at another `size` is replaced only once its replacement is written: derived
  locally when the stored one is larger, fetched again otherwise (and kept if that fails);
- a failure, only when it looks permanent (journal.PERMANENT) and was made with the same resolver
  settings; everything else is retried, and `retry_failed` retries everything.
One process writes a covers folder at a time (a lock beside it). Ctrl-C or SIGTERM stop the run
at once: finished work is journaled, covers in flight are abandoned, stuck requests not awaited.
"""

import os
import queue
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from coverpop.core.atomic import clean_dead_temps, disk_errors, write_bytes
from coverpop.core.errors import CoverpopError, DiskError
from coverpop.core.redact import redact_text
from coverpop.core.lock import exclusive
from coverpop.covers.images import (BadImage, RejectedImage, check_source, downscale_cover,
                                    normalize_cover, perceptual_hash, sha256)
from coverpop.covers.journal import (JOURNAL, PERMANENT, Appender, Record, fingerprint,
                                     read_journal, reason_of, write_sorted)
from coverpop.covers.types import CoverError, Resolver

DEFAULT_WORKERS = 16   # network resolvers spend their time waiting: 16 requests in flight
RETRY_COMMAND = "dvc repro -f -s scrape_images"

# No file column: the covers' bytes travel in the cover store (covers/store.py), by cover id.
MANIFEST_COLUMNS = ["track_id", "cover_id", "album_id", "album_name", "release_date",
                    "width", "height", "sha256", "status", "error", "source_width",
                    "source_height", "phash"]
# The fields of a record that describe the stored file (shared by the tracks of one cover).
COVER_FIELDS = ("file", "width", "height", "source_width", "source_height", "bytes", "sha256",
                "phash")

class _Abandoned(Exception):
    """The run was interrupted: a worker drops its cover instead of writing it."""


class _Workers:
    """A pool of daemon threads fed from a queue.

    Daemon threads because a worker stuck in a request must not keep the process alive after
    Ctrl-C: ThreadPoolExecutor's threads are joined at interpreter exit, a stuck one forever.
    """

    _EXIT = object()

    def __init__(self, fn, items: list, n: int):
        self.fn, self.n = fn, max(1, min(n, len(items)))
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        for item in items:
            self.tasks.put(item)
        self.results: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.busy = 0
        self._busy_lock = threading.Lock()
        for i in range(self.n):
            threading.Thread(target=self._work, daemon=True, name=f"scrape-{i}").start()

    def _work(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    item = self.tasks.get_nowait()
                except queue.Empty:
                    break
                with self._busy_lock:
                    self.busy += 1
                try:
                    self.results.put((self.fn(item), None))
                except BaseException as err:  # noqa: BLE001 - handed to the main thread
                    self.results.put((None, err))
                finally:
                    with self._busy_lock:
                        self.busy -= 1
        finally:
            self.results.put(self._EXIT)

    def __iter__(self):
        """(result, error) pairs until every worker has exited; Ctrl-C is seen within 0.2 s."""
        exited = 0
        while exited < self.n:
            try:
                got = self.results.get(timeout=0.2)
            except queue.Empty:
                continue
            if got is self._EXIT:
                exited += 1
            else:
                yield got


class Scraper:
    def __init__(self, resolver: Resolver, out_dir: str | Path, size: int = 300, *,
                 min_source_px: int = 0, max_aspect: float = 0.0, retry_failed: bool = False,
                 settings: dict | None = None, stored: Mapping[str, str] | None = None):
        """`min_source_px`/`max_aspect` reject sources that cannot be covers (0: no check);
        `settings`: the resolver's endpoint settings, which a recorded failure must match to be
        trusted (see journal.resolver_settings); `stored`: cover id -> sha256 of the covers in
        the cover store (covers/store.py), trusted without a file here (a fresh clone has the
        store, not the files)."""
        self.resolver, self.size = resolver, int(size)
        self.min_source_px, self.max_aspect = int(min_source_px), float(max_aspect)
        self.retry_failed = bool(retry_failed)
        self.fingerprint = fingerprint(resolver.name, self.size, settings)
        self.stored = stored or {}
        self.out_dir = Path(out_dir)
        self.images = self.out_dir / "images"
        self.journal = self.out_dir / JOURNAL
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._good: dict[str, dict] = {}     # cover id -> COVER_FIELDS of its verified file at size
        self._abandon = threading.Event()
        self.summary = Summary()

    def _lock(self, cover_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(cover_id, threading.Lock())

    # ---- what the journal says is done, checked against the disk -----------------------------
    def _verify(self, done: dict[str, dict]) -> set[str]:
        """Check each finished cover's file: size first (free), then sha256 (about 0.1 ms per
        300 px cover). Fills self._good with the covers intact at `size`; returns the track ids
        whose file is missing or no longer what the journal says. A verified cover journaled
        before covers carried a perceptual hash gets one (computed once, in parallel)."""
        self._good = {}
        seen: dict[str, tuple[int, str] | None] = {}
        broken: set[str] = set()
        intact: list[dict] = []
        root = str(self.out_dir)
        for tid, rec in done.items():
            if rec["status"] != "ok":
                continue
            path = os.path.join(root, rec["file"])   # plain strings: pathlib costs 3x here
            if rec["file"] not in seen:
                try:
                    seen[rec["file"]] = (os.stat(path).st_size, "")
                except OSError:
                    seen[rec["file"]] = None
            got = seen[rec["file"]]
            if got is None and self.stored.get(rec["cover_id"]) == rec["sha256"]:
                if rec["width"] == self.size:   # in the store: packed from it at the end
                    self._good[rec["cover_id"]] = {k: rec[k] for k in COVER_FIELDS}
                continue
            if got is None or (rec["bytes"] and got[0] != rec["bytes"]):
                broken.add(tid)
                continue
            if not got[1]:
                with open(path, "rb") as f:
                    got = seen[rec["file"]] = (got[0], sha256(f.read()))
            if got[1] != rec["sha256"]:
                broken.add(tid)
            else:
                intact.append(rec)
        unhashed = sorted({rec["file"] for rec in intact if not rec["phash"]})
        if unhashed:
            with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
                found = dict(zip(unhashed, pool.map(self._phash_file, unhashed)))
            for rec in intact:
                rec["phash"] = rec["phash"] or found[rec["file"]]
        for rec in intact:
            if rec["width"] == self.size:
                self._good[rec["cover_id"]] = {k: rec[k] for k in COVER_FIELDS} | {
                    "bytes": seen[rec["file"]][0]}
        return broken

    def _phash_file(self, file: str) -> str:
        return perceptual_hash((self.out_dir / file).read_bytes())

    def trusted_failure(self, rec: dict) -> bool:
        """Is this recorded failure final for this run (not retried)?"""
        reason = reason_of(rec)
        if self.retry_failed or rec.get("retryable") or reason not in PERMANENT:
            return False
        if rec.get("settings") != self.fingerprint:
            return False   # made with another resolver, endpoint or size: ask again
        if reason in ("too_small", "bad_aspect"):   # judged again under today's limits
            try:
                check_source(rec["source_width"], rec["source_height"], self.min_source_px,
                             self.max_aspect)
            except RejectedImage:
                return True
            return False
        return True

    # ---- one track ---------------------------------------------------------------------------
    def _store(self, cover_id: str, jpeg: bytes, source_width: int, source_height: int) -> dict:
        if self._abandon.is_set():
            raise _Abandoned
        file = f"images/{cover_id}.jpg"
        write_bytes(self.out_dir / file, jpeg)
        fields = {"file": file, "width": self.size, "height": self.size,
                  "source_width": source_width, "source_height": source_height,
                  "bytes": len(jpeg), "sha256": sha256(jpeg), "phash": perceptual_hash(jpeg)}
        self._good[cover_id] = fields
        return fields

    def _fetch(self, row: dict) -> dict:
        rec = Record(track_id=str(row["track_id"]), settings=self.fingerprint)
        try:
            ref = self.resolver.resolve(row)
            rec.cover_id, rec.album_id = ref.cover_id, ref.album_id or ref.cover_id
            rec.album_name, rec.release_date = ref.album_name, ref.release_date
            # One lock per cover: tracks of one album fetch their shared cover once.
            with self._lock(ref.cover_id):
                fields = self._good.get(ref.cover_id)
                if fields is None:
                    data = self.resolver.fetch(ref)
                    try:
                        cover = normalize_cover(data, self.size, self.min_source_px,
                                                self.max_aspect)
                    except BadImage as err:
                        raise CoverError("corrupt_image", str(err)) from None
                    except RejectedImage as err:
                        rec.source_width, rec.source_height = err.width, err.height
                        raise CoverError(err.reason, err.detail) from None
                    fields = self._store(ref.cover_id, cover.jpeg, cover.source_width,
                                         cover.source_height)
            rec.__dict__.update(fields)
            rec.status = "ok"
        except CoverError as err:
            rec.error, rec.retryable = redact_text(err), err.retryable   # no credential in outputs
        return asdict(rec)

    def _resize(self, old: dict) -> dict | None:
        """A stored cover larger than `size`: derived locally, written over the old one (None
        when the stored file can no longer be read: then it is fetched)."""
        cover_id = old["cover_id"]
        with self._lock(cover_id):
            fields = self._good.get(cover_id)
            if fields is None:
                try:
                    jpeg = downscale_cover((self.out_dir / old["file"]).read_bytes(), self.size)
                except (OSError, BadImage):
                    return None
                fields = self._store(cover_id, jpeg, old["source_width"], old["source_height"])
        return {**old, **fields, "settings": self.fingerprint}

    def _task(self, task: tuple[str, dict, dict | None]) -> tuple[dict, str]:
        kind, row, old = task
        if kind == "resize":
            resized = self._resize(old)
            if resized is not None:
                return resized, "resized"
        rec = self._fetch(row)
        if kind == "upsize" and rec["status"] != "ok":
            # The larger cover could not be fetched: keep the one we have (a param change never
            # costs a finished cover), and try again next run.
            with self._lock(old["cover_id"]):
                fields = self._good.get(old["cover_id"])
            return ({**old, **fields}, "new") if fields else (old, "kept_old")
        return rec, ("damaged" if kind == "damaged" and rec["status"] == "ok" else "new")

    # ---- the run -----------------------------------------------------------------------------
    def _plan(self, rows: list[dict], done: dict[str, dict]) -> list[tuple[str, dict, dict | None]]:
        broken = self._verify(done)
        tasks, seen = [], set()
        for row in rows:
            tid = str(row["track_id"])
            if tid in seen:
                continue
            seen.add(tid)
            rec = done.get(tid)
            if rec is None:
                tasks.append(("fetch", row, None))
            elif rec["status"] == "ok":
                good = self._good.get(rec["cover_id"])
                if good is not None:       # intact at this size (maybe rewritten for a sibling)
                    if any(rec[k] != good[k] for k in COVER_FIELDS):
                        done[tid] = {**rec, **good}
                    self.summary.skipped += 1
                elif tid in broken:
                    tasks.append(("damaged", row, rec))
                elif rec["width"] > self.size:
                    tasks.append(("resize", row, rec))
                else:
                    tasks.append(("upsize", row, rec))
            elif self.trusted_failure(rec):
                self.summary.skipped += 1
            else:
                tasks.append(("fetch", row, rec))
        return tasks

    def run(self, rows: list[dict], workers: int = DEFAULT_WORKERS,
            progress: bool = True) -> list[dict]:
        """Scrape every row not done yet; return the journal's records for `rows` (with `file`
        as a path under the covers folder, for the manifest).

        Raises StopScrape (after journaling every track that finished) when a resolver says the
        run must stop, e.g. on a daily quota; KeyboardInterrupt after journaling what finished,
        without waiting for the covers in flight.
        """
        with disk_errors(self.images):
            self.images.mkdir(parents=True, exist_ok=True)
        with exclusive(self.out_dir, "scrape"):
            clean_dead_temps(self.images)     # temp files of a killed run, never a live one's
            clean_dead_temps(self.out_dir)
            done = read_journal(self.journal)
            self.summary = Summary()
            tasks = self._plan(rows, done)
            self._abandon.clear()
            prepare = getattr(self.resolver, "prepare", None)
            if prepare and any(kind != "resize" for kind, _, _ in tasks):
                prepare([str(row["track_id"]) for kind, row, _ in tasks if kind != "resize"])
            journal = Appender(self.journal)
            bar = tqdm(total=len(tasks), unit="cover", desc=f"scrape ({self.resolver.name})",
                       disable=not progress or None, smoothing=0.1, dynamic_ncols=True)
            stop: BaseException | None = None
            pool = _Workers(self._task, tasks, workers) if tasks else None
            try:
                for result, err in pool or ():
                    if err is not None:
                        if stop is None and not isinstance(err, _Abandoned):
                            stop = err         # StopScrape (quota), a full disk or a bug: start
                            pool.stopping.set()  # nothing new; covers in flight finish and are
                        continue               # journaled (or fail the same way)
                    rec, note = result
                    journal.add(rec)
                    done[rec["track_id"]] = rec
                    self.summary.add(rec, note)
                    bar.set_postfix_str(self.summary.postfix(), refresh=False)
                    bar.update()
            except (KeyboardInterrupt, DiskError):
                # Ctrl-C, or the journal could not be written: covers in flight are dropped
                self._abandon.set()
                if pool:
                    pool.stopping.set()
                    self.summary.abandoned = pool.busy
                _remove_own_temps(self.images)
                raise
            finally:
                bar.close()
                journal.close()
                write_sorted(self.journal, done)
        if stop is not None:
            raise stop
        return [self._public(done[str(r["track_id"])]) for r in rows
                if str(r["track_id"]) in done]

    def _public(self, rec: dict) -> dict:
        return {**rec, "file": os.path.join(str(self.out_dir), rec["file"]) if rec["file"] else ""}


def _remove_own_temps(folder: Path) -> None:
    """Temp files of this process's abandoned downloads (names end in .PID.tmp)."""
    for tmp in folder.glob(f".*.{os.getpid()}.tmp"):
        tmp.unlink(missing_ok=True)


@dataclass
class Summary:
    """What one run did: new covers, tracks skipped as done before, failures by reason."""

    skipped: int = 0
    ok: int = 0
    failed: Counter = field(default_factory=Counter)
    resized: int = 0      # derived locally from a larger stored cover
    kept_old: int = 0     # stored at another size; the new size could not be fetched
    damaged: int = 0      # finished covers broken on disk, fetched again
    abandoned: int = 0    # covers in flight when the run was interrupted

    def add(self, rec: dict, note: str = "new") -> None:
        if note == "kept_old":
            self.kept_old += 1
        elif rec["status"] == "ok":
            self.ok += 1
            self.resized += note == "resized"
            self.damaged += note == "damaged"
        else:
            self.failed[reason_of(rec)] += 1

    def postfix(self) -> str:
        return f"ok={self.ok} failed={sum(self.failed.values())}"

    def line(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.failed.items(),
                                                            key=lambda rn: (-rn[1], rn[0])))
        text = (f"{self.ok} new, {self.skipped} done before, {sum(self.failed.values())} failed"
                + (f" ({reasons})" if reasons else ""))
        extras = [(self.resized, "resized locally from a larger stored cover"),
                  (self.damaged, "fetched again (damaged on disk)"),
                  (self.kept_old, ("kept at their old size (the new size could not be "
                                   "fetched; retried next run)")),
                  (self.abandoned, "abandoned in flight")]
        return text + "".join(f"; {n} {what}" for n, what in extras if n)


def manifest_frame(records: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(records, columns=MANIFEST_COLUMNS)


def retry_hint(records: list[dict], scraper: Scraper) -> str:
    """The one way to retry this run's failures ('' when there are none)."""
    failed = [r for r in records if r["status"] != "ok"]
    final = Counter(reason_of(r) for r in failed if scraper.trusted_failure(r))
    transient, n_final = len(failed) - sum(final.values()), sum(final.values())
    retry_all = "dvc exp run -S scrape.retry_failed=true (or set it in params.yaml)"
    kinds = ", ".join(sorted(final))
    if transient and n_final:
        return (f"to retry the {transient} failures that may be transient: {RETRY_COMMAND}; "
                f"to retry all {len(failed)} (also {kinds}): {retry_all}")
    if n_final:
        return f"the {n_final} failures look permanent ({kinds}); to retry them: {retry_all}"
    return f"to retry the {transient} failures: {RETRY_COMMAND}" if transient else ""


def check_success(manifest: pd.DataFrame, min_success: float, hint: str = "") -> str:
    """A one-line summary; raise when too few covers were scraped to train on (with `hint`, how
    to retry the failures)."""
    ok = int((manifest["status"] == "ok").sum())
    reasons = manifest.loc[manifest["status"] != "ok", "error"].str.split(":").str[0]
    by_reason = ", ".join(f"{r} {n}" for r, n in reasons.value_counts().items())
    summary = f"{ok} of {len(manifest)} covers ok" + (f"; failed: {by_reason}" if by_reason else "")
    if len(manifest) and ok / len(manifest) < min_success:
        raise CoverpopError(f"too few covers: {summary} (below scrape.min_success={min_success})"
                            + (f"; {hint}" if hint else ""))
    return summary
