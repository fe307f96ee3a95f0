"""What Spotify's services answer, checked before use: the token, a track, a batch of tracks, an
oEmbed document; and what a track id looks like.

Every answer is validated (pydantic) against the fields coverpop reads; anything of another type
(a string where an object is expected, text where a number is, a URL that is not a string) makes
a CoverError("bad_response") for that track with the offending field named, never an exception
out of the run. Fields coverpop does not read are ignored.
"""

from __future__ import annotations

import codecs
import json
import re
from email.message import Message
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from coverpop.covers.types import CoverError

M = TypeVar("M", bound=BaseModel)
Text = Annotated[StrictStr, Field(max_length=2000)]
Url = Annotated[StrictStr, Field(max_length=4096)]

_TRACK_ID = re.compile(
    r"(?:spotify:track:|https?://open\.spotify\.com/(?:intl-[a-z-]+/)?track/)?"
    r"([0-9A-Za-z]{22})(?:\?\S*)?")


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Token(_Shape):
    access_token: Annotated[StrictStr, Field(min_length=1, max_length=4096)]
    expires_in: Annotated[float, Field(ge=0)] | None = None


class Image(_Shape):
    url: Url
    width: int | None = None
    height: int | None = None


class Album(_Shape):
    id: Text | None = None
    name: Text | None = None
    release_date: Text | None = None
    images: list[Image] | None = None


class Track(_Shape):
    album: Album


class Tracks(_Shape):
    tracks: list[Any]          # each entry is checked on its own: one bad track spoils no other


class OEmbed(_Shape):
    thumbnail_url: Url | None = None


def track_id_of(value: Any) -> str:
    """The 22-character id of a track id, URI or open.spotify.com URL; CoverError otherwise."""
    m = _TRACK_ID.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if not m:
        raise CoverError("bad_id", f"{str(value)[:60]!r} is not a Spotify track id")
    return m.group(1)


def looks_html(body: bytes, content_type: str) -> bool:
    return "html" in content_type.lower() or body.lstrip()[:1] == b"<"


def describe_body(body: bytes, content_type: str) -> str:
    if looks_html(body, content_type):
        return "an HTML page, not JSON (a captive portal, a login page or a wrong URL?)"
    return "not JSON" if body.strip() else "an empty answer, not JSON"


def charset_of(content_type: str) -> str:
    """The charset a Content-Type declares ('' when none, or one Python does not know)."""
    msg = Message()
    msg["Content-Type"] = content_type or ""
    name = str(msg.get_param("charset") or "").strip().strip("'\"")
    try:
        return codecs.lookup(name).name if name else ""
    except LookupError:
        return ""


def decode_json_text(body: bytes, content_type: str) -> str:
    """The answer's text: by its declared charset; else UTF-8, with or without a BOM (RFC 8259;
    a UTF-16/32 BOM is honoured too)."""
    charset = charset_of(content_type)
    if charset in ("", "utf-8"):
        for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                           (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                           (codecs.BOM_UTF16_BE, "utf-16")):
            if body.startswith(bom):
                return body.decode(codec)
        return body.decode("utf-8")
    return body.decode(charset)


def parse_json(body: bytes, content_type: str, where: str) -> Any:
    """The JSON document in `body`, decoded by its declared charset; CoverError("bad_response",
    retryable) when there is none."""
    try:
        return json.loads(decode_json_text(body, content_type))
    except UnicodeDecodeError:
        declared = charset_of(content_type)
        what = (describe_body(body, content_type) if looks_html(body, content_type) else
                f"text that is not the {declared} it declares" if declared else
                "text that is not UTF-8 (and declares no charset)")
        raise CoverError("bad_response", f"{where} answered {what}", retryable=True) from None
    except (ValueError, RecursionError):
        raise CoverError("bad_response", f"{where} answered {describe_body(body, content_type)}",
                         retryable=True) from None


def check(model: type[M], obj: Any, where: str) -> M:
    """`obj` as `model`, or CoverError("bad_response") naming the first fields that are wrong."""
    try:
        return model.model_validate(obj)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}"
            for e in err.errors(include_url=False, include_input=False)[:2])
        raise CoverError("bad_response", f"{where}: unexpected answer ({problems})",
                         retryable=True) from None
