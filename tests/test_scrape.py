import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from coverpop.core.errors import CoverpopError
from coverpop.core.lock import lock_path
from coverpop.covers.engine import Scraper, check_success, manifest_frame, retry_hint
from coverpop.covers.images import perceptual_hash
from coverpop.covers.journal import read_journal
from coverpop.covers.resolvers import DemoResolver
from coverpop.covers.types import CoverError, StopScrape
from coverpop.tracks import demo


class Counting:
    """Wraps a resolver and counts fetches (what a re-run must not repeat)."""

    def __init__(self, inner, fail=(), stop_after=None, reason="not_found", down=False):
        self.inner, self.name = inner, "counting"
        self.fetches, self.stop_after = [], stop_after
        self.fail = fail if isinstance(fail, dict) else set(fail)
        self.resolves, self.reason, self.down = [], reason, down
        self.lock = threading.Lock()

    def resolve(self, row):
        with self.lock:
            self.resolves.append(row["track_id"])
        if row["track_id"] in self.fail:
            reason = self.fail[row["track_id"]] if isinstance(self.fail, dict) else self.reason
            raise CoverError(reason, row["track_id"])
        return self.inner.resolve(row)

    def fetch(self, ref):
        with self.lock:
            if self.stop_after is not None and len(self.fetches) >= self.stop_after:
                raise StopScrape("quota exceeded: resume after 12:00")
            self.fetches.append(ref.cover_id)
        if self.down:   # the image host is down
            raise CoverError("connection", "cannot connect to the image host", retryable=True)
        return self.inner.fetch(ref)


@pytest.fixture
def tracks():
    return demo.make_tracks(40, seed=0)


def test_scrape_writes_covers_once_per_album_and_resumes(tmp_path, tracks):
    rows = tracks.to_dict("records")
    first = Counting(DemoResolver(tracks))
    records = Scraper(first, tmp_path, size=64).run(rows, workers=4, progress=False)
    assert all(r["status"] == "ok" for r in records) and len(records) == len(rows)
    assert sorted(first.fetches) == sorted(set(tracks["album_id"]))  # one fetch per cover
    assert not list(tmp_path.rglob("*.tmp"))
    again = Counting(DemoResolver(tracks))
    assert Scraper(again, tmp_path, size=64).run(rows, progress=False) == records
    assert again.fetches == []


def test_failures_are_recorded_and_run_continues(tmp_path, tracks):
    rows = tracks.to_dict("records")
    bad = rows[0]["track_id"]
    records = Scraper(Counting(DemoResolver(tracks), fail={bad}), tmp_path, 64).run(rows, progress=False)
    failed = [r for r in records if r["status"] != "ok"]
    assert [r["track_id"] for r in failed] == [bad] and failed[0]["error"].startswith("not_found")
    manifest = manifest_frame(records)
    assert "failed: not_found 1" in check_success(manifest, 0.5)
    with pytest.raises(CoverpopError, match=r"too few covers: .* failed: not_found 1"):
        check_success(manifest, 1.0)


def test_corrupt_bytes_are_a_per_track_failure(tmp_path, tracks):
    class Corrupt(DemoResolver):
        def fetch(self, ref):
            return super().fetch(ref)[:500]

    records = Scraper(Corrupt(tracks), tmp_path, 64).run(tracks.head(3).to_dict("records"),
                                                         progress=False)
    assert {r["error"].split(":")[0] for r in records} == {"corrupt_image"}
    assert not list((tmp_path / "images").glob("*"))


def test_stop_keeps_finished_work_and_next_run_completes(tmp_path, tracks):
    rows = tracks.to_dict("records")
    first = Counting(DemoResolver(tracks), stop_after=5)
    with pytest.raises(StopScrape):
        Scraper(first, tmp_path, 64).run(rows, workers=2, progress=False)
    journal = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert {r["cover_id"] for r in journal} == set(first.fetches)  # every finished cover journaled
    resumed = Counting(DemoResolver(tracks))
    records = Scraper(resumed, tmp_path, 64).run(rows, progress=False)
    assert all(r["status"] == "ok" for r in records) and len(records) == len(rows)
    assert not set(resumed.fetches) & set(first.fetches)  # nothing downloaded twice
    assert len(resumed.fetches) == tracks["album_id"].nunique() - 5


def manifest_bytes(records: list[dict], root: Path) -> bytes:
    """The manifest as the stage writes it (no paths in it: covers are named by id)."""
    return manifest_frame(records).to_csv(index=False, lineterminator="\n").encode()


def test_every_cover_gets_its_perceptual_hash_once_where_it_is_stored(tmp_path, tracks,
                                                                      monkeypatch):
    rows = tracks.to_dict("records")
    records = Scraper(DemoResolver(tracks), tmp_path, 64).run(rows, workers=3, progress=False)
    for rec in records:
        assert rec["phash"] == perceptual_hash(Path(rec["file"]).read_bytes())
    calls = []
    import coverpop.covers.engine as engine
    monkeypatch.setattr(engine, "perceptual_hash", lambda data: calls.append(1) or
                        perceptual_hash(data))
    again = Scraper(DemoResolver(tracks), tmp_path, 64).run(rows, progress=False)
    assert again == records and calls == []          # an unchanged cover is never hashed again


@pytest.mark.slow
def test_a_resumed_scrape_gives_the_same_manifest_bytes(tmp_path, tracks):
    rows = tracks.to_dict("records")
    fresh = Scraper(DemoResolver(tracks), tmp_path / "a", 64).run(rows, workers=4, progress=False)
    with pytest.raises(StopScrape):
        Scraper(Counting(DemoResolver(tracks), stop_after=5), tmp_path / "b", 64).run(
            rows, workers=2, progress=False)
    resumed = Scraper(DemoResolver(tracks), tmp_path / "b", 64).run(rows, progress=False)
    assert manifest_bytes(resumed, tmp_path / "b") == manifest_bytes(fresh, tmp_path / "a")


@pytest.mark.slow
def test_covers_journaled_without_a_hash_are_hashed_once_not_fetched(tmp_path, tracks):
    """A covers folder scraped before covers carried perceptual hashes: the next run hashes the
    stored files (no download) and gives the manifest a fresh scrape gives."""
    rows = tracks.to_dict("records")
    fresh = Scraper(DemoResolver(tracks), tmp_path / "a", 64).run(rows, progress=False)
    Scraper(DemoResolver(tracks), tmp_path / "b", 64).run(rows, progress=False)
    journal = tmp_path / "b" / "journal.jsonl"
    old = [{k: v for k, v in json.loads(line).items() if k != "phash"}
           for line in journal.read_text().splitlines()]
    journal.write_text("".join(json.dumps(r) + "\n" for r in old))
    counting = Counting(DemoResolver(tracks))
    records = Scraper(counting, tmp_path / "b", 64).run(rows, progress=False)
    assert counting.fetches == [] and counting.resolves == []
    assert manifest_bytes(records, tmp_path / "b") == manifest_bytes(fresh, tmp_path / "a")
    assert all(json.loads(line)["phash"] for line in journal.read_text().splitlines())


def test_torn_journal_line_is_ignored(tmp_path, tracks):
    rows = tracks.head(4).to_dict("records")
    Scraper(DemoResolver(tracks), tmp_path, 64).run(rows, progress=False)
    with (tmp_path / "journal.jsonl").open("a") as f:
        f.write('{"track_id": "x", "sta')  # a kill mid-write
    assert len(Scraper(DemoResolver(tracks), tmp_path, 64).run(rows, progress=False)) == 4




def size_of(path) -> tuple[int, int]:
    return Image.open(path).size


def test_smaller_size_is_derived_locally_without_any_download(tmp_path, tracks):
    rows = tracks.to_dict("records")
    Scraper(DemoResolver(tracks), tmp_path, 64).run(rows, progress=False)
    counting = Counting(DemoResolver(tracks), down=True)
    scraper = Scraper(counting, tmp_path, 32)
    records = scraper.run(rows, progress=False)
    assert counting.fetches == [] and counting.resolves == []
    assert all(r["status"] == "ok" and r["width"] == 32 for r in records)
    assert all(size_of(r["file"]) == (32, 32) for r in records)
    assert all(r["source_width"] == 300 or r["source_width"] == 240 for r in records)
    n_covers = tracks["album_id"].nunique()
    assert scraper.summary.resized == len(rows) and f"{len(rows)} resized locally" in \
        scraper.summary.line()
    assert len(list((tmp_path / "images").glob("*.jpg"))) == n_covers
    again = Counting(DemoResolver(tracks))
    assert Scraper(again, tmp_path, 32).run(rows, progress=False) == records   # done, verified
    assert again.fetches == [] and again.resolves == []


@pytest.mark.slow
def test_larger_size_with_the_host_down_keeps_every_cover_then_upgrades(tmp_path, tracks):
    rows = tracks.to_dict("records")
    first = Scraper(DemoResolver(tracks), tmp_path, 32).run(rows, progress=False)
    before = {f: f.read_bytes() for f in (tmp_path / "images").glob("*.jpg")}
    down = Counting(DemoResolver(tracks), down=True)
    scraper = Scraper(down, tmp_path, 64)
    records = scraper.run(rows, progress=False)
    assert down.fetches                                           # it tried
    assert records == first                                       # nothing lost, nothing changed
    assert {f: f.read_bytes() for f in (tmp_path / "images").glob("*.jpg")} == before
    assert check_success(manifest_frame(records), 1.0).startswith(f"{len(rows)} of {len(rows)}")
    assert f"{len(rows)} kept at their old size" in scraper.summary.line()
    up = Counting(DemoResolver(tracks))                           # the host is back
    records = Scraper(up, tmp_path, 64).run(rows, progress=False)
    assert sorted(up.fetches) == sorted(set(tracks["album_id"]))  # one fetch per cover
    assert all(r["width"] == 64 and size_of(r["file"]) == (64, 64) for r in records)


def test_a_cover_redone_for_one_track_serves_its_album_siblings(tmp_path, tracks):
    album = tracks["album_id"].value_counts().index[0]            # an album of several tracks
    rows = tracks[tracks["album_id"] == album].to_dict("records")
    assert len(rows) >= 2
    Scraper(Counting(DemoResolver(tracks)), tmp_path, 32).run(rows, progress=False)
    flaky = Counting(DemoResolver(tracks), fail={rows[0]["track_id"]}, reason="connection")
    Scraper(flaky, tmp_path, 64).run(rows, workers=1, progress=False)   # one sibling fails
    after = Counting(DemoResolver(tracks))
    scraper = Scraper(after, tmp_path, 64)
    records = scraper.run(rows, progress=False)
    assert after.resolves == [] and scraper.summary.damaged == 0  # the file is shared, not broken
    assert all(r["width"] == 64 and size_of(r["file"]) == (64, 64) for r in records)
    assert len({r["sha256"] for r in records}) == 1


def test_damaged_finished_covers_are_noticed_and_fetched_again(tmp_path, tracks):
    rows = tracks.to_dict("records")
    Scraper(DemoResolver(tracks), tmp_path, 64).run(rows, progress=False)
    files = sorted((tmp_path / "images").glob("*.jpg"))
    zeroed, truncated, gone = files[:3]
    zeroed.write_bytes(b"\0" * zeroed.stat().st_size)            # same size, wrong bytes
    truncated.write_bytes(truncated.read_bytes()[:100])
    gone.unlink()
    counting = Counting(DemoResolver(tracks))
    scraper = Scraper(counting, tmp_path, 64)
    records = scraper.run(rows, progress=False)
    assert sorted(counting.fetches) == sorted(f.stem for f in (zeroed, truncated, gone))
    for f in (zeroed, truncated, gone):
        img = Image.open(f)
        img.load()
        assert img.size == (64, 64)
    damaged_tracks = tracks["album_id"].isin([f.stem for f in files[:3]]).sum()
    assert scraper.summary.damaged == damaged_tracks
    assert all(r["status"] == "ok" for r in records)


def test_the_same_scraper_object_checks_the_disk_again_on_every_run(tmp_path, tracks):
    rows = tracks.head(4).to_dict("records")
    counting = Counting(DemoResolver(tracks))
    scraper = Scraper(counting, tmp_path, 64)
    scraper.run(rows, progress=False)
    victim = sorted((tmp_path / "images").glob("*.jpg"))[0]
    victim.write_bytes(b"\0" * victim.stat().st_size)
    scraper.run(rows, progress=False)
    assert counting.fetches.count(victim.stem) == 2 and size_of(victim) == (64, 64)


def test_failures_that_may_be_transient_are_retried_permanent_ones_trusted(tmp_path, tracks):
    rows = tracks.head(6).to_dict("records")
    portal, gone = rows[0]["track_id"], rows[1]["track_id"]
    # An HTML captive-portal page where JSON was expected is recorded as not retryable...
    Scraper(Counting(DemoResolver(tracks), fail={portal: "bad_response", gone: "not_found"}),
            tmp_path, 64).run(rows, progress=False)
    journal = read_journal(tmp_path / "journal.jsonl")
    assert journal[portal]["error"].startswith("bad_response") and not journal[portal]["retryable"]
    # ...but the next run asks again (the portal is gone); a 404 under the same settings is trusted.
    again = Counting(DemoResolver(tracks), fail={gone})
    scraper = Scraper(again, tmp_path, 64)
    records = scraper.run(rows, progress=False)
    assert again.resolves == [portal] and scraper.summary.ok == 1
    assert retry_hint(records, scraper) == ("the 1 failures look permanent (not_found); to retry "
                                            "them: dvc exp run -S scrape.retry_failed=true "
                                            "(or set it in params.yaml)")
    everything = Counting(DemoResolver(tracks))
    records = Scraper(everything, tmp_path, 64, retry_failed=True).run(rows, progress=False)
    assert everything.resolves == [gone] and all(r["status"] == "ok" for r in records)


def test_a_failure_is_trusted_only_under_the_settings_that_made_it(tmp_path, tracks):
    rows = tracks.head(4).to_dict("records")
    gone = rows[0]["track_id"]
    a = {"oembed_url": "http://user:secret@mirror-a/oembed?token=abc"}
    Scraper(Counting(DemoResolver(tracks), fail={gone}), tmp_path, 64, settings=a).run(
        rows, progress=False)
    journal = (tmp_path / "journal.jsonl").read_text()
    assert "secret" not in journal and "mirror-a" not in journal and "token" not in journal
    same = Counting(DemoResolver(tracks), fail={gone})
    Scraper(same, tmp_path, 64, settings={"oembed_url": "http://mirror-a/oembed"}).run(
        rows, progress=False)
    assert same.resolves == []                          # only the credentials differ
    other = Counting(DemoResolver(tracks), fail={gone})
    Scraper(other, tmp_path, 64, settings={"oembed_url": "http://mirror-b/oembed"}).run(
        rows, progress=False)
    assert other.resolves == [gone]                     # another endpoint: asked again


def test_rejected_sources_are_judged_again_when_the_limits_change(tmp_path, tracks):
    rows = tracks.head(3).to_dict("records")
    strict = Scraper(Counting(DemoResolver(tracks)), tmp_path, 64, min_source_px=1000)
    records = strict.run(rows, progress=False)
    assert all(r["error"].startswith("too_small") and r["source_width"] in (240, 300)
               for r in records)
    assert not list((tmp_path / "images").glob("*.jpg"))
    counting = Counting(DemoResolver(tracks))
    Scraper(counting, tmp_path, 64, min_source_px=1000).run(rows, progress=False)
    assert counting.resolves == []                      # same limits: the verdict stands
    records = Scraper(counting, tmp_path, 64, min_source_px=64).run(rows, progress=False)
    assert len(counting.resolves) == 3 and all(r["status"] == "ok" for r in records)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.slow
def test_same_data_gives_the_same_bytes_whatever_the_thread_timing(tmp_path, tracks):
    rows = tracks.to_dict("records")
    a = Scraper(DemoResolver(tracks), tmp_path / "a", 64).run(rows, workers=1, progress=False)
    b = Scraper(DemoResolver(tracks), tmp_path / "b", 64).run(rows, workers=8, progress=False)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    lines = (tmp_path / "a" / "journal.jsonl").read_text().splitlines()
    ids = [json.loads(line)["track_id"] for line in lines]
    assert ids == sorted(set(ids)) and len(ids) == len(rows)
    assert [r["file"].replace(str(tmp_path / "a"), "") for r in a] == \
        [r["file"].replace(str(tmp_path / "b"), "") for r in b]
    journal = tmp_path / "a" / "journal.jsonl"
    stamp = journal.stat().st_mtime_ns
    Scraper(DemoResolver(tracks), tmp_path / "a", 64).run(rows, workers=3, progress=False)
    assert journal.stat().st_mtime_ns == stamp          # nothing new: not even rewritten


HOLD = """
import sys, time
from coverpop.core.lock import exclusive
with exclusive(sys.argv[1], "scrape"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_fails_at_once_naming_the_first(tmp_path, tracks):
    rows = tracks.head(4).to_dict("records")
    out = tmp_path / "covers"
    Scraper(DemoResolver(tracks), out, 64).run(rows, progress=False)
    journal = (out / "journal.jsonl").read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        live_tmp = out / "images" / f".x.jpg.{holder.pid}.tmp"      # the holder's download
        live_tmp.write_bytes(b"partial")
        with pytest.raises(CoverpopError) as err:
            Scraper(DemoResolver(tracks), out, 32).run(rows, progress=False)
        message = str(err.value)
        assert f"pid {holder.pid}" in message and str(out) in message and "\n" not in message
        assert live_tmp.exists() and (out / "journal.jsonl").read_bytes() == journal
        assert all(size_of(f) == (64, 64) for f in (out / "images").glob("*.jpg"))
    finally:
        holder.kill()
        holder.wait()
    # The holder is dead: its lock is gone with it, and its temp file is cleaned up.
    Scraper(DemoResolver(tracks), out, 64).run(rows, progress=False)
    assert not live_tmp.exists() and lock_path(out).exists()
    assert not str(lock_path(out)).startswith(str(out) + os.sep)  # beside the output, not in it


# ---- the stage script, as DVC runs it ------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def demo_stage_dir(root: Path, tracks, **scrape) -> Path:
    import yaml

    from coverpop.core.params import defaults

    root.mkdir(parents=True)
    params = defaults()
    params["data"]["source"] = "demo"
    params["scrape"].update({"resolver": "demo", "size": 64, **scrape})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    tracks.to_csv(root / "selected.csv", index=False)
    return root


def run_scrape_stage(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    (cwd / "images.csv").write_text("name,size,sha256\n")  # the inputs stage's: no local images
    return subprocess.run([sys.executable, str(REPO / "stages/scrape_images.py"), "selected.csv",
                           "images.csv", "data/covers", "data/manifest.csv", "data/shards"],
                          cwd=cwd, env=env,
                          text=True, capture_output=True, timeout=300)


def outputs(cwd: Path) -> dict[str, bytes]:
    """What DVC hashes: the journal, the cover store and the manifest (the working folder of
    cover files and the lock files are not outputs)."""
    return {**_tree(cwd / "data" / "shards"), "journal": (cwd / "data/covers/journal.jsonl").read_bytes(),
            "manifest": (cwd / "data/manifest.csv").read_bytes()}


@pytest.mark.slow
def test_stage_from_scratch_twice_gives_identical_covers_and_manifest(tmp_path, tracks):
    a = demo_stage_dir(tmp_path / "a", tracks, workers=1)
    b = demo_stage_dir(tmp_path / "b", tracks, workers=8)
    for cwd in (a, b):
        proc = run_scrape_stage(cwd)
        assert proc.returncode == 0, proc.stderr
    assert outputs(a) == outputs(b)
    manifest = (a / "data/manifest.csv").read_text().splitlines()
    assert manifest[0].endswith(",source_width,source_height,phash")
    covers = [p for d in ("covers", "shards") for p in (a / "data" / d).rglob("*") if p.is_file()]
    assert len(list((a / "data/shards").glob("*.tar"))) > 1
    before = {p: p.stat().st_mtime_ns for p in covers}
    proc = run_scrape_stage(a)
    assert f"0 new, {len(tracks)} done before, 0 failed" in proc.stdout
    assert outputs(a) == outputs(b)
    assert {p: p.stat().st_mtime_ns for p in covers} == before   # nothing rewritten


@pytest.mark.slow
def test_a_fresh_clone_resumes_from_the_store_without_the_cover_files(tmp_path, tracks):
    """A teammate's clone has the journal and the cover store (dvc pull), not the working folder
    of cover files: finished covers are trusted from the store, not fetched again; new ones are
    fetched and packed beside them."""
    from coverpop.covers.store import CoverStore

    a = demo_stage_dir(tmp_path / "a", tracks.head(30), workers=2)
    assert run_scrape_stage(a).returncode == 0
    before = outputs(a)
    shutil.rmtree(a / "data/covers/images")
    proc = run_scrape_stage(a)
    assert proc.returncode == 0, proc.stderr
    assert "0 new, 30 done before, 0 failed" in proc.stdout and "(0 shards rewritten)" in proc.stdout
    assert outputs(a) == before

    tracks.to_csv(a / "selected.csv", index=False)   # more tracks
    proc = run_scrape_stage(a)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(tracks) - 30} new, 30 done before, 0 failed" in proc.stdout
    manifest = pd.read_csv(a / "data/manifest.csv", dtype=str)
    store = CoverStore(a / "data/shards")
    assert set(store.entries) == set(manifest["cover_id"])
    assert all(store.read(c) for c in manifest["cover_id"])   # each checked against its sha256
    # the same bytes as a scrape of all 40 from scratch
    b = demo_stage_dir(tmp_path / "b", tracks, workers=2)
    assert run_scrape_stage(b).returncode == 0
    assert _tree(a / "data/shards") == _tree(b / "data/shards")
