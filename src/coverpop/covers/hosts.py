"""Where cover images may be downloaded from.

Image URLs come from answers (the API, oEmbed) or from a column of the tracks table, so they are
not trusted: only hosts in `scrape.allowed_hosts` are fetched (by default Spotify's image CDN),
at every redirect hop too. An entry is a host name or IP (`i.scdn.co`), a pattern
(`image-cdn-*.spotifycdn.com`), or `*` for any host. A host reached through a pattern must be a
public address: loopback, private, link-local and other special ranges are refused before and
when the connection is made (so DNS tricks do not get round it; core/net.py's address policy).
A host named exactly, and the mirror in `scrape.image_host`, are the user's explicit choice and
are fetched wherever they point.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from coverpop.core.net import Addresses, is_public  # noqa: F401  (is_public: re-exported)
from coverpop.core.redact import redact_url
from coverpop.covers.types import CoverError

SCHEMES = ("http", "https")


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").rstrip(".").lower()


# host_not_allowed and private_address depend on scrape.allowed_hosts, not on the track: they are
# marked retryable so that a later run, with the list changed, asks again (the check is free).


class HostPolicy:
    """Decides, per URL, whether it may be fetched and whether its address must be public."""

    def __init__(self, allowed: Iterable[str], trusted: Iterable[str] = ()):
        allowed = [str(h).strip().rstrip(".").lower() for h in allowed if str(h).strip()]
        self.exact = {h for h in allowed if not any(c in h for c in "*?[")}
        self.exact |= {h.rstrip(".").lower() for h in trusted if h}
        self.patterns = [h for h in allowed if any(c in h for c in "*?[")]
        # What a cover download may connect to: a host named exactly, anywhere; any other host
        # (reached through a pattern) only at a public address.
        self.addresses = Addresses.named(
            hosts=self.exact, hint="name the host exactly in scrape.allowed_hosts to allow it")

    def check(self, url: str) -> bool:
        """Raise CoverError when `url` may not be fetched; return True when its address must be
        checked to be public (the host matched a pattern, not an exact entry)."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in SCHEMES:
            raise CoverError("bad_scheme", f"refused to fetch {redact_url(url)[:200]}: only "
                                           "http and https are fetched")
        host = host_of(url)
        if not host:
            raise CoverError("bad_url", f"{redact_url(url)[:200]} names no host")
        if host in self.exact:
            return False
        if any(fnmatchcase(host, p) for p in self.patterns):
            return True
        raise CoverError("host_not_allowed",
                         f"{host} is not in scrape.allowed_hosts (add it for a mirror, or '*' for "
                         "any public host)", retryable=True)
