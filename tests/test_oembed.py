"""oembed resolver: no credentials, cover id from the thumbnail URL, faults recorded or stopping."""

import io
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from fakes.spotify_server import make_track_ids  # noqa: E402
from scrape_params import scrape_params  # noqa: E402

from coverpop.covers.oembed import OEmbedResolver  # noqa: E402
from coverpop.covers.types import CoverError, StopScrape  # noqa: E402

FAST = scrape_params(timeout=1, retries=2, backoff=0.01, workers=2)


@pytest.fixture
def ids():
    return make_track_ids(4)


def resolver(fake, **params):
    return OEmbedResolver.from_params({**FAST, **params}, environ={
        "COVERPOP_OEMBED_URL": fake.oembed_url, "COVERPOP_ALLOWED_HOSTS": "127.0.0.1"})


def test_thumbnail_gives_cover_id_and_300px_jpeg_without_credentials(fake, ids):
    r = resolver(fake)
    ref = r.resolve({"track_id": ids[0]})
    assert ref.cover_id == fake.image_id(ids[0]) and ref.album_id == ""
    assert ref.url == fake.image_url(ids[0], 300)
    assert Image.open(io.BytesIO(r.fetch(ref))).size == (300, 300)
    assert fake.counts["token"] == 0 and fake.counts["oembed"] == 1


def test_640_is_derived_from_the_size_code(fake, ids):
    r = resolver(fake, size=640)
    ref = r.resolve({"track_id": ids[0]})
    assert ref.url == fake.image_url(ids[0], 640)
    assert Image.open(io.BytesIO(r.fetch(ref))).size == (640, 640)


def test_two_tracks_of_one_album_share_the_cover_id(fake, ids):
    fake.albums[ids[1]] = ids[0]
    r = resolver(fake)
    assert r.resolve({"track_id": ids[0]}).cover_id == r.resolve({"track_id": ids[1]}).cover_id


@pytest.mark.parametrize("kind,reason", [("404", "not_found"), ("no_images", "no_image")])
def test_track_failures_are_recorded(fake, ids, kind, reason):
    fake.fault(ids[0], kind)
    with pytest.raises(CoverError) as err:
        resolver(fake).resolve({"track_id": ids[0]})
    assert err.value.reason == reason and fake.track_hits[ids[0]] == 1


def test_5xx_retried_then_ok(fake, ids):
    fake.fault(ids[0], "502", times=1)
    assert resolver(fake).resolve({"track_id": ids[0]}).cover_id == fake.image_id(ids[0])
    assert fake.track_hits[ids[0]] == 2


@pytest.mark.timeout(30)
def test_quota_stops(fake, ids):
    fake.quota_after(0)
    with pytest.raises(StopScrape, match="resume after"):
        resolver(fake).resolve({"track_id": ids[0]})


def test_image_server_errors_retried_then_recorded(fake, ids):
    fake.fault(ids[0], "image_500")
    r = resolver(fake, retries=1)
    ref = r.resolve({"track_id": ids[0]})
    with pytest.raises(CoverError) as err:
        r.fetch(ref)
    assert err.value.reason == "server_error" and fake.image_hits[ref.cover_id] == 2
