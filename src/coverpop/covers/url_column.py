"""The `url` resolver: covers from a column of image URLs in the tracks table (plain HTTP).

The URLs are data, not configuration, so they obey `scrape.allowed_hosts` like URLs from an
answer: Spotify's CDN by default; add your own image host there (or '*' for any public host).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from coverpop.covers import http
from coverpop.covers.cdn import cover_id_from_url, sized_url
from coverpop.covers.settings import ScrapeSettings
from coverpop.covers.types import CoverError, CoverRef


class UrlResolver:
    """track row -> row[column] -> download. i.scdn.co URLs keep their image id as cover id and
    are re-sized through their size code; other URLs get a hash of the URL as cover id."""

    name = "url"

    def __init__(self, settings: ScrapeSettings):
        self.settings, self.size, self.column = settings, settings.size, settings.url_column
        self.net = http.Fetcher(settings)

    @classmethod
    def from_settings(cls, settings: ScrapeSettings, environ: Mapping = os.environ) -> UrlResolver:
        return cls(settings)

    @classmethod
    def from_params(cls, scrape: Mapping, environ: Mapping = os.environ) -> UrlResolver:
        return cls(ScrapeSettings.from_params(scrape, environ))

    def resolve(self, row: dict) -> CoverRef:
        value = row.get(self.column)
        url = value.strip() if isinstance(value, str) else ""
        if not url.lower().startswith(("http://", "https://")):
            raise CoverError("no_image", f"column '{self.column}' holds no http(s) URL")
        return CoverRef(cover_id=cover_id_from_url(url),
                        url=http.image_url(sized_url(url, self.size), self.settings.image_host))

    def fetch(self, ref: CoverRef) -> bytes:
        # A user's own image host has no rate cap of its own: scrape.rate_limit applies here.
        return self.net.cover_bytes(ref.url, limiter=self.net.limiter)

    def stop(self, message: str) -> None:
        self.net.stop(message)
