"""Decode, verify and normalise one cover: any image bytes in, a square RGB JPEG out.

Every PIL mode is brought to 8-bit RGB the way it looks on screen: 16-bit and 32-bit greyscale
are scaled (not clipped to white), transparency of any kind (RGBA, LA, P with a transparent
index, ...) is composited on white, CMYK and YCbCr are converted. What cannot be a cover (a tiny
source, a long strip) is rejected before it becomes a plausible-looking flat square.
"""

import hashlib
import io
import re
import warnings
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

JPEG_QUALITY = 90
WHITE = (255, 255, 255)
_REPR = re.compile(r"\s*<[^<>]* (object )?at 0x[0-9a-fA-F]+>")   # "<_io.BytesIO object at 0x..>"


class BadImage(ValueError):
    """The bytes are not a complete, decodable image (reason corrupt_image)."""


class RejectedImage(ValueError):
    """A decodable image that cannot be a cover (too small, too elongated)."""

    def __init__(self, reason: str, detail: str, width: int, height: int):
        super().__init__(detail)
        self.reason, self.detail, self.width, self.height = reason, detail, width, height


@dataclass(frozen=True)
class Cover:
    jpeg: bytes
    source_width: int    # the image as it came, after EXIF rotation
    source_height: int


def _what(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return f"{len(data)} bytes of HTML (a login or error page?)"
    if head.startswith((b"{", b"[")):
        return f"{len(data)} bytes of JSON"
    return f"{len(data)} bytes, no known image format"


def _decode(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()  # a truncated file fails here, not later in training
        return ImageOps.exif_transpose(img)
    except UnidentifiedImageError:
        raise BadImage(f"not an image: {_what(data)}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as err:
        text = _REPR.sub("", str(err)).strip() or type(err).__name__
        raise BadImage(f"{type(err).__name__}: {text}") from None


def _grey_to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale -> L, scaled to the range its mode implies."""
    a = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        a = a / 257.0
    elif img.mode == "I":        # PIL widens 16-bit files to I; 8-bit data stays below 256
        a = a / 257.0 if a.max(initial=0) > 255 else a
    elif img.mode == "F":        # floats: 0-1 by convention, else treated like 8-bit values
        a = a * 255.0 if a.max(initial=0) <= 1.0 else a
    a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB as displayed: transparency composited on white."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return _grey_to_8bit(img).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except (ValueError, OSError):
        raise BadImage(f"unsupported colour mode {img.mode}") from None


def check_source(width: int, height: int, min_source_px: int = 0, max_aspect: float = 0.0) -> None:
    """Raise RejectedImage when a source of this size cannot be a cover (0 turns a check off)."""
    if min_source_px and min(width, height) < min_source_px:
        raise RejectedImage("too_small", f"source is {width}x{height} px, below "
                                         f"scrape.min_source_px={min_source_px}", width, height)
    if max_aspect and max(width, height) > max_aspect * min(width, height):
        raise RejectedImage("bad_aspect", f"source is {width}x{height} px, longer side over "
                                          f"scrape.max_aspect={max_aspect:g} times the shorter",
                             width, height)


def _encode(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def normalize_cover(data: bytes, size: int, min_source_px: int = 0,
                    max_aspect: float = 0.0) -> Cover:
    """Decode, check and convert: centre-cropped to a square, resized to `size`, as JPEG."""
    img = _decode(data)
    check_source(img.width, img.height, min_source_px, max_aspect)
    square = ImageOps.fit(to_rgb(img), (size, size), Image.LANCZOS)
    return Cover(_encode(square), img.width, img.height)


def downscale_cover(jpeg: bytes, size: int) -> bytes:
    """A stored cover at a smaller size, derived locally (no download)."""
    img = _decode(jpeg)
    return _encode(ImageOps.fit(to_rgb(img), (size, size), Image.LANCZOS))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def perceptual_hash(jpeg: bytes) -> str:
    """The stored cover's 64-bit perceptual hash (imagehash's pHash) as 16 hex digits: what
    dedupe compares. Computed once, where the cover is stored (about 2 ms)."""
    with Image.open(io.BytesIO(jpeg)) as img:
        return np.packbits(imagehash.phash(img).hash.flatten()).tobytes().hex()
