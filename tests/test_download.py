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
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                     daemon=True).start()   # shutdown() waits one poll: 0.5 s by default
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


def test_unreachable_server_is_retried_then_one_line(tmp_path, refused_port):
    with pytest.raises(CoverpopError, match=r"cannot connect to the server \(connection refused\) "
                                            r"\(2 tries\)") as err:
        fetch_csv_url(f"http://127.0.0.1:{refused_port}/x.csv", tmp_path / "x.csv", attempts=2,
                      backoff=0.01)
    assert "\n" not in str(err.value)


# ---- a hostile server (the fake's /files/ route) -------------------------------------------------
CSV = b",artist_name,track_id,popularity\n" + b"".join(b"%d,a,x%d,1\n" % (i, i) for i in range(300))


@pytest.fixture
def csv_fake():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from fakes.spotify_server import FakeSpotify

    with FakeSpotify() as fake:
        fake.files["tracks.csv"] = CSV
        fake.bomb_mb = 20
        yield fake


def fetch(fake, tmp_path, **kw):
    return fetch_csv_url(f"{fake.url}/files/tracks.csv", tmp_path / "t.csv",
                         **{"attempts": 2, "backoff": 0.01, **kw})


@pytest.mark.slow
@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["trickle", "trickle_headers"])
def test_a_trickling_csv_server_is_given_up_on_at_the_deadline(csv_fake, tmp_path, kind):
    import time
    csv_fake.file_faults["tracks.csv"] = kind
    start = time.monotonic()
    # a deadline of 0.3 s: far above a whole answer from the fake (ms), far below the trickle's
    # (1 byte per 0.2 s: minutes)
    with pytest.raises(CoverpopError, match=r"no complete download within 0.3 s \(2 tries\)"):
        fetch(csv_fake, tmp_path, deadline_s=0.3)
    assert time.monotonic() - start < 2 * 0.3 + 4   # 2 tries of 0.3 s, with slack for a load
    assert not list(tmp_path.iterdir())           # no partial file, no temp file


@pytest.mark.parametrize("kind,message", [
    ("cut", r"the answer from the server was cut short \(2 tries\)"),
    ("redirect_loop", "redirects in a loop"),
    ("redirect_chain", "more than 5 redirects"),
    ("redirect_file", "redirects to a URL that is not http"),
    ("huge_declared", "announces 400,000,000,000 bytes"),
    ("bomb", r"more than 1,000,000 bytes \(after decompression\)"),
    ("520", r"HTTP 520 \(2 tries\)"),
])
def test_hostile_csv_downloads_fail_in_one_line(csv_fake, tmp_path, kind, message):
    csv_fake.file_faults["tracks.csv"] = kind
    with pytest.raises(CoverpopError, match=message) as err:
        fetch(csv_fake, tmp_path, max_bytes=1_000_000)
    assert "\n" not in str(err.value) and "cannot connect" not in str(err.value)
    assert not list(tmp_path.iterdir())


def test_the_csv_download_works_through_the_same_machinery(csv_fake, tmp_path):
    assert fetch(csv_fake, tmp_path).read_bytes() == CSV


def test_credentials_in_the_csv_url_are_never_shown(csv_fake, tmp_path):
    host = csv_fake.url.removeprefix("http://")
    url = f"http://reader:PASSWORD123@{host}/files/nothing.csv?X-Amz-Signature=SIGN456&a=1"
    with pytest.raises(CoverpopError) as err:
        fetch_csv_url(url, tmp_path / "t.csv", attempts=1)
    assert "HTTP 404" in str(err.value) and "a=1" in str(err.value)
    assert "PASSWORD123" not in str(err.value) and "SIGN456" not in str(err.value)
