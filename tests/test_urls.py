"""url resolver: a column of image URLs, downloaded over plain HTTP from allowed hosts."""

import io
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from fakes.spotify_server import make_track_ids  # noqa: E402
from scrape_params import scrape_params  # noqa: E402

from coverpop.covers.types import CoverError  # noqa: E402
from coverpop.covers.url_column import UrlResolver  # noqa: E402

LOCAL = {"COVERPOP_ALLOWED_HOSTS": "127.0.0.1"}   # the fake serves on 127.0.0.1


def resolver(environ=LOCAL, **params):
    return UrlResolver.from_params(scrape_params(**{"retries": 0, **params}), environ=environ)


def test_downloads_the_url_in_the_column(fake):
    tid = make_track_ids(1)[0]
    r = resolver(url_column="cover", size=64)
    ref = r.resolve({"track_id": tid, "cover": fake.image_url(tid, 640)})
    assert ref.cover_id == fake.image_id(tid) and ref.url == fake.image_url(tid, 64)
    assert Image.open(io.BytesIO(r.fetch(ref))).size == (64, 64)


def test_other_urls_get_a_hash_as_cover_id():
    ref = resolver().resolve({"image_url": "https://example.org/covers/a.jpg"})
    assert len(ref.cover_id) == 24 and ref.url == "https://example.org/covers/a.jpg"


@pytest.mark.parametrize("value", ["", None, "covers/a.jpg", 42, "file:///etc/passwd"])
def test_rows_without_an_http_url_are_recorded(value):
    with pytest.raises(CoverError, match="no_image"):
        resolver().resolve({"image_url": value})


def test_missing_image_is_not_found(fake):
    r = resolver()
    with pytest.raises(CoverError, match="not_found"):
        r.fetch(r.resolve({"image_url": fake.url + "/image/nothing-here"}))


def test_hosts_outside_the_allow_list_are_not_fetched(fake):
    tid = make_track_ids(1)[0]
    r = resolver(environ={})           # params.yaml's list: Spotify's CDN only
    with pytest.raises(CoverError) as err:
        r.fetch(r.resolve({"image_url": fake.image_url(tid, 300)}))
    assert err.value.reason == "host_not_allowed" and "scrape.allowed_hosts" in str(err.value)
    assert fake.counts["image"] == 0
