"""Covers without credentials: Spotify's oEmbed endpoint gives a track's 300 px cover URL."""

from __future__ import annotations

import os

from coverpop.covers import http
from coverpop.covers.cdn import cover_id_from_url, sized_url
from coverpop.covers.types import CoverError, CoverRef

OEMBED_URL = "https://open.spotify.com/oembed"
TRACK_URL = "https://open.spotify.com/track/{}"


class OEmbedResolver:
    """track row -> GET /oembed?url=https://open.spotify.com/track/{id} -> thumbnail_url.

    No album id or release date comes back; the cover id (the 24-hex image id in the URL, shared
    by every size of one cover) is the dedupe key.
    """

    name = "oembed"

    def __init__(self, *, oembed_url: str = OEMBED_URL, size: int = 300, timeout: float = 10.0,
                 workers: int = 16, image_host: str = "", policy: http.RetryPolicy | None = None,
                 limiter: http.RateLimiter | None = None):
        self.oembed_url, self.size, self.timeout, self.image_host = (
            oembed_url, size, timeout, image_host)
        self.policy = policy or http.RetryPolicy()
        self.limiter = limiter or http.RateLimiter()
        self.images = http.RateLimiter()
        self.session = http.make_session(workers)

    @classmethod
    def from_params(cls, scrape: dict, environ=os.environ, workers: int | None = None
                    ) -> OEmbedResolver:
        return cls(oembed_url=http.setting(scrape, "oembed_url", "COVERPOP_OEMBED_URL", OEMBED_URL,
                                          environ),
                   image_host=http.setting(scrape, "image_host", "COVERPOP_IMAGE_HOST", "", environ),
                   size=int(scrape.get("size", 300)), timeout=float(scrape.get("timeout", 10)),
                   workers=workers or int(scrape.get("workers", 16)),
                   policy=http.policy_from_params(scrape), limiter=http.limiter_from_params(scrape))

    def resolve(self, row: dict) -> CoverRef:
        track_id = str(row["track_id"])
        where = f"{self.oembed_url} (track {track_id})"

        def once() -> dict:
            resp = http.get(self.session, self.oembed_url, timeout=self.timeout,
                           params={"url": TRACK_URL.format(track_id)}, where=where)
            try:
                return resp.json()
            except ValueError:
                raise CoverError("bad_response", f"{where}: answer is not JSON") from None

        info = http.call_with_retries(once, self.policy, self.limiter)
        thumb = info.get("thumbnail_url") if isinstance(info, dict) else None
        if not thumb:
            raise CoverError("no_image", f"{where}: no thumbnail_url")
        return CoverRef(cover_id=cover_id_from_url(thumb),
                        url=http.rehost(sized_url(thumb, self.size), self.image_host))

    def fetch(self, ref: CoverRef) -> bytes:
        return http.get_cover_bytes(self.session, ref.url, timeout=self.timeout, policy=self.policy,
                            limiter=self.images)
