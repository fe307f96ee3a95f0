"""Covers without credentials: Spotify's oEmbed endpoint gives a track's 300 px cover URL."""

from __future__ import annotations

import os
from collections.abc import Mapping

from coverpop.covers import answers, http
from coverpop.covers.cdn import cover_id_from_url, sized_url
from coverpop.covers.settings import ScrapeSettings
from coverpop.covers.types import CoverError, CoverRef

TRACK_URL = "https://open.spotify.com/track/{}"


class OEmbedResolver:
    """track row -> GET /oembed?url=https://open.spotify.com/track/{id} -> thumbnail_url.

    No album id or release date comes back; the cover id (the 24-hex image id in the URL, shared
    by every size of one cover) is the dedupe key.
    """

    name = "oembed"

    def __init__(self, settings: ScrapeSettings):
        self.settings, self.size = settings, settings.size
        self.oembed_url = settings.oembed_url
        self.net = http.Fetcher(settings)

    @classmethod
    def from_settings(cls, settings: ScrapeSettings, environ: Mapping = os.environ
                      ) -> OEmbedResolver:
        return cls(settings)

    @classmethod
    def from_params(cls, scrape: Mapping, environ: Mapping = os.environ) -> OEmbedResolver:
        return cls(ScrapeSettings.from_params(scrape, environ))

    def resolve(self, row: dict) -> CoverRef:
        track_id = answers.track_id_of(row["track_id"])
        where = f"{http.where_of(self.oembed_url)} (track {track_id})"
        info = answers.check(answers.OEmbed, self.net.get_json(
            self.oembed_url, where=where, params={"url": TRACK_URL.format(track_id)}), where)
        if not info.thumbnail_url:
            raise CoverError("no_image", f"{where}: no thumbnail_url")
        return CoverRef(cover_id=cover_id_from_url(info.thumbnail_url),
                        url=http.image_url(sized_url(info.thumbnail_url, self.size),
                                           self.settings.image_host))

    def fetch(self, ref: CoverRef) -> bytes:
        return self.net.cover_bytes(ref.url)

    def stop(self, message: str) -> None:
        self.net.stop(message)
