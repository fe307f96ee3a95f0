"""The real-data path through DVC: `dvc repro scrape_images` with a Kaggle-schema CSV fetched
by URL (sha256 pinned) and covers from oEmbed (no credentials), against local stand-ins."""

import hashlib
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from conftest import copy_built, make_repo_copy, run

sys.path.insert(0, str(Path(__file__).parent))
from fakes.kaggle_csv import kaggle_like_csv  # noqa: E402
from fakes.spotify_server import FakeSpotify  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def csv_url(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    kaggle_like_csv(root / "spotify_data.csv", rows=400, seed=3)
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sha = hashlib.sha256((root / "spotify_data.csv").read_bytes()).hexdigest()
    yield f"http://127.0.0.1:{server.server_address[1]}/spotify_data.csv", sha
    server.shutdown()
    server.server_close()


def test_dvc_repro_with_csv_by_url_and_oembed_covers(tmp_path, csv_url, monkeypatch):
    url, sha = csv_url
    for var in ("SPOTIPY_CLIENT_ID", "SPOTIPY_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)        # auto -> oembed
    with FakeSpotify(latency=(0.0, 0.01)) as fake:
        monkeypatch.setenv("COVERPOP_OEMBED_URL", fake.oembed_url)
        monkeypatch.setenv("COVERPOP_ALLOWED_HOSTS", "127.0.0.1")   # the fake CDN, by name
        repo = make_repo_copy(tmp_path / "repo", {
            "data.source": "csv", "data.csv.path": url, "data.csv.sha256": sha,
            "scrape.resolver": "auto", "scrape.workers": 8, "scrape.retries": 1,
            "scrape.min_success": 0.9})
        proc = run(["dvc", "repro", "scrape_images"], repo)
        assert "scrape_images (oembed): 200 new, 0 done before, 0 failed" in proc.stdout
        manifest = pd.read_csv(repo / "data/manifest.csv")
        selected = pd.read_csv(repo / "data/selected.csv", dtype={"track_id": str})
        assert len(manifest) == 200 and (manifest["status"] == "ok").all()
        assert sorted(manifest["cover_id"]) == sorted(fake.image_id(t) for t in selected["track_id"])
        assert fake.counts["oembed"] == 200 and fake.counts["image"] == 200

        fake.reset_counts()
        assert "Stage 'scrape_images' didn't change" in run(["dvc", "repro", "scrape_images"], repo).stdout
        assert fake.counts["oembed"] == 0


def test_demo_scraped_from_scratch_twice_gets_the_same_dvc_hash(built_pristine, built_again,
                                                              tmp_path):
    """Issue 10: two from-scratch scrapes with different worker counts (the session's two demo
    builds: conftest.built_pristine and built_again, each with an empty cover cache) record the
    same covers hash in dvc.lock; a re-run with nothing new keeps it."""
    import yaml

    def covers_hash(repo):
        lock = yaml.safe_load((repo / "dvc.lock").read_text())
        return {o["path"]: o["md5"] for o in lock["stages"]["scrape_images"]["outs"]}

    def workers(repo):
        return yaml.safe_load((repo / "params.yaml").read_text())["scrape"]["workers"]

    assert workers(built_pristine) != workers(built_again)
    assert covers_hash(built_again) == covers_hash(built_pristine)
    repo = copy_built(built_again, tmp_path / "repo")
    proc = run(["dvc", "repro", "-f", "-s", "scrape_images"], repo)   # runs, finds nothing new
    assert "0 new, 200 done before, 0 failed" in proc.stdout
    assert covers_hash(repo) == covers_hash(built_pristine)
