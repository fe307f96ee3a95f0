"""spotify_api resolver against the local fake, with the real spotipy client and HTTP stack."""

import io
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from fakes.spotify_server import CLIENT_SECRET, make_track_ids  # noqa: E402
from scrape_params import scrape_params  # noqa: E402

from coverpop.core.errors import CoverpopError  # noqa: E402
from coverpop.covers import http  # noqa: E402
from coverpop.covers.answers import Image as ImageEntry  # noqa: E402
from coverpop.covers.cdn import cover_id_from_url, sized_url  # noqa: E402
from coverpop.covers.spotify import SpotifyApiResolver, choose_image  # noqa: E402
from coverpop.covers.types import CoverError, StopScrape  # noqa: E402

FAST = scrape_params(timeout=1, retries=2, backoff=0.01, workers=4)


class RecordingLimiter(http.RateLimiter):
    def __init__(self):
        super().__init__()
        self.pauses = []

    def pause(self, seconds):
        self.pauses.append(seconds)
        super().pause(seconds)


@pytest.fixture
def ids():
    return make_track_ids(12)


def resolver(fake, **params):
    return SpotifyApiResolver.from_params({**FAST, **params}, environ=fake.env())


def test_resolves_album_fields_and_fetches_a_real_jpeg(fake, ids):
    r = resolver(fake)
    ref = r.resolve({"track_id": ids[0]})
    want = fake.track_json(ids[0])["album"]
    assert (ref.album_id, ref.album_name, ref.release_date) == (
        want["id"], want["name"], want["release_date"])
    assert ref.cover_id == fake.image_id(ids[0]) and len(ref.cover_id) == 24
    assert ref.url == fake.image_url(ids[0], 300)
    img = Image.open(io.BytesIO(r.fetch(ref)))
    assert img.format == "JPEG" and img.size == (300, 300)
    assert fake.counts["token"] == 1 and fake.counts["track"] == 1


@pytest.mark.parametrize("size", [640, 64])
def test_other_sizes(fake, ids, size):
    r = resolver(fake, size=size)
    ref = r.resolve({"track_id": ids[0]})
    assert ref.url == fake.image_url(ids[0], size)
    assert Image.open(io.BytesIO(r.fetch(ref))).size == (size, size)


def test_old_cover_urls_without_size_code_are_used_as_they_are(fake, ids):
    fake.legacy.add(ids[0])
    ref = resolver(fake).resolve({"track_id": ids[0]})
    assert ref.cover_id == fake.image_id(ids[0]) and len(ref.cover_id) == 40
    assert ref.url == fake.image_url(ids[0], 640)


def test_short_429_waits_retry_after_and_continues(fake, ids):
    fake.retry_after = 0.1                # sent as "0.1": seconds may have a fraction
    fake.fault(ids[0], "429", times=2)
    r = resolver(fake)
    r.net.limiter = RecordingLimiter()
    ref = r.resolve({"track_id": ids[0]})
    assert ref.cover_id == fake.image_id(ids[0])
    assert r.net.limiter.pauses == [0.1, 0.1]
    assert fake.track_hits[ids[0]] == 3


@pytest.mark.timeout(30)   # a sleep through Retry-After (48,925 s) would hit this
def test_quota_exceeded_stops_promptly_and_says_when_to_resume(fake, ids):
    fake.fault(ids[0], "quota")
    r = resolver(fake)
    with pytest.raises(StopScrape, match=r"QUOTA_EXCEEDED.*resume after \d{4}-\d\d-\d\d \d\d:\d\d UTC"):
        r.resolve({"track_id": ids[0]})
    hits = fake.counts["track"]
    with pytest.raises(StopScrape):   # the whole run stops: no more requests
        r.resolve({"track_id": ids[1]})
    assert fake.counts["track"] == hits == 1


@pytest.mark.timeout(30)
def test_retry_after_longer_than_the_cap_stops(fake, ids):
    fake.retry_after = 600
    fake.fault(ids[0], "429")
    with pytest.raises(StopScrape, match="max_retry_after=60"):
        resolver(fake, max_retry_after=60).resolve({"track_id": ids[0]})
    assert fake.track_hits[ids[0]] == 1


def test_5xx_is_retried_with_backoff_then_succeeds(fake, ids):
    fake.fault(ids[0], "503", times=2)
    assert resolver(fake).resolve({"track_id": ids[0]}).cover_id == fake.image_id(ids[0])
    assert fake.track_hits[ids[0]] == 3


def test_5xx_that_persists_fails_this_track_after_bounded_retries(fake, ids):
    fake.fault(ids[0], "500")
    r = resolver(fake, retries=2)
    with pytest.raises(CoverError) as err:
        r.resolve({"track_id": ids[0]})
    assert err.value.reason == "server_error" and err.value.retryable
    assert fake.track_hits[ids[0]] == 3
    assert r.resolve({"track_id": ids[1]}).cover_id == fake.image_id(ids[1])   # run goes on


@pytest.mark.slow
def test_timeout_is_retried_then_recorded(fake, ids):
    fake.slow_seconds = 5                 # the answer comes long after the 0.3 s deadline
    fake.fault(ids[0], "slow")
    with pytest.raises(CoverError) as err:
        resolver(fake, timeout=0.3, retries=1).resolve({"track_id": ids[0]})
    assert err.value.reason == "timeout"
    assert fake.track_hits[ids[0]] == 2


@pytest.mark.parametrize("kind,reason", [("404", "not_found"), ("no_images", "no_image")])
def test_track_level_failures_are_not_retried(fake, ids, kind, reason):
    fake.fault(ids[0], kind)
    with pytest.raises(CoverError) as err:
        resolver(fake).resolve({"track_id": ids[0]})
    assert err.value.reason == reason and not err.value.retryable
    assert fake.track_hits[ids[0]] == 1


@pytest.mark.parametrize("bad", ["notAnId", "../../me", "a" * 21 + "?", 12345, None])
def test_malformed_id_is_recorded_without_a_request(fake, bad):
    with pytest.raises(CoverError) as err:
        resolver(fake).resolve({"track_id": bad})
    assert err.value.reason == "bad_id" and fake.counts["track"] == 0


def test_track_uris_and_links_are_understood(fake, ids):
    r = resolver(fake)
    for form in (f"spotify:track:{ids[0]}", f"https://open.spotify.com/track/{ids[0]}?si=x"):
        assert r.resolve({"track_id": form}).cover_id == fake.image_id(ids[0])


@pytest.mark.parametrize("kind", ["corrupt_jpeg", "truncated_jpeg"])
def test_broken_jpegs_arrive_as_bytes_that_do_not_decode(fake, ids, kind):
    # The resolver hands bytes over; the engine's decode step must reject these.
    fake.fault(ids[0], kind)
    r = resolver(fake)
    data = r.fetch(r.resolve({"track_id": ids[0]}))
    with pytest.raises(OSError):
        Image.open(io.BytesIO(data)).load()


def test_batch_403_falls_back_to_single_calls_once(fake):
    many = make_track_ids(120, seed=1)
    r = resolver(fake, batch=True, workers=8)
    r.prepare(many)
    with ThreadPoolExecutor(8) as pool:
        refs = list(pool.map(lambda t: r.resolve({"track_id": t}), many))
    assert [x.cover_id for x in refs] == [fake.image_id(t) for t in many]
    assert fake.counts["batch"] == 1 and fake.counts["track"] == 120


def test_batch_when_allowed_uses_50_ids_per_request(fake):
    fake.allow_batch = True
    many = make_track_ids(120, seed=1)
    fake.fault(many[7], "404")
    r = resolver(fake, batch=True)
    r.prepare(many)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda t: _try(r.resolve, {"track_id": t}), many))
    assert fake.counts["batch"] == 3 and fake.counts["track"] == 0
    assert results[7] == "not_found"
    assert [x.cover_id for i, x in enumerate(results) if i != 7] == [
        fake.image_id(t) for i, t in enumerate(many) if i != 7]


def _try(fn, *args):
    try:
        return fn(*args)
    except CoverError as err:
        return err.reason


def test_bad_credentials_stop_the_run_without_showing_them(fake, ids):
    env = {**fake.env(), "SPOTIPY_CLIENT_SECRET": "wrong-secret-123"}
    r = SpotifyApiResolver.from_params(FAST, environ=env)
    with pytest.raises(StopScrape, match="SPOTIPY_CLIENT_SECRET") as err:
        r.resolve({"track_id": ids[0]})
    assert "wrong-secret-123" not in str(err.value) and "wrong-secret-123" not in repr(r)


def test_missing_credentials_is_one_clear_error():
    with pytest.raises(CoverpopError, match="SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET"):
        SpotifyApiResolver.from_params(FAST, environ={})


def test_secrets_never_reach_the_logs(fake, ids, caplog):
    import base64
    caplog.set_level(logging.DEBUG)
    r = resolver(fake)
    r.fetch(r.resolve({"track_id": ids[0]}))
    fake.fault(ids[1], "404")
    with pytest.raises(CoverError):
        r.resolve({"track_id": ids[1]})
    token = r._access_token()
    basic = base64.b64encode(f"{fake.client_id}:{CLIENT_SECRET}".encode()).decode()
    for secret in (CLIENT_SECRET, basic, token):
        assert secret not in caplog.text


def test_base_urls_come_from_params_when_env_is_silent(fake, ids):
    env = {"SPOTIPY_CLIENT_ID": fake.client_id, "SPOTIPY_CLIENT_SECRET": fake.client_secret}
    r = SpotifyApiResolver.from_params(
        {**FAST, "api_url": fake.url + "/v1", "token_url": fake.token_url}, environ=env)
    assert r.resolve({"track_id": ids[0]}).cover_id == fake.image_id(ids[0])


def test_image_host_rewrites_cover_urls(fake, ids):
    env = {**fake.env(), "COVERPOP_IMAGE_HOST": "http://mirror.invalid:8080"}
    ref = SpotifyApiResolver.from_params(FAST, environ=env).resolve({"track_id": ids[0]})
    assert ref.url.startswith("http://mirror.invalid:8080/image/ab67616d00001e02")


def test_cover_url_helpers():
    u = "https://i.scdn.co/image/ab67616d0000b273" + "0a" * 12
    assert cover_id_from_url(u) == "0a" * 12
    assert sized_url(u, 300) == "https://i.scdn.co/image/ab67616d00001e02" + "0a" * 12
    assert sized_url("https://x.org/a.jpg", 300) == "https://x.org/a.jpg"
    imgs = [ImageEntry(url=u, width=640, height=640)]
    assert choose_image(imgs, 300) == sized_url(u, 300)      # derived from the size code
    plain = [ImageEntry(url="https://x/a.jpg", width=600), ImageEntry(url="https://x/b.jpg", width=200)]
    assert choose_image(plain, 300) == "https://x/a.jpg"
    assert choose_image([], 300) is None
