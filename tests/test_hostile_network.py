"""A hostile network, class by class (issue 11), against the local fake (real HTTP on 127.0.0.1,
the real requests/urllib3 stack): hangs, start-up failures, malformed answers, misclassified
failures, body bombs and where covers may come from. Every test is bounded in wall time."""

import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fakes.spotify_server import FakeSpotify, make_track_ids  # noqa: E402
from scrape_params import scrape_params  # noqa: E402

from coverpop.core.errors import CoverpopError  # noqa: E402
from coverpop.covers import http  # noqa: E402
from coverpop.covers.engine import Scraper  # noqa: E402
from coverpop.covers.hosts import HostPolicy, is_public  # noqa: E402
from coverpop.covers.oembed import OEmbedResolver  # noqa: E402
from coverpop.covers.spotify import SpotifyApiResolver  # noqa: E402
from coverpop.covers.types import CoverError, StopScrape  # noqa: E402
from coverpop.covers.url_column import UrlResolver  # noqa: E402

FAST = scrape_params(timeout=1, retries=1, backoff=0.01, workers=4)
# The deadline of the tests that wait it out: far above a normal answer from the fake (a few ms;
# a slow one is retried), far below a trickle (1 byte per 0.2 s: >= 40 s for the smallest answer).
DEADLINE = 0.3


@pytest.fixture
def fake():
    with FakeSpotify(slow_seconds=5) as f:
        yield f


@pytest.fixture
def ids():
    return make_track_ids(8)


def api(fake, **params):
    return SpotifyApiResolver.from_params({**FAST, **params}, environ=fake.env())


def oembed(fake, **params):
    return OEmbedResolver.from_params({**FAST, **params}, environ=fake.env())


def url_resolver(fake, **params):
    return UrlResolver.from_params({**FAST, **params}, environ=fake.env())


def reason_of(call) -> CoverError:
    with pytest.raises(CoverError) as err:
        call()
    assert " object at 0x" not in str(err.value)          # never an object's repr
    return err.value


# ---- 1. hangs: every request has a whole-request deadline ----------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["trickle", "trickle_headers"])
@pytest.mark.parametrize("endpoint", ["api", "oembed", "image"])
def test_a_trickling_server_is_given_up_on_at_the_deadline(fake, ids, kind, endpoint):
    # 1 byte per 0.2 s: each read succeeds, so only a whole-request deadline ends it.
    if endpoint == "image":
        fake.fault(ids[0], f"image_{kind}")
        r = api(fake, timeout=DEADLINE)
        call = lambda: r.fetch(r.resolve({"track_id": ids[0]}))   # noqa: E731
    else:
        fake.fault(ids[0], kind)
        r = (api if endpoint == "api" else oembed)(fake, timeout=DEADLINE)
        call = lambda: r.resolve({"track_id": ids[0]})   # noqa: E731
    start = time.monotonic()
    err = reason_of(call)
    elapsed = time.monotonic() - start
    assert err.reason == "timeout" and err.retryable
    assert f"within {DEADLINE:g} s (scrape.timeout)" in str(err) and "(2 tries)" in str(err)
    # two tries of DEADLINE plus backoff; slack for a loaded machine, far below what the trickle
    # alone would take (>= 40 s a try at 0.2 s a byte)
    assert elapsed < 2 * DEADLINE + 4


@pytest.mark.timeout(30)
def test_stop_cuts_requests_in_flight_at_once(fake, ids):
    fake.fault(ids[0], "image_trickle")
    r = api(fake, timeout=20)
    ref = r.resolve({"track_id": ids[0]})
    outcome = []

    def worker():
        try:
            r.fetch(ref)
        except (CoverError, StopScrape) as err:
            outcome.append(type(err).__name__)

    t = threading.Thread(target=worker)
    t.start()
    deadline = time.monotonic() + 10      # until the download is trickling (not a fixed sleep:
    while fake.counts["image"] == 0 and time.monotonic() < deadline:   # a loaded machine is slow)
        time.sleep(0.02)
    time.sleep(0.2)                       # its first bytes are in
    start = time.monotonic()
    r.stop("interrupted")
    t.join(5)
    assert not t.is_alive() and time.monotonic() - start < 3   # not the 20 s timeout
    assert outcome == ["StopScrape"]      # not retried after the stop


# ---- 2. start-up failures: one line saying what is wrong and what to check -----------------------
TOKEN_CASES = {
    "500": "HTTP 500 from",
    "html": "an HTML page, not JSON",
    "invalid_json": "answered not JSON",
    "json_list": "unexpected answer (answer: Input should be a valid dictionary",
    "no_access_token": "unexpected answer (access_token: Field required)",
    "bad_expires": "unexpected answer (expires_in:",
    "refuse": "refused the client credentials (invalid_client); check SPOTIPY_CLIENT_ID",
    "trickle": "no complete answer from",
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k == "trickle" else k
                                  for k in sorted(TOKEN_CASES)])   # a trickle waits 2 deadlines
def test_token_endpoint_faults_are_one_clear_line(fake, ids, kind):
    fake.token_fault(kind)
    with pytest.raises(CoverpopError) as err:   # a trickle waits out the deadline: a short one
        api(fake, timeout=DEADLINE if kind == "trickle" else 1).prepare(ids)
    message = str(err.value)
    assert message.startswith("cannot get a Spotify access token: ")
    assert TOKEN_CASES[kind] in message and "\n" not in message
    assert "cannot connect" not in message          # the server answered: it was something else
    assert fake.counts["track"] == 0


@pytest.mark.timeout(30)
def test_token_endpoint_refusing_connections_says_cannot_connect(fake, ids, refused_port):
    env = {**fake.env(), "COVERPOP_SPOTIFY_TOKEN_URL": f"http://127.0.0.1:{refused_port}/api/token"}
    r = SpotifyApiResolver.from_params(FAST, environ=env)
    with pytest.raises(CoverpopError, match=r"cannot connect to http://127\.0\.0\.1:\d+/api/token "
                                            r"\(connection refused\) \(2 tries\); check "
                                            r"scrape.token_url"):
        r.prepare(ids)


# ---- 3. malformed answers: recorded for the track, the run goes on -------------------------------
API_SHAPES = {
    "album is a string": (lambda b: {**b, "album": "Album X"}, "album:"),
    "album is null": (lambda b: {**b, "album": None}, "album:"),
    "images is a string": (lambda b: {**b, "album": {**b["album"], "images": "none"}},
                           "album.images:"),
    "image is a string": (lambda b: {**b, "album": {**b["album"], "images": ["https://x"]}},
                          "album.images.0:"),
    "url is a number": (lambda b: {**b, "album": {**b["album"], "images": [
        {"url": 640, "width": 640}]}}, "album.images.0.url:"),
    "width is text": (lambda b: {**b, "album": {**b["album"], "images": [
        {**b["album"]["images"][0], "width": "wide"}]}}, "album.images.0.width:"),
    "album id is an object": (lambda b: {**b, "album": {**b["album"], "id": {"x": 1}}},
                              "album.id:"),
    "answer is a list": (lambda b: [b], "answer:"),
    "answer is a number": (lambda b: 42, "answer:"),
}
OEMBED_SHAPES = {
    "thumbnail_url is a number": (lambda b: {**b, "thumbnail_url": 300}, "thumbnail_url:"),
    "thumbnail_url is a list": (lambda b: {**b, "thumbnail_url": [b["thumbnail_url"]]},
                                "thumbnail_url:"),
    "answer is a string": (lambda b: "ok", "answer:"),
}


@pytest.mark.parametrize("shape", sorted(API_SHAPES))
def test_malformed_api_answers_are_recorded_with_the_field(fake, ids, shape):
    mutate, field = API_SHAPES[shape]
    fake.reshape(ids[0], mutate)
    err = reason_of(lambda: api(fake).resolve({"track_id": ids[0]}))
    assert err.reason == "bad_response" and field in str(err)


@pytest.mark.parametrize("shape", sorted(OEMBED_SHAPES))
def test_malformed_oembed_answers_are_recorded_with_the_field(fake, ids, shape):
    mutate, field = OEMBED_SHAPES[shape]
    fake.reshape(ids[0], mutate)
    err = reason_of(lambda: oembed(fake).resolve({"track_id": ids[0]}))
    assert err.reason == "bad_response" and field in str(err)


def test_a_malformed_batch_answer_falls_back_to_single_calls(fake):
    fake.allow_batch = True
    many = make_track_ids(60, seed=2)
    fake.reshape(many[3], lambda b: {**b, "album": []})      # one bad track inside a good batch
    r = api(fake, batch=True)
    r.prepare(many)
    results = {}
    for t in many:
        try:
            results[t] = r.resolve({"track_id": t}).cover_id
        except CoverError as err:
            results[t] = err.reason
    assert results[many[3]] == "bad_response"
    assert all(results[t] == fake.image_id(t) for t in many if t != many[3])
    assert fake.counts["batch"] == 2 and fake.counts["track"] == 0


@pytest.mark.parametrize("resolver", [api, oembed])
def test_a_malformed_answer_does_not_stop_the_run(fake, tmp_path, resolver):
    ids = make_track_ids(12)
    fake.reshape(ids[2], lambda b: [])
    fake.fault(ids[5], "html")                   # a captive portal's login page
    fake.fault(ids[7], "bad_gateway")            # {"error": "Bad Gateway"}: not Spotify's shape
    recs = {r["track_id"]: r for r in Scraper(resolver(fake), tmp_path).run(
        [{"track_id": t} for t in ids], workers=4, progress=False)}
    assert recs[ids[2]]["error"].startswith("bad_response")
    assert recs[ids[5]]["error"].startswith("bad_response") and "HTML page" in recs[ids[5]]["error"]
    assert recs[ids[5]]["retryable"]               # a portal goes away: a later run asks again
    assert recs[ids[7]]["error"].startswith("server_error") and recs[ids[7]]["retryable"]
    assert sum(r["status"] == "ok" for r in recs.values()) == 9


@pytest.mark.parametrize("value,wait", [
    ("3", 3.0), ("0", 0.0), ("2.5", 2.5),
    ("soon", 1.0), ("", 1.0), ("-5", 1.0), ("nan", 1.0), ("inf", 1.0), ("5, 10", 1.0),
    ("1700000000000", 0.0),                 # epoch ms, in the past
    ("1700000030000", 30.0),                # epoch ms, 30 s ahead
    ("1700000030", 30.0),                   # epoch seconds, 30 s ahead
    ("Tue, 14 Nov 2023 22:14:20 GMT", 60.0),  # an HTTP date, a minute ahead
    ("Mon, 13 Nov 2023 22:14:20 GMT", 0.0),   # an HTTP date, in the past
    ("Tue, 14 Nov 2023 22:14:20", 60.0),      # no zone: taken as UTC
])
def test_retry_after_in_any_form(value, wait):
    now = 1_700_000_000.0
    assert http.retry_after_seconds({"Retry-After": value}, now=now) == pytest.approx(wait)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", ["soon", "-3", "1700000000000", "1e-300"])
def test_odd_retry_after_that_means_now_is_waited_briefly_and_retried(fake, ids, value,
                                                                     monkeypatch):
    # garbage waits the default (1 s, see test_retry_after_in_any_form): not worth waiting here
    monkeypatch.setattr(http, "DEFAULT_RETRY_AFTER", 0.05)
    fake.retry_after = value
    fake.fault(ids[0], "429", times=1)
    assert api(fake).resolve({"track_id": ids[0]}).cover_id == fake.image_id(ids[0])
    assert fake.track_hits[ids[0]] == 2


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", ["99999999999999999999", "4102444800000", "1e300"])
def test_odd_retry_after_that_means_forever_stops_the_run_in_one_line(fake, ids, value):
    fake.retry_after = value
    fake.fault(ids[0], "429")
    with pytest.raises(StopScrape) as err:
        api(fake).resolve({"track_id": ids[0]})
    assert "max_retry_after" in str(err.value) and "\n" not in str(err.value)


# ---- 4. failures named for what they are ---------------------------------------------------------
def test_every_5xx_is_retried_520_included(fake, ids):
    fake.fault(ids[0], "520", times=1)
    assert api(fake).resolve({"track_id": ids[0]}).cover_id == fake.image_id(ids[0])
    assert fake.track_hits[ids[0]] == 2
    fake.fault(ids[1], "520")
    err = reason_of(lambda: api(fake).resolve({"track_id": ids[1]}))
    assert err.reason == "server_error" and err.retryable and fake.track_hits[ids[1]] == 2


@pytest.mark.parametrize("kind,reason,text", [
    ("redirect_loop", "redirect_loop", "redirects in a loop"),
    ("redirect_chain", "redirect_loop", "redirects more than 5 times"),
    ("redirect_file", "bad_scheme", "only http and https are followed"),
])
@pytest.mark.parametrize("endpoint", ["api", "image"])
def test_redirect_trouble_has_its_own_reason(fake, ids, kind, reason, text, endpoint):
    fake.fault(ids[0], f"image_{kind}" if endpoint == "image" else kind)
    r = api(fake)
    call = (lambda: r.fetch(r.resolve({"track_id": ids[0]}))) if endpoint == "image" else (
        lambda: r.resolve({"track_id": ids[0]}))
    err = reason_of(call)
    assert err.reason == reason and text in str(err) and "cannot connect" not in str(err)


def test_a_redirect_to_a_host_not_allowed_is_not_followed(fake, ids):
    fake.fault(ids[0], "redirect_host")            # to localhost: same machine, other name
    r = api(fake)
    err = reason_of(lambda: r.fetch(r.resolve({"track_id": ids[0]})))
    assert err.reason == "host_not_allowed" and "localhost" in str(err)
    assert fake.counts["image"] == 1                # the redirect itself, nothing after it


@pytest.mark.parametrize("endpoint", ["api", "image"])
def test_a_body_cut_short_is_retried_and_reported_as_truncated(fake, ids, endpoint):
    kind = "image_cut" if endpoint == "image" else "cut"
    fake.fault(ids[0], kind, times=1)
    r = api(fake)
    data = r.fetch(r.resolve({"track_id": ids[0]}))   # second try is whole
    assert data == fake.jpeg(fake.image_id(ids[0]), 300)
    fake.fault(ids[1], kind)
    err = reason_of(lambda: r.fetch(r.resolve({"track_id": ids[1]})))
    assert err.reason == "truncated" and err.retryable and "cut short" in str(err)


def test_a_401_mid_run_fetches_one_new_token_and_goes_on(fake, tmp_path):
    ids = make_track_ids(20)
    fake.revoke_after(8)                  # the 8th API request finds its token revoked
    recs = Scraper(api(fake), tmp_path).run([{"track_id": t} for t in ids], workers=4,
                                             progress=False)
    assert all(r["status"] == "ok" for r in recs) and len(recs) == 20
    assert fake.counts["token"] == 2      # one at start, one after the 401 (not one per worker)
    assert fake.counts["track"] == 20     # each track answered once ...
    assert 1 <= fake._api_requests - 20 <= 4   # ... after the 401s of the requests in flight


@pytest.mark.timeout(30)
def test_a_401_with_no_new_token_to_be_had_stops_the_run_in_one_line(fake, tmp_path):
    ids = make_track_ids(20)
    fake.revoke_after(5)
    fake.token_fault("refuse", skip=1)    # the first token is fine, the next is refused
    with pytest.raises(StopScrape) as err:
        Scraper(api(fake), tmp_path).run([{"track_id": t} for t in ids], workers=4,
                                          progress=False)
    assert "refused the client credentials" in str(err.value) and "\n" not in str(err.value)
    assert fake.counts["track"] < 20


# ---- 5. memory: bodies are capped, declared and actual -------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("endpoint", ["api", "image"])
def test_a_gzip_bomb_stops_at_the_cap_without_inflating(fake, ids, endpoint):
    fake.bomb_mb = 200                               # ~200 KB on the wire, 200 MB inflated
    from fakes.spotify_server import gzip_bomb
    gzip_bomb(fake.bomb_mb)                          # built before we measure
    fake.fault(ids[0], "image_bomb" if endpoint == "image" else "bomb")
    r = api(fake, max_bytes=1_000_000)
    ref = r.resolve({"track_id": ids[0]}) if endpoint == "image" else None
    tracemalloc.start()
    try:
        err = reason_of((lambda: r.fetch(ref)) if ref else (
            lambda: r.resolve({"track_id": ids[0]})))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.reason == "too_large" and err.retryable     # depends on the cap: asked again later
    assert "scrape.max_bytes=1,000,000" in str(err) and "after decompression" in str(err)
    assert peak < 8_000_000                          # the cap plus a chunk, not 200 MB


def test_an_absurd_content_length_is_refused_before_reading(fake, ids):
    fake.fault(ids[0], "image_huge_declared")
    r = api(fake)
    start = time.monotonic()
    err = reason_of(lambda: r.fetch(r.resolve({"track_id": ids[0]})))
    assert err.reason == "too_large" and "announces 400,000,000,000 bytes" in str(err)
    assert time.monotonic() - start < 5   # no retries, no reading (slack for a loaded machine)


# ---- 6. where covers come from -------------------------------------------------------------------
def test_covers_only_come_from_allowed_hosts(fake, ids):
    env = {**fake.env(), "COVERPOP_ALLOWED_HOSTS": ""}      # params.yaml's list: Spotify's CDN
    r = SpotifyApiResolver.from_params(FAST, environ=env)
    err = reason_of(lambda: r.fetch(r.resolve({"track_id": ids[0]})))
    assert err.reason == "host_not_allowed" and err.retryable   # the list may change
    assert fake.counts["image"] == 0


@pytest.mark.parametrize("hosts", ["*", "127.0.0.*", "*.0.0.1"])
def test_a_pattern_never_reaches_a_private_address(fake, ids, hosts):
    r = SpotifyApiResolver.from_params(FAST, environ={**fake.env(),
                                                      "COVERPOP_ALLOWED_HOSTS": hosts})
    err = reason_of(lambda: r.fetch(r.resolve({"track_id": ids[0]})))
    assert err.reason == "private_address" and "name the host exactly" in str(err)
    assert fake.counts["image"] == 0                        # refused before the request is sent


def test_the_url_column_obeys_the_allow_list_too(fake, ids):
    r = url_resolver(fake)
    assert r.fetch(r.resolve({"image_url": fake.image_url(ids[0], 300)}))[:2] == b"\xff\xd8"
    other = f"http://localhost:{fake.url.rsplit(':', 1)[1]}/image/x"
    assert reason_of(lambda: r.fetch(r.resolve({"image_url": other}))).reason == \
        "host_not_allowed"


def test_the_mirror_in_image_host_is_allowed_by_naming_it(fake, ids):
    # the fake's own address, allowed here only as the mirror (no name to resolve: deterministic)
    env = {**fake.env(), "COVERPOP_ALLOWED_HOSTS": "i.scdn.co", "COVERPOP_IMAGE_HOST": fake.url}
    r = SpotifyApiResolver.from_params(FAST, environ=env)
    assert r.fetch(r.resolve({"track_id": ids[0]})) == fake.jpeg(fake.image_id(ids[0]), 300)


def test_host_policy_rules():
    policy = HostPolicy(["i.scdn.co", "image-cdn-*.spotifycdn.com"], trusted=["mirror.lan"])
    assert policy.check("https://i.scdn.co/image/x") is False            # exact: trusted
    assert policy.check("https://I.SCDN.CO./image/x") is False           # case, trailing dot
    assert policy.check("https://image-cdn-ak.spotifycdn.com/i") is True  # pattern: must be public
    assert policy.check("http://mirror.lan:8080/i") is False
    for url, reason in [("https://evil.example/i.scdn.co", "host_not_allowed"),
                        ("https://i.scdn.co.evil.example/x", "host_not_allowed"),
                        ("ftp://i.scdn.co/x", "bad_scheme"), ("https:///x", "bad_url")]:
        with pytest.raises(CoverError, match=reason):
            policy.check(url)
    assert is_public("151.101.2.248") and is_public("2a04:4e42::248")
    for ip in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "fd00::1",
               "::ffff:127.0.0.1", "100.64.0.1", "0.0.0.0", "224.0.0.1"):
        assert not is_public(ip), ip


# ---- answers that are not valid HTTP at all ------------------------------------------------------
# The fake closes the connection after a raw answer. An answer the client reads in full (the
# redirects) says so with "Connection: close": without it the client keeps the connection for the
# redirect and races the server's close (the redirect then fails as `connection`, not as it should).
RAW = {   # case: (what the server sends, the reason recorded)
    "negative length": (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n{}", "bad_response"),
    "two lengths": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}",
                    "bad_response"),
    "garbage status": (b"HTTP/1.1 abc OK\r\n\r\n", "bad_response"),
    "not http": (b"SSH-2.0-OpenSSH_9.6\r\n", "bad_response"),
    "nothing": (b"", "connection"),
    "endless header line": (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
                            "bad_response"),
    "too many headers": (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n", "bad_response"),
    "bad chunking": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
                     "truncated"),
    "odd redirect": (b"HTTP/1.1 302 Found\r\nLocation: http://[::1\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n", "bad_response"),
    "unicode redirect": ("HTTP/1.1 302 Found\r\nLocation: /v1/tr\u00e4cks/\u2603 x\r\n"
                         "Content-Length: 0\r\nConnection: close\r\n\r\n".encode("utf-8"),
                         "not_found"),
    "bad gzip": (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
                 "bad_response"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(RAW))
def test_an_answer_that_is_not_valid_http_is_a_recorded_failure(fake, tmp_path, case):
    ids = make_track_ids(4)
    fake.raw, reason = RAW[case]
    fake.fault(ids[0], "raw")
    recs = {r["track_id"]: r for r in Scraper(api(fake), tmp_path).run(
        [{"track_id": t} for t in ids], workers=2, progress=False)}
    assert recs[ids[0]]["status"] == "failed"
    assert recs[ids[0]]["error"].split(":")[0] == reason
    assert " object at 0x" not in recs[ids[0]]["error"]
    assert all(recs[t]["status"] == "ok" for t in ids[1:])


# ---- the same deadline over TLS (the real services are https) --------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["trickle", "trickle_headers", "image_trickle"])
def test_the_deadline_holds_over_tls(monkeypatch, kind):
    pytest.importorskip("cryptography")
    with FakeSpotify(tls=True) as fake:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_file)    # trust the fake's certificate
        ids = make_track_ids(2)
        r = api(fake, timeout=DEADLINE)
        assert r.fetch(r.resolve({"track_id": ids[1]})) == fake.jpeg(fake.image_id(ids[1]), 300)
        fake.fault(ids[0], kind)
        start = time.monotonic()
        err = reason_of(lambda: r.fetch(r.resolve({"track_id": ids[0]})))
        assert err.reason == "timeout" and time.monotonic() - start < 2 * DEADLINE + 4   # above


def test_a_certificate_not_trusted_is_a_tls_failure_not_cannot_connect(monkeypatch):
    pytest.importorskip("cryptography")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with FakeSpotify(tls=True) as fake:
        with pytest.raises(CoverpopError, match=r"TLS with https://127\.0\.0\.1:\d+/api/token "
                                                r"failed \(2 tries\)") as err:
            api(fake).prepare(make_track_ids(1))
        assert "cannot connect" not in str(err.value)
