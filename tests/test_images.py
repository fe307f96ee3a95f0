import io

import pytest
from PIL import Image

from coverpop.covers.images import BadImage, normalize_cover, sha256


def encode(img, fmt="JPEG"):
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_any_image_becomes_square_rgb_jpeg():
    rgba = Image.new("RGBA", (400, 200), (255, 0, 0, 128))
    data, w, h = normalize_cover(encode(rgba, "PNG"), 64)
    out = Image.open(io.BytesIO(data))
    assert (w, h) == (64, 64) and out.size == (64, 64) and out.format == "JPEG" and out.mode == "RGB"


def test_truncated_and_garbage_bytes_are_bad():
    good = encode(Image.effect_noise((300, 300), 60).convert("RGB"))
    with pytest.raises(BadImage):
        normalize_cover(good[: len(good) // 2], 300)
    with pytest.raises(BadImage):
        normalize_cover(b"<html>not an image</html>", 300)


def test_sha256_is_content_hash():
    assert sha256(b"a") != sha256(b"b") and sha256(b"a") == sha256(b"a")
