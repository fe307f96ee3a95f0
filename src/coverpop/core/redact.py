"""Credentials out of everything coverpop writes or prints.

A URL loses its userinfo (`user:password@`) and the values of secret-looking query parameters
(tokens, signatures, keys); free text gets the same treatment for every URL in it, and for
`Basic`/`Bearer` header values. Applied wherever a URL, or a message that may hold one, is
recorded (manifest, journal) or printed (errors, logs): the outputs are pushed to a shared bucket.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"

# A query key is secret when it names a token, secret, password, key or signature in any common
# spelling (access_token, client_secret, api_key, sig, X-Amz-Signature, X-Goog-Credential, ...).
_SECRET_KEY = re.compile(
    r"token|secret|passw|pwd|key|sig|auth|credential|session|cookie|^code$|^x-amz-|^x-goog-",
    re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"<>]+")
_TRAILING = ").,;:'\"]}>"
_HEADER_SECRET = re.compile(r"\b(Basic|Bearer)\s+[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE)
_QUERY_PAIR = re.compile(r"(?<=[?&])([^=&\s#\"'<>]+)=([^&\s#\"'<>]+)")  # a bare "/path?k=v" too


def _redact_pairs(text: str) -> str:
    """`a=1&token=x` -> `a=1&token=***` (keys and other values left as they were written)."""
    out = []
    for pair in text.split("&"):
        key, eq, value = pair.partition("=")
        if eq and value and _SECRET_KEY.search(unquote(key)):
            pair = f"{key}={MASK}"
        out.append(pair)
    return "&".join(out)


def redact_url(url: str) -> str:
    """The URL with its userinfo and the values of secret query parameters masked."""
    url = str(url)
    try:
        parts = urlsplit(url)
    except ValueError:          # e.g. a broken IPv6 literal: mask whatever sits before an '@'
        return re.sub(r"//[^/@\s]*@", f"//{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    fragment = _redact_pairs(parts.fragment) if "=" in parts.fragment else parts.fragment
    return urlunsplit((parts.scheme, netloc, parts.path, _redact_pairs(parts.query), fragment))


def has_secret(url: str) -> bool:
    """True when redact_url would hide something: userinfo or a secret query parameter."""
    return redact_url(url) != str(url)


def redact_text(text) -> str:
    """Every URL in `text` redacted (and every bare `?key=value` query), Basic/Bearer values
    masked."""
    def one(m: re.Match) -> str:
        url = m.group(0)
        tail = len(url) - len(url.rstrip(_TRAILING))
        return redact_url(url[:len(url) - tail]) + url[len(url) - tail:]

    def pair(m: re.Match) -> str:
        return f"{m.group(1)}={MASK}" if _SECRET_KEY.search(unquote(m.group(1))) else m.group(0)

    text = _URL.sub(one, str(text))
    return _HEADER_SECRET.sub(rf"\1 {MASK}", _QUERY_PAIR.sub(pair, text))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message (urllib3 logs request lines with
    their query strings at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_text(record.getMessage()), None
        return True


def redact_library_logs(*names: str) -> None:
    """Attach RedactingFilter to these loggers (logger filters are not inherited: name each)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
