"""Whole-file downloads (the tracks CSV) from a local HTTP server."""

import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from coverpop.core.errors import CoverpopError
from coverpop.tracks.csv_url import fetch_csv_url


@pytest.fixture
def file_server(tmp_path):
    (tmp_path / "spotify_data.csv").write_text(",artist_name,track_id,popularity\n0,a,x,1\n")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


def test_download_file_checks_sha256(file_server, tmp_path):
    url, root = file_server
    want = hashlib.sha256((root / "spotify_data.csv").read_bytes()).hexdigest()
    dest = tmp_path / "out" / "tracks.csv"
    fetch_csv_url(f"{url}/spotify_data.csv", dest, sha256=want)
    assert dest.read_bytes() == (root / "spotify_data.csv").read_bytes()
    with pytest.raises(CoverpopError, match="sha256 is .* but data.csv.sha256 expects 00"):
        fetch_csv_url(f"{url}/spotify_data.csv", tmp_path / "bad.csv", sha256="00" * 32)
    assert not (tmp_path / "bad.csv").exists()


def test_download_file_errors_are_one_line(file_server, tmp_path):
    url, _ = file_server
    with pytest.raises(CoverpopError, match=r"cannot download .*missing.csv: HTTP 404") as err:
        fetch_csv_url(f"{url}/missing.csv", tmp_path / "x.csv")
    assert "\n" not in str(err.value)
    assert not list(tmp_path.glob(".x.csv*"))   # no temp file left behind


def test_unreachable_server_is_retried_then_one_line(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                      # nothing listens there now
    with pytest.raises(CoverpopError, match="cannot connect to the server \\(connection refused\\) \\(2 tries\\)") as err:
        fetch_csv_url(f"http://127.0.0.1:{port}/x.csv", tmp_path / "x.csv", attempts=2,
                      backoff=0.01)
    assert "\n" not in str(err.value)
