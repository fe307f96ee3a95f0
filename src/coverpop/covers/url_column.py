"""The `url` resolver: covers from a column of image URLs in the tracks table (plain HTTP)."""

from __future__ import annotations

import os

from coverpop.covers import http
from coverpop.covers.cdn import cover_id_from_url, sized_url
from coverpop.covers.types import CoverError, CoverRef


class UrlResolver:
    """track row -> row[column] -> download. i.scdn.co URLs keep their image id as cover id and
    are re-sized through their size code; other URLs get a hash of the URL as cover id."""

    name = "url"

    def __init__(self, *, column: str = "image_url", size: int = 300, timeout: float = 10.0,
                 workers: int = 16, image_host: str = "", policy: http.RetryPolicy | None = None,
                 limiter: http.RateLimiter | None = None):
        self.column, self.size, self.timeout, self.image_host = column, size, timeout, image_host
        self.policy = policy or http.RetryPolicy()
        self.limiter = limiter or http.RateLimiter()
        self.session = http.make_session(workers)

    @classmethod
    def from_params(cls, scrape: dict, environ=os.environ, workers: int | None = None
                    ) -> UrlResolver:
        return cls(column=scrape.get("url_column", "image_url"),
                   image_host=http.setting(scrape, "image_host", "COVERPOP_IMAGE_HOST", "", environ),
                   size=int(scrape.get("size", 300)), timeout=float(scrape.get("timeout", 10)),
                   workers=workers or int(scrape.get("workers", 16)),
                   policy=http.policy_from_params(scrape), limiter=http.limiter_from_params(scrape))

    def resolve(self, row: dict) -> CoverRef:
        url = str(row.get(self.column) or "").strip()
        if not url.startswith(("http://", "https://")):
            raise CoverError("no_image", f"column '{self.column}' holds no http(s) URL")
        return CoverRef(cover_id=cover_id_from_url(url),
                        url=http.rehost(sized_url(url, self.size), self.image_host))

    def fetch(self, ref: CoverRef) -> bytes:
        return http.get_cover_bytes(self.session, ref.url, timeout=self.timeout, policy=self.policy,
                            limiter=self.limiter)
