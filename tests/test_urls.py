"""url resolver: a column of image URLs, downloaded over plain HTTP."""

import io
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from fakes.spotify_server import make_track_ids  # noqa: E402

from coverpop.covers.types import CoverError  # noqa: E402
from coverpop.covers.url_column import UrlResolver  # noqa: E402


def test_downloads_the_url_in_the_column(fake):
    tid = make_track_ids(1)[0]
    r = UrlResolver.from_params({"url_column": "cover", "size": 64, "retries": 0}, environ={})
    ref = r.resolve({"track_id": tid, "cover": fake.image_url(tid, 640)})
    assert ref.cover_id == fake.image_id(tid) and ref.url == fake.image_url(tid, 64)
    assert Image.open(io.BytesIO(r.fetch(ref))).size == (64, 64)


def test_other_urls_get_a_hash_as_cover_id(fake):
    r = UrlResolver(column="image_url")
    ref = r.resolve({"image_url": "https://example.org/covers/a.jpg"})
    assert len(ref.cover_id) == 24 and ref.url == "https://example.org/covers/a.jpg"


@pytest.mark.parametrize("value", ["", None, "covers/a.jpg"])
def test_rows_without_an_http_url_are_recorded(value):
    with pytest.raises(CoverError, match="no_image"):
        UrlResolver().resolve({"image_url": value})


def test_missing_image_is_not_found(fake):
    r = UrlResolver(size=300)
    with pytest.raises(CoverError, match="not_found"):
        r.fetch(r.resolve({"image_url": fake.url + "/image/nothing-here"}))
