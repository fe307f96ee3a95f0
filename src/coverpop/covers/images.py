"""Decode, verify and normalise one cover: any image bytes in, a square RGB JPEG out."""

import hashlib
import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

JPEG_QUALITY = 90


class BadImage(ValueError):
    """The bytes are not a complete, decodable image."""


def normalize_cover(data: bytes, size: int) -> tuple[bytes, int, int]:
    """Return (jpeg_bytes, width, height): centre-cropped to a square, resized to `size`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()  # a truncated file fails here, not later in training
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise BadImage(f"{type(err).__name__}: {err}") from None
    img = ImageOps.exif_transpose(img).convert("RGB")
    img = ImageOps.fit(img, (size, size), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue(), size, size


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
