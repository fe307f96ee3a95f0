"""Issue 19, the network classes, against the local fakes (real HTTP on 127.0.0.1):
1. one whole-request deadline (and a byte-rate floor for long downloads) on every request of
   every stage, and Ctrl-C stops a stage that is downloading;
2. address checks on every hop of every request (token, API, oEmbed, CSV by URL, Kaggle's
   requests): a redirect to a loopback service that was not named never reaches it;
5. JSON decoded by its declared charset, UTF-8 with or without a BOM otherwise."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent))
from conftest import write_params  # noqa: E402
from fakes.sink import Sink  # noqa: E402
from fakes.spotify_server import FakeSpotify, make_track_ids  # noqa: E402
from scrape_params import scrape_params  # noqa: E402

from coverpop.core import net  # noqa: E402
from coverpop.core.errors import CoverpopError  # noqa: E402
from coverpop.covers.answers import parse_json  # noqa: E402
from coverpop.covers.oembed import OEmbedResolver  # noqa: E402
from coverpop.covers.spotify import SpotifyApiResolver  # noqa: E402
from coverpop.covers.types import CoverError  # noqa: E402
from coverpop.tracks import csv_url, inputs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAST = scrape_params(timeout=2, retries=1, backoff=0.01, workers=2)
CSV = b",artist_name,track_id,popularity\n" + b"".join(b"%d,a,x%d,1\n" % (i, i) for i in range(50))


@pytest.fixture
def fake():
    with FakeSpotify() as f:
        f.files["tracks.csv"] = CSV
        yield f


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


@pytest.fixture
def ids():
    return make_track_ids(4)


@pytest.fixture
def loopback_name(monkeypatch):
    """A host name that resolves to 127.0.0.1 here, whatever the machine's resolver holds (no
    /etc/hosts entry or DNS needed; .test is reserved, never a real name): its resolution is the
    test's input. Every lookup (the address check's and the connection's) goes through it."""
    name, real = "internal.test", socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.rstrip(".").lower() == name:
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return name


# The byte-rate window of the tests that wait it out: 1,000 bytes/s over it is 100 bytes, a
# trickle (1 byte per 0.2 s or 0.3 s) sends 0 or 1. Nothing in these tests must finish within it.
WINDOW = 0.1


def api(fake):
    return SpotifyApiResolver.from_params(FAST, environ=fake.env())


def oembed(fake):
    return OEmbedResolver.from_params(FAST, environ=fake.env())


# ---- 1. deadlines -------------------------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["trickle", "trickle_headers"])
def test_a_trickling_csv_server_is_cut_by_the_byte_rate_long_before_the_deadline(
        fake, tmp_path, kind):
    # 5 bytes/s forever: the 30-minute deadline would let it run; the rate floor does not.
    fake.file_faults["tracks.csv"] = kind
    start = time.monotonic()
    with pytest.raises(CoverpopError, match=r"the server sent less than 1,000 bytes/s for "
                                            rf"{WINDOW:g} s \(a stalled or trickling server\) "
                                            r"\(2 tries\)"):
        csv_url.fetch_csv_url(f"{fake.url}/files/tracks.csv", tmp_path / "t.csv", attempts=2,
                              backoff=0.01, window_s=WINDOW)
    assert time.monotonic() - start < 10                     # two short windows, not 1,800 s
    assert not list(tmp_path.iterdir())                       # no partial file, no temp file


@pytest.mark.timeout(30)
def test_the_inputs_stage_download_obeys_the_byte_rate(fake, tmp_path, monkeypatch):
    # The path of the reported hang: data.csv.path as a URL, fingerprinted by the inputs stage.
    monkeypatch.setenv("COVERPOP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(csv_url, "WINDOW_S", WINDOW)   # the stage's own limits, made short
    monkeypatch.setattr(csv_url, "BACKOFF_S", 0.01)
    fake.file_faults["tracks.csv"] = "trickle"
    start = time.monotonic()
    with pytest.raises(CoverpopError, match="trickling server") as err:
        inputs.tracks_fingerprint({"source": "csv", "csv": {"path": f"{fake.url}/files/tracks.csv"}})
    assert time.monotonic() - start < 20    # three short windows and the backoff, not 3 x 1,800 s
    assert "\n" not in str(err.value) and fake.counts["file"] == 3   # one request per try


@pytest.mark.slow
def test_a_slow_but_steady_download_is_not_cut(fake, tmp_path):
    # 1 byte / 0.2 s is 5 bytes/s: above a floor of 2 bytes/s over 1 s windows, so it completes.
    fake.files["small.csv"] = CSV[:40]
    fake.file_faults["small.csv"] = "trickle"
    fake.trickle_interval = 0.02
    got = csv_url.fetch_csv_url(f"{fake.url}/files/small.csv", tmp_path / "s.csv", attempts=1,
                                min_rate=2, window_s=1)
    assert got.read_bytes() == CSV[:40]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_ctrl_c_stops_the_inputs_stage_mid_download_within_two_seconds(fake, tmp_path):
    fake.file_faults["tracks.csv"] = "trickle"
    write_params(tmp_path, {"data": {"source": "csv",
                                     "csv": {"path": f"{fake.url}/files/tracks.csv"}}})
    proc = subprocess.Popen([sys.executable, str(REPO / "stages" / "inputs.py"), "tracks.json",
                             "images.csv"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src"),
                                 "COVERPOP_CACHE": str(tmp_path / "cache")})
    deadline = time.monotonic() + 30
    while fake.counts["file"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)                                        # the download is trickling now
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - start < 2.5
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["interrupted: finished work is kept; run the stage again "
                                        "to resume"]
    assert not (tmp_path / "tracks.json").exists()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]   # no partial file


@pytest.mark.timeout(30)
def test_requests_of_third_party_code_obey_the_guard(fake, sink):
    # kagglehub calls requests.get itself; route_requests() puts its sessions on our connections.
    fake.file_faults["tracks.csv"] = "trickle"
    start = time.monotonic()
    with net.route_requests(), net.deadline(30, net.Addresses.named([fake.url]),
                                            min_rate=1000, window=WINDOW) as guard:
        with pytest.raises(requests.RequestException):
            requests.get(f"{fake.url}/files/tracks.csv", timeout=30).content
    assert guard.why == "slow" and time.monotonic() - start < 10   # the window, not 30 s
    with net.route_requests(), net.deadline(5, net.Addresses.named([fake.url])) as guard:
        with pytest.raises(net.Refused):
            requests.get(sink.url, timeout=5)              # not named: loopback is refused
    assert sink.connections == 0
    assert requests.sessions.HTTPAdapter is requests.adapters.HTTPAdapter   # restored after


@pytest.mark.timeout(60)
def test_a_trickling_kaggle_download_is_cut_by_the_byte_rate(tmp_path, monkeypatch):
    """kagglehub's traffic goes to a proxy on 127.0.0.1 that answers a byte at a time."""
    from coverpop.tracks.kaggle import fetch_kaggle_csv

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    def trickle(conn):
        with conn:
            try:
                conn.recv(4096)
                for byte in b"HTTP/1.1 200 Connection established\r\n\r\n":
                    conn.sendall(bytes([byte]))
                    time.sleep(0.3)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    proxy = f"http://127.0.0.1:{srv.getsockname()[1]}"
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, proxy)
    for var in ("NO_PROXY", "no_proxy", "KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-credentials"))
    monkeypatch.setattr(csv_url, "WINDOW_S", WINDOW)   # a byte per 0.3 s
    start = time.monotonic()
    with pytest.raises(CoverpopError, match="trickling server") as err:
        fetch_kaggle_csv("amitanshjoshi/spotify-1million-tracks/versions/1", tmp_path / "t.csv")
    assert time.monotonic() - start < 10 and "\n" not in str(err.value)
    srv.close()


# ---- 2. every hop of every request: no redirect to an internal address not named ---------------
@pytest.mark.timeout(30)
def test_an_oembed_redirect_to_a_loopback_service_is_never_followed(fake, sink, ids):
    fake.redirect_to = f"{sink.url}/latest/meta-data/iam"
    fake.fault(ids[0], "redirect_to")
    with pytest.raises(CoverError) as err:
        oembed(fake).resolve({"track_id": ids[0]})
    assert err.value.reason == "private_address" and err.value.retryable
    assert f"127.0.0.1:{sink.port}" in str(err.value) and "was not named" in str(err.value)
    assert sink.connections == 0 and sink.received == b""


@pytest.mark.timeout(30)
def test_a_token_endpoint_redirect_to_a_loopback_service_stops_in_one_line(fake, sink, ids):
    fake.redirect_to = f"{sink.url}/token"
    fake.token_fault("redirect_to")
    with pytest.raises(CoverpopError) as err:
        api(fake).prepare(ids)
    msg = str(err.value)
    assert msg.startswith("cannot get a Spotify access token:") and "\n" not in msg
    assert f"refused to connect to 127.0.0.1:{sink.port}" in msg
    assert sink.connections == 0     # the client credentials never left for it


@pytest.mark.timeout(30)
def test_an_api_redirect_to_a_name_that_resolves_to_loopback_is_refused(fake, sink, ids,
                                                                         loopback_name):
    fake.redirect_to = f"http://{loopback_name}:{sink.port}/v1/tracks/{ids[0]}"
    fake.fault(ids[0], "redirect_to")
    r = api(fake)
    with pytest.raises(CoverError) as err:
        r.resolve({"track_id": ids[0]})
    assert err.value.reason == "private_address" and sink.connections == 0
    assert r.resolve({"track_id": ids[1]}).url       # the named API itself is still fine


@pytest.mark.timeout(30)
def test_a_cover_redirect_to_a_loopback_port_not_allowed_is_refused(fake, sink, ids):
    # covers obey scrape.allowed_hosts: a host named there (127.0.0.1) may be anywhere, so here
    # the list names the fake's CDN by pattern only.
    env = {**fake.env(), "COVERPOP_ALLOWED_HOSTS": "127.0.0.*"}
    fake.redirect_to = f"{sink.url}/image"
    fake.fault(ids[0], "image_redirect_to")
    r = SpotifyApiResolver.from_params(FAST, environ=env)
    with pytest.raises(CoverError) as err:
        r.fetch(r.resolve({"track_id": ids[0]}))
    assert err.value.reason == "private_address" and sink.connections == 0


@pytest.mark.timeout(30)
def test_a_csv_url_redirect_to_a_loopback_service_is_refused(fake, sink, tmp_path):
    fake.redirect_to = f"{sink.url}/internal.csv"
    fake.file_faults["tracks.csv"] = "redirect_to"
    with pytest.raises(CoverpopError, match=r"cannot download .*tracks.csv: refused to connect "
                                            rf"to 127.0.0.1:{sink.port}") as err:
        csv_url.fetch_csv_url(f"{fake.url}/files/tracks.csv", tmp_path / "t.csv", attempts=1)
    assert "\n" not in str(err.value) and sink.connections == 0
    assert not list(tmp_path.iterdir())


def test_a_redirect_within_the_named_origin_is_followed(fake, tmp_path):
    fake.files["moved.csv"] = CSV
    fake.redirect_to = f"{fake.url}/files/moved.csv"
    fake.file_faults["tracks.csv"] = "redirect_to"
    got = csv_url.fetch_csv_url(f"{fake.url}/files/tracks.csv", tmp_path / "t.csv", attempts=1)
    assert got.read_bytes() == CSV


def test_address_rules(loopback_name):
    named = net.Addresses.named(["http://127.0.0.1:8080/v1", "https://api.example.org/"],
                                hosts=["mirror.lan"])
    assert named.trusted("127.0.0.1", 8080) and not named.trusted("127.0.0.1", 8081)
    assert named.trusted("api.example.org", 443) and named.trusted("MIRROR.lan", 1234)
    named.check_peer("127.0.0.1", 8080, "127.0.0.1")          # named: may be anywhere
    named.check_peer("cdn.example.org", 443, "151.101.2.248")  # public: fine
    for ip in ("127.0.0.2", "10.0.0.1", "169.254.169.254", "192.168.1.1", "::1", "fd00::1",
               "100.64.0.1", "::ffff:127.0.0.1"):
        with pytest.raises(net.Refused):
            named.check_peer("elsewhere", 80, ip)
    with pytest.raises(net.Refused):
        named.check_host(loopback_name, 8081)                  # resolved before connecting


# ---- 5. charsets ----------------------------------------------------------------------------------
@pytest.mark.parametrize("charset", ["latin1", "bom"])
def test_api_and_oembed_answers_in_their_declared_charset(fake, ids, charset):
    fake.fault(ids[0], charset)
    ref = api(fake).resolve({"track_id": ids[0]})
    assert ref.album_name.startswith("Café ")
    assert oembed(fake).resolve({"track_id": ids[0]}).url      # oEmbed answers the same way


@pytest.mark.parametrize("charset", ["latin1", "bom"])
def test_a_token_answer_in_its_declared_charset(fake, ids, charset):
    fake.token_fault(charset)
    r = api(fake)
    r.prepare(ids)                                             # no "answered not JSON"
    assert r.resolve({"track_id": ids[0]}).url


@pytest.mark.parametrize("body,ctype,want", [
    ('{"a": "Café"}'.encode("latin-1"), "application/json; charset=iso-8859-1", "Café"),
    ('{"a": "Café"}'.encode("latin-1"), "application/json; charset=\"ISO-8859-1\"", "Café"),
    ('{"a": "Café"}'.encode("cp1252"), "application/json;charset=windows-1252", "Café"),
    (b'\xef\xbb\xbf{"a": "Caf\xc3\xa9"}', "application/json", "Café"),
    (b'\xef\xbb\xbf{"a": "Caf\xc3\xa9"}', "application/json; charset=utf-8", "Café"),
    ('{"a": "Café"}'.encode("utf-16"), "application/json", "Café"),
    (b'{"a": "Caf\xc3\xa9"}', "application/json; charset=no-such-codec", "Café"),
])
def test_json_is_decoded_by_its_declared_charset(body, ctype, want):
    assert parse_json(body, ctype, "x")["a"] == want


def test_json_that_is_not_in_its_charset_says_so():
    with pytest.raises(CoverError, match="text that is not UTF-8 \\(and declares no charset\\)"):
        parse_json('{"a": "Café"}'.encode("latin-1"), "application/json", "x")
    with pytest.raises(CoverError, match="text that is not the utf-8 it declares"):
        parse_json('{"a": "Café"}'.encode("latin-1"), "application/json; charset=utf-8", "x")
    with pytest.raises(CoverError, match="an HTML page, not JSON"):
        parse_json("<html>Café</html>".encode("latin-1"), "text/html", "x")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_ctrl_c_stops_a_stage_busy_in_c_code_within_two_seconds(tmp_path):
    # pbkdf2 with 10**8 rounds: tens of seconds in C without a bytecode boundary, the GIL released
    script = tmp_path / "stage.py"
    script.write_text("import hashlib, sys\nfrom coverpop.core.errors import run_stage\n"
                      "def main():\n    print('busy', flush=True)\n"
                      "    hashlib.pbkdf2_hmac('sha256', b'x', b'y', 10**8)\n"
                      "run_stage(main)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.stdout.readline() == "busy\n"
    time.sleep(0.3)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 2.5 and proc.returncode == 130
    assert err.strip().splitlines() == ["interrupted: finished work is kept; run the stage again "
                                        "to resume"]


def test_a_request_finishing_as_its_deadline_falls_leaves_the_watchdog_free():
    """The race CI once hung on: the request finished (guard.finish()) just as the watchdog
    found its deadline passed. fire() then does nothing; the watchdog must drop the guard, not
    look at it again and again while holding the lock that remove() waits for."""
    from coverpop.core.net import Guard, Watchdog

    guard = Guard(0.01)
    guard.finish()                            # finished, not yet removed: the window of the race
    time.sleep(0.02)
    assert guard.expire(time.monotonic()) is True and not guard.fired
    watchdog = Watchdog()
    late = Guard(0.01)
    watchdog.add(late)
    late.finish()
    time.sleep(0.05)                          # the watchdog looks at the due, finished guard
    done = threading.Event()
    threading.Thread(target=lambda: (watchdog.remove(late), done.set()), daemon=True).start()
    assert done.wait(5), "remove() blocked: the watchdog spins on a finished guard"
