"""fetch_csv sources that reach out: a CSV by http(s) URL (sha256 checked), and a full-size dry run."""

import hashlib
import os
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import (
    BaseHTTPRequestHandler,
    SimpleHTTPRequestHandler,
    ThreadingHTTPServer,
)
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import write_params  # noqa: E402
from fakes.kaggle_csv import kaggle_like_csv  # noqa: E402

from coverpop.core.errors import CoverpopError  # noqa: E402
from coverpop.tracks.selection import popularity_bins, select_tracks  # noqa: E402
from coverpop.tracks.inputs import tracks_fingerprint  # noqa: E402
from coverpop.tracks.sources import fetch_tracks  # noqa: E402
from coverpop.tracks.tables import KAGGLE_COLUMNS, duplicates_note, read_tracks  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def served_csv(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    kaggle_like_csv(root / "spotify_data.csv", rows=2000)
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                     daemon=True).start()   # shutdown() waits one poll: 0.5 s by default
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


# ---- what a URL that is not a CSV, a killed download and repeated ids leave behind ------------

class _Slow(BaseHTTPRequestHandler):
    """Serves /tracks.csv slowly (a byte every 0.2 s) and /portal.csv as an HTML login page."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/portal.csv":
            body = b"<!DOCTYPE html><html><body>Sign in to the Wi-Fi</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass


@pytest.fixture
def slow_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                     daemon=True).start()   # shutdown() waits one poll: 0.5 s by default
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_url_that_is_not_a_csv_is_named_by_its_url(slow_server):
    url = slow_server + "/portal.csv"
    with pytest.raises(CoverpopError) as err:
        fetch_tracks({"source": "csv", "csv": {"path": url}})
    assert str(err.value).startswith(f"{url}: missing column 'track_id'")
    assert "coverpop-csv" not in str(err.value) and "\n" not in str(err.value)


def _stage(cwd, env, wait=True):
    """The inputs stage (it downloads a CSV by URL), then fetch_csv, as dvc.yaml runs them;
    wait=False: the inputs stage alone, started."""
    inputs = [sys.executable, str(REPO / "stages/inputs.py"), "tracks.json", "images.csv"]
    if not wait:
        return subprocess.Popen(inputs, cwd=cwd, env=env)
    for cmd in (inputs, [sys.executable, str(REPO / "stages/fetch_csv.py"), "tracks.json",
                         "tracks.csv"]):
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode:
            break
    return proc


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_download_killed_midway_is_cleaned_by_the_next_run(tmp_path, slow_server, served_csv):
    downloads = tmp_path / "cache" / "downloads"
    env = {**os.environ, "COVERPOP_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(REPO / "src")}
    write_params(tmp_path, {"data": {"source": "csv",
                                     "csv": {"path": slow_server + "/tracks.csv", "sha256": ""}}})
    proc = _stage(tmp_path, env, wait=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(downloads.glob(f".*.{proc.pid}.tmp")):
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    assert [p.name.split(".")[-2] for p in downloads.glob(".*.tmp")] == [str(proc.pid)]  # left
    url, sha, _ = served_csv
    write_params(tmp_path, {"data": {"source": "csv", "csv": {"path": url, "sha256": sha}}})
    done = _stage(tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert list(downloads.glob(".*.tmp")) == []
    assert len(pd.read_csv(tmp_path / "tracks.csv")) == 2000


def test_kaggle_schema_csv_with_repeated_ids_is_deduplicated_and_counted(tmp_path):
    kaggle_like_csv(tmp_path / "k.csv", rows=50)
    df = pd.read_csv(tmp_path / "k.csv", index_col=0, dtype={"track_id": str})
    twin = df.iloc[[3]].assign(genre="other-genre")            # same track under another genre
    df = pd.concat([df, df.iloc[[1, 2]], twin], ignore_index=True)
    df.to_csv(tmp_path / "k.csv", lineterminator="\n")
    data = {"source": "csv", "csv": {"path": str(tmp_path / "k.csv"), "sha256": ""}}
    # what the inputs and fetch_csv stages do with it (stages/fetch_csv.py prints the note)
    out = fetch_tracks(data, tracks_fingerprint(data)).reset_index(drop=True)
    assert duplicates_note(out) == ("dropped 3 rows with a repeated track_id: 2 identical to an "
                                    "earlier row, 1 conflicting (1 track ids; the first row of "
                                    "each kept)")
    assert len(out) == 50 and out["track_id"].is_unique
    assert out.loc[3, "genre"] == df.loc[3, "genre"] != "other-genre"   # the first row kept


def test_a_local_csv_with_repeated_ids_stays_an_error(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "mine.csv").write_text("track_id,popularity,image\na,1,x.jpg\na,2,y.jpg\n")
    with pytest.raises(CoverpopError, match=r"mine.csv: column 'track_id' at line 3: duplicate"):
        fetch_tracks({"source": "local", "local": {"csv": str(tmp_path / "mine.csv"),
                                                   "images": str(tmp_path / "img")}})
