"""Spotify's image CDN (i.scdn.co): a cover's stable id and the same cover at another size.

Shared by every resolver that meets i.scdn.co URLs (Web API, oEmbed, a URL column).
"""

import hashlib
import re
from urllib.parse import urlsplit

# i.scdn.co cover URLs: "ab67616d0000" + size code + 24-hex image id (shared by all sizes).
SIZE_CODES = {640: "b273", 300: "1e02", 64: "4851"}
_SCDN = re.compile(r"ab67616d0000(?P<code>[0-9a-f]{4})(?P<id>[0-9a-f]{24})$")
_LEGACY = re.compile(r"/(?P<id>[0-9a-f]{40})$")   # old covers: a plain 40-hex id, no size code


def cover_id_from_url(url: str) -> str:
    """The dedupe key of a cover URL: its 24-hex image id (or old 40-hex id), else a URL hash."""
    path = urlsplit(url).path
    m = _SCDN.search(path) or _LEGACY.search(path)
    return m.group("id") if m else hashlib.sha1(url.encode()).hexdigest()[:24]


def sized_url(url: str, size: int) -> str:
    """The same cover at another size, by swapping the i.scdn.co size code; else `url` as is."""
    parts = urlsplit(url)
    m = _SCDN.search(parts.path)
    if not m or size not in SIZE_CODES:
        return url
    path = parts.path[:m.start("code")] + SIZE_CODES[size] + parts.path[m.end("code"):]
    return parts._replace(path=path).geturl()
