"""The `inputs` stage's fingerprints: content only, cheap to repeat, and a CSV by URL downloaded
once and then checked with conditional requests (a real HTTP server on 127.0.0.1)."""

import hashlib
import os
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from coverpop.core.errors import CoverpopError
from coverpop.core.fingerprint import HashCache, folder_fingerprint
from coverpop.tracks import inputs
from coverpop.tracks.sources import fetch_tracks


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COVERPOP_CACHE", str(tmp_path / "cache"))


def age(path, seconds=60):
    """Backdate a file: a file younger than the filesystem's timestamp granularity is re-read
    anyway (the racy case), and these tests check the reuse of older ones."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_folder_fingerprint_reads_only_changed_files(tmp_path):
    root = tmp_path / "covers"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(b"first picture")
    (root / "sub" / "b.png").write_bytes(b"second")
    (root / ".DS_Store").write_bytes(b"finder junk")
    for f in (root / "a.jpg", root / "sub" / "b.png"):
        age(f)
    rows, read = folder_fingerprint(root)
    assert rows == [("a.jpg", 13, sha(b"first picture")), ("sub/b.png", 6, sha(b"second"))]
    assert read == 2
    assert folder_fingerprint(root) == (rows, 0)          # nothing read the second time

    (root / "a.jpg").write_bytes(b"other picture")        # same name, same size, new content
    rows2, read = folder_fingerprint(root)
    assert read == 1 and rows2[0] == ("a.jpg", 13, sha(b"other picture")) and rows2[1] == rows[1]

    age(root / "a.jpg")
    folder_fingerprint(root)
    os.utime(root / "a.jpg")                              # touched: read again, same content
    assert folder_fingerprint(root)[0] == rows2


def test_a_fresh_file_is_read_again_however_its_mtime_looks(tmp_path):
    """A file written just now could be rewritten within the same timestamp tick: its hash is
    not trusted on size and mtime alone (git's "racy" entries)."""
    (tmp_path / "x").write_bytes(b"12345")
    cache = HashCache(tmp_path)
    cache.sha256("x")
    cache.save()
    again = HashCache(tmp_path)
    again.sha256("x")
    assert again.hashed == 1


def local_params(tmp_path, csv_text="track_id,popularity,image\nt1,50,a.jpg\n"):
    (tmp_path / "imgs").mkdir(exist_ok=True)
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"jpeg bytes")
    (tmp_path / "mine.csv").write_text(csv_text)
    return {"source": "local", "local": {"csv": str(tmp_path / "mine.csv"),
                                         "images": str(tmp_path / "imgs")}}


def test_fingerprint_files_hold_content_only(tmp_path):
    data = local_params(tmp_path)
    out = tmp_path / "out"
    line = inputs.write_fingerprints(data, out / "tracks.json", out / "images.csv")
    assert "1 image files" in line
    first = ((out / "tracks.json").read_bytes(), (out / "images.csv").read_bytes())
    assert str(tmp_path) not in first[0].decode() + first[1].decode()   # no paths, no mtimes
    os.utime(tmp_path / "mine.csv", ns=(1, 1))
    os.utime(tmp_path / "imgs" / "a.jpg", ns=(1, 1))
    inputs.write_fingerprints(data, out / "tracks.json", out / "images.csv")
    assert ((out / "tracks.json").read_bytes(), (out / "images.csv").read_bytes()) == first
    assert inputs.read_image_hashes(out / "images.csv") == {"a.jpg": sha(b"jpeg bytes")}

    (tmp_path / "mine.csv").write_text("track_id,popularity,image\nt1,51,a.jpg\n")
    inputs.write_fingerprints(data, out / "tracks.json", out / "images.csv")
    assert (out / "tracks.json").read_bytes() != first[0]
    assert (out / "images.csv").read_bytes() == first[1]


def test_demo_has_no_external_input(tmp_path):
    inputs.write_fingerprints({"source": "demo"}, tmp_path / "t.json", tmp_path / "i.csv")
    assert inputs.read_tracks_fingerprint(tmp_path / "t.json") == {"source": "demo"}
    assert inputs.read_image_hashes(tmp_path / "i.csv") == {}


@pytest.mark.parametrize("change, message", [
    ({"csv": "missing.csv"}, "data.local.csv='.*missing.csv': file not found"),
    ({"images": "nowhere"}, "data.local.images='.*nowhere' is not a folder"),
    ({"csv": ""}, "data.local.csv must be set"),
])
def test_bad_local_paths_are_one_line(tmp_path, change, message):
    data = local_params(tmp_path)
    data["local"].update({k: (str(tmp_path / v) if v else "") for k, v in change.items()})
    with pytest.raises(CoverpopError, match=message) as err:
        inputs.tracks_fingerprint(data)
    assert "\n" not in str(err.value)


class CountingHandler(SimpleHTTPRequestHandler):
    """The standard library's file server (Last-Modified, 304 on If-Modified-Since), counting
    the answers it gives."""

    statuses: list

    def send_response(self, code, message=None):
        self.statuses.append(code)
        super().send_response(code, message)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    statuses: list = []
    handler = partial(type("H", (CountingHandler,), {"statuses": statuses}), directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root, statuses
    httpd.shutdown()
    httpd.server_close()


def test_csv_by_url_is_downloaded_once_then_checked_with_304s(server, tmp_path):
    from fakes.kaggle_csv import kaggle_like_csv

    base, root, statuses = server
    kaggle_like_csv(root / "spotify.csv", rows=50)
    age(root / "spotify.csv")
    url = f"{base}/spotify.csv"
    data = {"source": "csv", "csv": {"path": url}}

    first = inputs.tracks_fingerprint(data)
    assert first["csv"]["sha256"] == sha((root / "spotify.csv").read_bytes())
    assert statuses == [200]             # one request: the download itself (no probe first)
    statuses.clear()
    assert inputs.tracks_fingerprint(data) == first
    assert statuses == [304]             # unchanged: one round trip, nothing downloaded

    # fetch_csv reads the download the fingerprint made: no request at all
    statuses.clear()
    assert len(fetch_tracks(data, first)) == 50 and statuses == []

    kaggle_like_csv(root / "spotify.csv", rows=60, seed=1)   # edited in place, newer mtime
    statuses.clear()
    changed = inputs.tracks_fingerprint(data)
    assert changed["csv"]["sha256"] == sha((root / "spotify.csv").read_bytes()) != \
        first["csv"]["sha256"]
    assert 200 in statuses
    assert len(fetch_tracks(data, changed)) == 60


def test_csv_by_url_missing_is_one_line(server):
    base, _, _ = server
    with pytest.raises(CoverpopError, match="cannot download .*nope.csv: HTTP 404") as err:
        inputs.tracks_fingerprint({"source": "csv", "csv": {"path": f"{base}/nope.csv"}})
    assert "\n" not in str(err.value)
