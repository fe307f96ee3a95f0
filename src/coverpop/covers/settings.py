"""The `scrape` params, read once into one object that every resolver and the stage share.

params.yaml is the single home of the defaults: a key missing here is an error, not a silent
fallback. Base URLs and the host allow-list can come from the environment instead (the
environment wins), which is also the only place a URL carrying a credential may come from:
params.yaml is committed and its values are copied into dvc.lock.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from coverpop.core.errors import CoverpopError
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

    @classmethod
    def from_params(cls, scrape: Mapping, environ: Mapping = os.environ) -> ScrapeSettings:
        def get(key: str, kind):
            if key not in scrape:
                raise CoverpopError(f"params.yaml: scrape.{key} is missing")
            value = scrape[key]
            try:
                if kind is bool:
                    if not isinstance(value, bool):
                        raise ValueError
                    return value
                if kind in (int, float) and isinstance(value, bool):
                    raise ValueError
                if kind is int and float(value) != int(float(value)):
                    raise ValueError                      # 2.5 workers is not 2 workers
                return kind(float(value)) if kind is int else kind(value)
            except (TypeError, ValueError, OverflowError):
                raise CoverpopError(f"params.yaml: scrape.{key}={value!r} is not "
                                    f"{'a number' if kind in (int, float) else kind.__name__}"
                                    ) from None

        def url(key: str, required: bool = True) -> str:
            env = environ.get(ENV[key])
            value = env if env else get(key, str)
            origin = ENV[key] if env else f"params.yaml: scrape.{key}"
            if not value and not required:
                return ""
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise CoverpopError(f"{origin}={redact_url(value)!r} is not an http(s) URL")
            if not env and has_secret(value):
                raise CoverpopError(
                    f"params.yaml: scrape.{key}={redact_url(value)!r} carries a credential; "
                    f"params.yaml and dvc.lock are committed: give this URL in the environment "
                    f"variable {ENV[key]} instead")
            return value

        env_hosts = environ.get(ENV["allowed_hosts"])
        if env_hosts:
            hosts = tuple(h.strip() for h in env_hosts.split(",") if h.strip())
        else:
            hosts = scrape.get("allowed_hosts")
            if "allowed_hosts" not in scrape:
                raise CoverpopError("params.yaml: scrape.allowed_hosts is missing")
            if not isinstance(hosts, list | tuple) or not all(isinstance(h, str) for h in hosts):
                raise CoverpopError(f"params.yaml: scrape.allowed_hosts={hosts!r} is not a list "
                                    "of host names")
            hosts = tuple(hosts)
        return cls(resolver=get("resolver", str), size=get("size", int),
                   workers=get("workers", int), rate_limit=get("rate_limit", float),
                   timeout=get("timeout", float), retries=get("retries", int),
                   backoff=get("backoff", float), max_retry_after=get("max_retry_after", float),
                   max_bytes=get("max_bytes", int), batch=get("batch", bool),
                   url_column=get("url_column", str), api_url=url("api_url"),
                   token_url=url("token_url"), oembed_url=url("oembed_url"),
                   image_host=url("image_host", required=False), allowed_hosts=hosts,
                   min_success=get("min_success", float))

    @property
    def image_mirror_host(self) -> str:
        return (urlsplit(self.image_host).hostname or "") if self.image_host else ""
