"""The `scrape` params, read once into one object that every resolver and the stage share.

No defaults of its own (the schema holds them): a key missing here is an error, not a silent
fallback. Base URLs and the host allow-list can come from the environment instead (the
environment wins), which is also the only place a URL carrying a credential may come from:
params.yaml is committed and its values are copied into dvc.lock.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from coverpop.core.errors import CoverpopError
from coverpop.core.params import check
from coverpop.core.redact import has_secret, redact_url

# key -> environment variable that wins over params.yaml
ENV = {"api_url": "COVERPOP_SPOTIFY_API_URL", "token_url": "COVERPOP_SPOTIFY_TOKEN_URL",
       "oembed_url": "COVERPOP_OEMBED_URL", "image_host": "COVERPOP_IMAGE_HOST",
       "allowed_hosts": "COVERPOP_ALLOWED_HOSTS"}


@dataclass(frozen=True)
class ScrapeSettings:
    resolver: str
    size: int
    workers: int
    rate_limit: float       # requests/s to the API or oEmbed, all workers together; 0 = no cap
    timeout: float          # seconds for one whole HTTP request: connect, redirects, headers, body
    retries: int
    backoff: float
    max_retry_after: float
    max_bytes: int          # largest body accepted, after decompression
    batch: bool
    url_column: str
    api_url: str
    token_url: str
    oembed_url: str
    image_host: str         # "" = fetch covers where the answers say
    allowed_hosts: tuple[str, ...]
    min_success: float
    min_source_px: int      # reject a downloaded image whose shorter side is below this
    max_aspect: float       # reject an image longer than this many times its width (0 = off)
    retry_failed: bool      # retry every recorded failure, also those that look permanent

    @classmethod
    def from_params(cls, scrape: Mapping, environ: Mapping = os.environ) -> ScrapeSettings:
        """The validated `scrape` section (types and ranges: the params schema, checked here too
        for code that builds the section by hand), with the environment's URLs and hosts."""
        for f in fields(cls):
            if f.name not in scrape:
                raise CoverpopError(f"params.yaml: scrape.{f.name} is missing")
        check({f"scrape.{k}": v for k, v in scrape.items()})

        def url(key: str, given: str) -> str:
            env = environ.get(ENV[key])
            value = env or given
            if env:
                parts = urlsplit(env)
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    raise CoverpopError(f"{ENV[key]}={redact_url(env)!r} is not an http(s) URL")
            elif has_secret(value):
                raise CoverpopError(
                    f"params.yaml: scrape.{key}={redact_url(value)!r} carries a credential; "
                    f"params.yaml and dvc.lock are committed: give this URL in the environment "
                    f"variable {ENV[key]} instead")
            return value

        env_hosts = environ.get(ENV["allowed_hosts"])
        hosts = (tuple(h.strip() for h in env_hosts.split(",") if h.strip()) if env_hosts
                 else tuple(scrape["allowed_hosts"]))
        return cls(resolver=scrape["resolver"], size=scrape["size"], workers=scrape["workers"],
                   rate_limit=scrape["rate_limit"], timeout=scrape["timeout"],
                   retries=scrape["retries"], backoff=scrape["backoff"],
                   max_retry_after=scrape["max_retry_after"], max_bytes=scrape["max_bytes"],
                   batch=scrape["batch"], url_column=scrape["url_column"],
                   api_url=url("api_url", scrape["api_url"]),
                   token_url=url("token_url", scrape["token_url"]),
                   oembed_url=url("oembed_url", scrape["oembed_url"]),
                   image_host=url("image_host", scrape["image_host"]),
                   allowed_hosts=hosts, min_success=scrape["min_success"],
                   min_source_px=scrape["min_source_px"], max_aspect=scrape["max_aspect"],
                   retry_failed=scrape["retry_failed"])

    @property
    def image_mirror_host(self) -> str:
        return (urlsplit(self.image_host).hostname or "") if self.image_host else ""
