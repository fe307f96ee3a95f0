"""Kaggle download errors, checked offline: kagglehub's traffic goes to a proxy on 127.0.0.1."""

import hashlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import write_params

from coverpop.core.errors import CoverpopError
from coverpop.tracks.inputs import tracks_fingerprint
from coverpop.tracks.kaggle import fetch_kaggle_csv


@pytest.fixture
def dead_end_proxy(monkeypatch, tmp_path):
    """A proxy on 127.0.0.1 that records each request line and refuses it (as a dead network)."""
    seen = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                seen.append(conn.recv(4096).split(b"\r\n")[0].decode(errors="replace"))
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    proxy = f"http://127.0.0.1:{srv.getsockname()[1]}"
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, proxy)
    for var in ("NO_PROXY", "no_proxy", "KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY",
                "KAGGLE_API_ENVIRONMENT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-credentials"))
    yield seen
    srv.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_no_network_is_one_clear_error(dead_end_proxy, tmp_path):
    dest = tmp_path / "raw" / "tracks.csv"
    with pytest.raises(CoverpopError) as err:
        fetch_kaggle_csv("amitanshjoshi/spotify-1million-tracks/versions/1", dest)
    msg = str(err.value)
    assert "\n" not in msg and "cannot reach Kaggle" in msg and "data.source=csv" in msg
    assert any("kaggle.com" in line for line in dead_end_proxy)   # it really tried, via 127.0.0.1
    assert not dest.exists()


@pytest.mark.slow
def test_a_pinned_version_in_the_kagglehub_cache_needs_no_network(dead_end_proxy, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("COVERPOP_CACHE", str(tmp_path / "coverpop"))
    from kagglehub.cache import Cache
    from kagglehub.handle import parse_dataset_handle

    handle = "amitanshjoshi/spotify-1million-tracks/versions/1"
    h = parse_dataset_handle(handle)
    cached = Path(Cache().get_path(h, "spotify_data.csv"))      # where kagglehub keeps it
    cached.parent.mkdir(parents=True)
    cached.write_text(",artist_name,track_id,popularity\n0,a,x,1\n")
    Cache().mark_as_complete(h, "spotify_data.csv")
    dest = fetch_kaggle_csv(handle, tmp_path / "raw" / "tracks.csv")
    assert dest.read_text() == cached.read_text()
    # the inputs stage's fingerprint is the cached file's content, offline too
    got = tracks_fingerprint({"source": "kaggle", "kaggle": {"handle": handle,
                                                             "file": "spotify_data.csv"}})
    assert got["csv"]["sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert dead_end_proxy == []                                   # not one request went out


def test_handle_must_pin_a_version(tmp_path):
    with pytest.raises(CoverpopError, match="must pin a version"):
        fetch_kaggle_csv("amitanshjoshi/spotify-1million-tracks", tmp_path / "t.csv")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_inputs_stage_without_network_prints_one_line(dead_end_proxy, tmp_path):
    """The first stage to reach Kaggle is `inputs` (it fingerprints the file fetch_csv reads)."""
    repo = Path(__file__).resolve().parents[1]
    write_params(tmp_path, {"data": {"source": "kaggle", "kaggle": {
        "handle": "amitanshjoshi/spotify-1million-tracks/versions/1", "file": "spotify_data.csv"}}})
    proc = subprocess.run([sys.executable, str(repo / "stages" / "inputs.py"), "tracks.json",
                           "images.csv"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=100, env={**os.environ, "PYTHONPATH": str(repo / "src")})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Kaggle"), proc.stderr
    assert not (tmp_path / "tracks.json").exists()
