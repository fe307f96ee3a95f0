"""The scrape engine and stage with the network resolvers, against the local Spotify fake:
every fault of issue 3, a quota stop and resume, SIGKILL mid-run, too few successes."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from conftest import write_params  # noqa: E402
from fakes.spotify_server import FakeSpotify, make_track_ids  # noqa: E402
from scrape_params import scrape_params  # noqa: E402

from coverpop.covers.engine import Scraper  # noqa: E402
from coverpop.covers.journal import read_journal, resolver_settings  # noqa: E402
from coverpop.covers.oembed import OEmbedResolver  # noqa: E402
from coverpop.covers.resolvers import make_resolver  # noqa: E402
from coverpop.covers.settings import ScrapeSettings  # noqa: E402
from coverpop.covers.store import CoverStore  # noqa: E402
from coverpop.covers.spotify import SpotifyApiResolver  # noqa: E402
from coverpop.covers.types import StopScrape  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAST = scrape_params(timeout=0.5, retries=1, backoff=0.01, workers=4, size=300)


@pytest.fixture
def fake():
    with FakeSpotify(slow_seconds=5) as f:   # a "slow" answer: 10x the 0.5 s deadline (FAST)
        yield f


def rows(ids):
    return [{"track_id": t, "popularity": 50} for t in ids]


def decodes(path: Path | bytes, size: int = 300) -> bool:
    img = Image.open(io.BytesIO(path if isinstance(path, bytes) else path.read_bytes()))
    img.load()
    return img.size == (size, size)


@pytest.mark.slow
def test_every_track_fault_is_recorded_with_its_reason_and_the_run_goes_on(fake, tmp_path):
    ids = make_track_ids(30)
    faults = {ids[0]: "404", ids[1]: "no_images", ids[2]: "corrupt_jpeg",
              ids[3]: "truncated_jpeg", ids[4]: "500", ids[5]: "slow"}
    for tid, kind in faults.items():
        fake.fault(tid, kind)
    fake.fault(ids[6], "429", times=1)    # short Retry-After: waited out
    fake.fault(ids[7], "503", times=1)    # transient: retried
    scraper = Scraper(SpotifyApiResolver.from_params(FAST, environ=fake.env()), tmp_path)
    recs = {r["track_id"]: r for r in scraper.run(rows(ids), workers=4, progress=False)}

    reasons = {tid: recs[tid]["error"].split(":")[0] for tid in faults}
    assert reasons == {ids[0]: "not_found", ids[1]: "no_image", ids[2]: "corrupt_image",
                       ids[3]: "corrupt_image", ids[4]: "server_error", ids[5]: "timeout"}
    ok = [t for t in ids if recs[t]["status"] == "ok"]
    assert ok == [t for t in ids if t not in faults]
    for t in ok:
        assert recs[t]["cover_id"] == fake.image_id(t) and decodes(Path(recs[t]["file"]))
    assert not (tmp_path / "images" / f"{fake.image_id(ids[2])}.jpg").exists()
    assert scraper.summary.line() == ("24 new, 0 done before, 6 failed (corrupt_image 2, "
                                      "no_image 1, not_found 1, server_error 1, timeout 1)")

    # Next run: failures that look permanent (not_found, no_image) stay recorded; everything
    # that may have been transient (5xx, timeout, a corrupt or truncated body) is tried again.
    fake.clear_faults()
    fake.reset_counts()
    recs = {r["track_id"]: r for r in scraper.run(rows(ids), workers=4, progress=False)}
    assert fake.track_hits[ids[0]] == 0 and fake.track_hits[ids[1]] == 0
    assert all(fake.track_hits[t] == 1 for t in ids[2:6])
    assert all(recs[t]["status"] == "ok" for t in ids[2:6])
    assert sum(fake.track_hits[t] for t in ok) == 0 and scraper.summary.skipped == 26


def test_summary_counts_by_reason(fake, tmp_path):
    ids = make_track_ids(6)
    fake.fault(ids[0], "404")
    fake.fault(ids[1], "404")
    fake.fault(ids[2], "no_images")
    scraper = Scraper(OEmbedResolver.from_params(FAST, environ=fake.env()), tmp_path)
    scraper.run(rows(ids), workers=2, progress=False)
    assert scraper.summary.line() == "3 new, 0 done before, 3 failed (not_found 2, no_image 1)"


@pytest.mark.timeout(60)   # a sleep through the quota's Retry-After would hit this
def test_quota_stops_the_run_keeps_finished_covers_and_the_next_run_resumes(fake, tmp_path):
    ids = make_track_ids(40)
    fake.quota_after(15)
    scraper = Scraper(SpotifyApiResolver.from_params(FAST, environ=fake.env()), tmp_path)
    with pytest.raises(StopScrape, match="QUOTA_EXCEEDED.*resume after"):
        scraper.run(rows(ids), workers=4, progress=False)
    journal = read_journal(tmp_path / "journal.jsonl")
    finished = [t for t, r in journal.items() if r["status"] == "ok"]
    assert len(finished) == 15 and len(journal) == 15     # nothing else recorded as failed
    files = sorted((tmp_path / "images").glob("*.jpg"))
    assert sorted(f.stem for f in files) == sorted(fake.image_id(t) for t in finished)
    assert fake.counts["track"] <= 15 + 4                 # stopped promptly: one wave at most

    fake.quota_after(None)
    fake.reset_counts()
    scraper = Scraper(SpotifyApiResolver.from_params(FAST, environ=fake.env()), tmp_path)
    recs = scraper.run(rows(ids), workers=4, progress=False)
    assert all(r["status"] == "ok" for r in recs) and len(recs) == 40
    assert sum(fake.track_hits[t] for t in finished) == 0
    assert sum(fake.image_hits[fake.image_id(t)] for t in finished) == 0
    assert fake.counts["track"] == 25 and fake.counts["image"] == 25


def test_batch_403_at_engine_level_falls_back_once(fake, tmp_path):
    ids = make_track_ids(60)
    resolver = SpotifyApiResolver.from_params({**FAST, "batch": True}, environ=fake.env())
    recs = Scraper(resolver, tmp_path).run(rows(ids), workers=4, progress=False)
    assert all(r["status"] == "ok" for r in recs)
    assert fake.counts["batch"] == 1 and fake.counts["track"] == 60
    assert fake.counts["token"] == 1     # fetched once up front, not by every worker


def test_auto_picks_spotify_with_credentials_else_oembed(fake):
    df = pd.DataFrame(rows(make_track_ids(2)))
    auto = ScrapeSettings.from_params({**FAST, "resolver": "auto"}, environ={})
    assert make_resolver(auto, df, {"source": "kaggle"}, environ={}).name == "oembed"
    assert make_resolver(auto, df, {"source": "csv"}, environ=fake.env()).name == \
        "spotify_api"


# ---- the real stage script in a subprocess ---------------------------------------------------

def stage_dir(tmp_path, ids, **scrape):
    params = {"data": {"source": "kaggle"},
              "scrape": scrape_params(**{"resolver": "spotify_api", "size": 300, "workers": 4,
                                         "min_success": 0.5, "timeout": 2, "retries": 1,
                                         "backoff": 0.05, "rate_limit": 0,
                                         "max_retry_after": 60, **scrape})}
    write_params(tmp_path, params)
    pd.DataFrame(rows(ids)).to_csv(tmp_path / "selected.csv", index=False)
    (tmp_path / "images.csv").write_text("name,size,sha256\n")  # the inputs stage's: no local images
    return tmp_path


def run_stage(cwd, fake, wait=True):
    env = {**os.environ, **fake.env(), "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, str(REPO / "stages" / "scrape_images.py"), "selected.csv",
           "images.csv", "data/covers", "data/manifest.csv", "data/shards"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if wait:
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err
    return proc


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_mid_run_then_rerun_completes_without_redownloading(tmp_path):
    ids = make_track_ids(150)
    cwd = stage_dir(tmp_path, ids)
    journal = cwd / "data" / "covers" / "journal.jsonl"
    with FakeSpotify(latency=(0.03, 0.05)) as fake:
        proc = run_stage(cwd, fake, wait=False)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and journal.read_text().count("\n") >= 30:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the stage finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

        images = cwd / "data" / "covers" / "images"
        kept = sorted(images.glob("*.jpg"))
        assert 30 <= len(kept) < 150
        assert all(decodes(f) for f in kept)          # no partial or corrupt cover
        journaled = [t for t, r in read_journal(journal).items() if r["status"] == "ok"]
        assert len(journaled) >= 30

        fake.reset_counts()
        code, out, err = run_stage(cwd, fake)
        assert code == 0, err
        assert not list(images.glob(".*.tmp"))
        assert sum(fake.track_hits[t] for t in journaled) == 0           # not resolved again
        # Journaled covers are not downloaded again. A file renamed into place but killed before
        # its journal line (at most one per worker) is fetched again: only the journal is trusted.
        assert sum(fake.image_hits[fake.image_id(t)] for t in journaled) == 0
        assert sum(fake.image_hits[f.stem] for f in kept) <= 4
        manifest = pd.read_csv(cwd / "data" / "manifest.csv")
        assert len(manifest) == 150 and (manifest["status"] == "ok").all()
        assert sorted(f.stem for f in images.glob("*.jpg")) == sorted(fake.image_id(t) for t in ids)
        store = CoverStore(cwd / "data" / "shards")
        assert all(decodes(store.read(c)) for c in manifest["cover_id"])
        assert f"{len(journaled)} done before" in out


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_stage_fails_with_per_reason_counts_when_too_few_covers_succeed(fake, tmp_path):
    ids = make_track_ids(10)
    for t in ids[:4]:
        fake.fault(t, "404")
    fake.fault(ids[4], "no_images")
    cwd = stage_dir(tmp_path, ids, min_success=0.8)
    code, out, err = run_stage(cwd, fake)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: too few covers: 5 of 10 covers ok; failed: not_found 4, no_image 1 "
        "(below scrape.min_success=0.8); the 5 failures look permanent (no_image, not_found); "
        "to retry them: dvc exp run -S scrape.retry_failed=true")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_stage_quota_is_one_line_and_exit_1(fake, tmp_path):
    fake.quota_after(0)
    cwd = stage_dir(tmp_path, make_track_ids(5))
    code, out, err = run_stage(cwd, fake)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: scrape stopped:")
    assert "resume after" in lines[0]


def test_a_journal_line_cut_by_a_kill_does_not_swallow_the_next_record(fake, tmp_path):
    ids = make_track_ids(3)
    scraper = Scraper(OEmbedResolver.from_params(FAST, environ=fake.env()), tmp_path)
    scraper.run(rows(ids[:1]), workers=1, progress=False)
    with (tmp_path / "journal.jsonl").open("a") as f:
        f.write('{"track_id": "' + ids[1] + '", "status": "o')       # killed mid-write
    scraper.run(rows(ids), workers=1, progress=False)
    journal = read_journal(tmp_path / "journal.jsonl")
    assert sorted(journal) == sorted(ids) and all(r["status"] == "ok" for r in journal.values())
    assert fake.track_hits[ids[0]] == 1


# ---- Ctrl-C / SIGTERM ------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_at_once_keeps_finished_covers_and_waits_for_no_stuck_request(tmp_path, sig):
    ids = make_track_ids(12)
    stuck, fine = ids[:4], ids[4:]
    cwd = stage_dir(tmp_path, ids, workers=8, timeout=120)   # no client timeout will save us
    journal = cwd / "data" / "covers" / "journal.jsonl"
    with FakeSpotify(slow_seconds=90) as fake:
        for t in stuck:
            fake.fault(t, "image_slow")                       # answers after 90 s
        proc = run_stage(cwd, fake, wait=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and journal.read_text().count("\n") >= len(fine):
                break
            time.sleep(0.05)
        time.sleep(0.3)                                       # the stuck ones are in flight
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
        assert took < 10, f"took {took:.1f} s to stop"   # not the 90 s the stuck covers take
        assert proc.returncode == 130
        assert err.strip().splitlines()[-1].startswith("scrape_images: interrupted; finished "
                                                       "covers are kept")
        assert "Traceback" not in err and f"{len(fine)} new" in out and "abandoned" in out

        recs = read_journal(journal)
        assert sorted(recs) == sorted(fine) and all(r["status"] == "ok" for r in recs.values())
        lines = journal.read_text().splitlines()
        assert [json.loads(line)["track_id"] for line in lines] == sorted(fine)  # saved, sorted
        images = cwd / "data" / "covers" / "images"
        assert not list(images.glob(".*.tmp"))
        assert all(decodes(f) for f in images.glob("*.jpg"))

        fake.clear_faults()
        fake.reset_counts()
        code, out, err = run_stage(cwd, fake)                 # resumes; the lock was released
        assert code == 0, err
        assert f"{len(stuck)} new, {len(fine)} done before" in out
        assert sum(fake.image_hits[fake.image_id(t)] for t in fine) == 0


# ---- failures and the settings that made them -------------------------------------------------

def scraper_for(name, fake, tmp_path, env=None, **params):
    env = env or fake.env()
    settings = ScrapeSettings.from_params({**FAST, **params, "resolver": name}, environ=env)
    df = pd.DataFrame(rows(make_track_ids(1)))
    resolver = make_resolver(settings, df, {"source": "kaggle"}, environ=env)
    return Scraper(resolver, tmp_path, size=settings.size,
                   settings=resolver_settings(resolver.name, settings, {}, {}))


def test_failures_through_oembed_are_asked_again_through_the_api(fake, tmp_path):
    ids = make_track_ids(6)
    for t in ids[:2]:
        fake.fault(t, "404", times=1)                         # oEmbed does not know them
    scraper_for("oembed", fake, tmp_path).run(rows(ids), progress=False)
    assert [r["status"] for r in read_journal(tmp_path / "journal.jsonl").values()].count(
        "failed") == 2
    fake.reset_counts()
    scraper_for("oembed", fake, tmp_path).run(rows(ids), progress=False)
    assert fake.counts["oembed"] == 0                         # same settings: trusted
    recs = scraper_for("spotify_api", fake, tmp_path).run(rows(ids), progress=False)
    assert fake.counts["track"] == 2 and all(r["status"] == "ok" for r in recs)


def test_a_wrong_base_url_leaves_no_failure_behind_once_fixed(fake, tmp_path):
    ids = make_track_ids(5)
    wrong = {**fake.env(), "COVERPOP_OEMBED_URL": fake.url + "/wrong/oembed"}
    recs = scraper_for("oembed", fake, tmp_path, env=wrong).run(rows(ids), progress=False)
    assert all(r["error"].startswith("not_found") for r in recs)
    fake.reset_counts()
    recs = scraper_for("oembed", fake, tmp_path).run(rows(ids), progress=False)
    assert fake.counts["oembed"] == 5 and all(r["status"] == "ok" for r in recs)


def test_size_change_with_the_image_host_down_keeps_the_covers(tmp_path):
    ids = make_track_ids(8)
    with FakeSpotify() as fake:
        env = fake.env()
        scraper_for("oembed", fake, tmp_path, env=env).run(rows(ids), progress=False)
    before = {f.name: f.read_bytes() for f in (tmp_path / "images").glob("*.jpg")}
    assert len(before) == 8
    # Every Spotify host is down now. A larger size cannot be fetched: the covers stay.
    bigger = scraper_for("oembed", fake, tmp_path, env=env, size=640)
    recs = bigger.run(rows(ids), progress=False)
    assert all(r["status"] == "ok" and r["width"] == 300 for r in recs)
    assert {f.name: f.read_bytes() for f in (tmp_path / "images").glob("*.jpg")} == before
    assert "8 kept at their old size" in bigger.summary.line()
    # A smaller size is derived from what is stored, without the network.
    smaller = scraper_for("oembed", fake, tmp_path, env=env, size=64)
    recs = smaller.run(rows(ids), progress=False)
    assert all(r["status"] == "ok" and r["width"] == 64 and decodes(Path(r["file"]), 64)
               for r in recs)
    assert smaller.summary.resized == 8
