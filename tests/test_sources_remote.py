"""fetch_csv sources that reach out: a CSV by http(s) URL (sha256 checked), and a full-size dry run."""

import hashlib
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fakes.kaggle_csv import kaggle_like_csv  # noqa: E402

from coverpop.core.errors import CoverpopError  # noqa: E402
from coverpop.tracks.selection import popularity_bins, select_tracks  # noqa: E402
from coverpop.tracks.sources import fetch_tracks  # noqa: E402
from coverpop.tracks.tables import KAGGLE_COLUMNS, read_tracks  # noqa: E402


@pytest.fixture(scope="module")
def served_csv(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    kaggle_like_csv(root / "spotify_data.csv", rows=2000)
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sha = hashlib.sha256((root / "spotify_data.csv").read_bytes()).hexdigest()
    yield f"http://127.0.0.1:{server.server_address[1]}/spotify_data.csv", sha, root
    server.shutdown()
    server.server_close()


def test_csv_by_url_with_sha256(served_csv):
    url, sha, _ = served_csv
    df = fetch_tracks({"source": "csv", "csv": {"path": url, "sha256": sha}})
    assert len(df) == 2000 and list(df.columns) == KAGGLE_COLUMNS


def test_csv_by_url_with_wrong_sha256_is_refused(served_csv):
    url, _, _ = served_csv
    with pytest.raises(CoverpopError, match="sha256 is .* but data.csv.sha256 expects"):
        fetch_tracks({"source": "csv", "csv": {"path": url, "sha256": "ab" * 32}})


def test_csv_by_url_that_is_missing_is_one_line(served_csv):
    url, _, _ = served_csv
    with pytest.raises(CoverpopError, match="cannot download .*nope.csv") as err:
        fetch_tracks({"source": "csv", "csv": {"path": url.replace("spotify_data", "nope")}})
    assert "\n" not in str(err.value)


def test_local_csv_sha256_is_checked_too(served_csv):
    _, sha, root = served_csv
    path = str(root / "spotify_data.csv")
    assert len(fetch_tracks({"source": "csv", "csv": {"path": path, "sha256": sha}})) == 2000
    with pytest.raises(CoverpopError, match="data.csv.sha256"):
        fetch_tracks({"source": "csv", "csv": {"path": path, "sha256": "00" * 32}})


@pytest.mark.slow
def test_full_size_kaggle_table_dry_run(tmp_path):
    """1,159,764 rows, the Kaggle file's size: read, validate and select N (timed in bench/)."""
    path = tmp_path / "spotify_data.csv"
    kaggle_like_csv(path, rows=1_159_764)
    tracks = read_tracks(path)
    assert len(tracks) == 1_159_764
    chosen = select_tracks(tracks, n=5000, strategy="stratified", seed=0)
    assert len(chosen) == 5000 and chosen["track_id"].is_unique
    assert chosen["track_id"].isin(tracks["track_id"]).all()
    share_all = np.bincount(popularity_bins(tracks["popularity"], 10), minlength=10) / len(tracks)
    share_sel = np.bincount(popularity_bins(chosen["popularity"], 10), minlength=10) / 5000
    assert np.abs(share_all - share_sel).max() < 0.01
