import json
import threading

import pytest

from coverpop.core.errors import CoverpopError
from coverpop.covers.engine import Scraper, check_success, manifest_frame
from coverpop.covers.resolvers import DemoResolver
from coverpop.covers.types import CoverError, StopScrape
from coverpop.tracks import demo


class Counting:
    """Wraps a resolver and counts fetches (what a re-run must not repeat)."""

    def __init__(self, inner, fail=(), stop_after=None):
        self.inner, self.name = inner, "counting"
        self.fetches, self.fail, self.stop_after = [], set(fail), stop_after
        self.lock = threading.Lock()

    def resolve(self, row):
        if row["track_id"] in self.fail:
            raise CoverError("not_found", row["track_id"])
        return self.inner.resolve(row)

    def fetch(self, ref):
        with self.lock:
            if self.stop_after is not None and len(self.fetches) >= self.stop_after:
                raise StopScrape("quota exceeded: resume after 12:00")
            self.fetches.append(ref.cover_id)
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


def test_torn_journal_line_is_ignored(tmp_path, tracks):
    rows = tracks.head(4).to_dict("records")
    Scraper(DemoResolver(tracks), tmp_path, 64).run(rows, progress=False)
    with (tmp_path / "journal.jsonl").open("a") as f:
        f.write('{"track_id": "x", "sta')  # a kill mid-write
    assert len(Scraper(DemoResolver(tracks), tmp_path, 64).run(rows, progress=False)) == 4


def test_size_change_redoes_covers(tmp_path, tracks):
    rows = tracks.head(3).to_dict("records")
    Scraper(DemoResolver(tracks), tmp_path, 64).run(rows, progress=False)
    counting = Counting(DemoResolver(tracks))
    records = Scraper(counting, tmp_path, 32).run(rows, progress=False)
    assert counting.fetches and all(r["width"] == 32 for r in records)
