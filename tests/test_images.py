import io

import numpy as np
import pytest
from PIL import Image

from coverpop.covers.images import (BadImage, RejectedImage, downscale_cover, normalize_cover,
                                    sha256)


def encode(img, fmt="JPEG", **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def decoded(jpeg: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(jpeg))
    assert img.format == "JPEG" and img.mode == "RGB"
    return np.asarray(img).astype(int)


def near(pixel, rgb, tol=8) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel) - np.asarray(rgb)) <= tol))


def test_any_image_becomes_square_rgb_jpeg_and_keeps_its_source_size():
    rgba = Image.new("RGBA", (400, 200), (255, 0, 0, 128))
    cover = normalize_cover(encode(rgba, "PNG"), 64)
    out = Image.open(io.BytesIO(cover.jpeg))
    assert out.size == (64, 64) and out.format == "JPEG" and out.mode == "RGB"
    assert (cover.source_width, cover.source_height) == (400, 200)


def test_16_bit_greyscale_is_scaled_not_clipped_to_white():
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (256, 1))
    png = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(png)).mode == "I;16"
    px = decoded(normalize_cover(png, 256).jpeg)
    assert near(px[128, 2], (0, 0, 0), 10) and near(px[128, 253], (255, 255, 255), 10)
    assert near(px[128, 128], (128, 128, 128), 10)        # mid-grey stays mid-grey


@pytest.mark.parametrize("mode, fmt", [("I", "TIFF"), ("F", "TIFF")])
def test_32_bit_greyscale_modes(mode, fmt):
    scale = 65535 if mode == "I" else 1.0                 # 16-bit data widened / floats in 0-1
    a = np.full((100, 100), 0.5 * scale, dtype=np.float32 if mode == "F" else np.int32)
    img = Image.fromarray(a, mode) if mode == "F" else Image.fromarray(a)
    data = encode(img, fmt)
    assert Image.open(io.BytesIO(data)).mode == mode
    assert near(decoded(normalize_cover(data, 64).jpeg)[32, 32], (128, 128, 128), 10)


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (100, 100), (0, 0, 0, 0))          # transparent black...
    rgba.paste((255, 0, 0, 255), (0, 0, 50, 100))              # ...left half opaque red
    px = decoded(normalize_cover(encode(rgba, "PNG"), 100).jpeg)
    assert near(px[50, 90], (255, 255, 255)) and near(px[50, 10], (255, 0, 0), 12)
    half = Image.new("RGBA", (80, 80), (0, 0, 255, 128))        # half-transparent blue
    assert near(decoded(normalize_cover(encode(half, "PNG"), 80).jpeg)[40, 40], (127, 127, 255))


def test_la_and_palette_with_transparent_index_on_white():
    la = Image.new("LA", (80, 80), (0, 0))
    assert near(decoded(normalize_cover(encode(la, "PNG"), 80).jpeg)[40, 40], (255, 255, 255))
    p = Image.new("P", (80, 80), 1)
    p.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    p.paste(0, (0, 0, 40, 80))                                  # index 0 = transparent
    data = encode(p, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).mode == "P"
    px = decoded(normalize_cover(data, 80).jpeg)
    assert near(px[40, 10], (255, 255, 255)) and near(px[40, 70], (0, 200, 0), 12)
    gif = encode(p, "GIF", transparency=0)
    assert near(decoded(normalize_cover(gif, 80).jpeg)[40, 10], (255, 255, 255))


def test_cmyk_and_bilevel_convert():
    cmyk = Image.new("CMYK", (80, 80), (0, 255, 255, 0))          # pure red in CMYK
    assert near(decoded(normalize_cover(encode(cmyk, "JPEG"), 80).jpeg)[40, 40], (255, 0, 0), 20)
    one = Image.new("1", (80, 80), 1)
    assert near(decoded(normalize_cover(encode(one, "PNG"), 80).jpeg)[40, 40], (255, 255, 255))


def test_exif_rotation_is_applied_before_the_source_size_is_taken():
    img = Image.new("RGB", (120, 80), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6                                             # rotate 90°
    cover = normalize_cover(encode(img, "JPEG", exif=exif), 64)
    assert (cover.source_width, cover.source_height) == (80, 120)


@pytest.mark.parametrize("size, reason", [((1, 1), "too_small"), ((40, 300), "too_small"),
                                          ((3000, 4), "too_small"), ((300, 100), "bad_aspect"),
                                          ((200, 410), "bad_aspect")])
def test_what_cannot_be_a_cover_is_rejected(size, reason):
    data = encode(Image.new("RGB", size, (9, 9, 9)), "PNG")
    with pytest.raises(RejectedImage) as err:
        normalize_cover(data, 64, min_source_px=64, max_aspect=2.0)
    assert err.value.reason == reason and (err.value.width, err.value.height) == size
    assert "scrape." in err.value.detail and "\n" not in err.value.detail


def test_limits_of_zero_are_off_and_borderline_sizes_pass():
    assert normalize_cover(encode(Image.new("RGB", (1, 1)), "PNG"), 8).source_width == 1
    ok = normalize_cover(encode(Image.new("RGB", (128, 64)), "PNG"), 32, min_source_px=64,
                         max_aspect=2.0)
    assert (ok.source_width, ok.source_height) == (128, 64)


def test_truncated_and_garbage_bytes_are_bad_without_object_reprs():
    good = encode(Image.effect_noise((300, 300), 60).convert("RGB"))
    with pytest.raises(BadImage) as err:
        normalize_cover(good[: len(good) // 2], 300)
    assert " at 0x" not in str(err.value)
    with pytest.raises(BadImage) as err:
        normalize_cover(b"<!DOCTYPE html><html><body>Sign in to the Wi-Fi</body></html>", 300)
    assert "HTML" in str(err.value) and " at 0x" not in str(err.value) and "<" not in str(err.value)
    with pytest.raises(BadImage, match="no known image format"):
        normalize_cover(b"\x00" * 1000, 300)


def test_downscale_derives_a_smaller_cover_locally():
    big = normalize_cover(encode(Image.effect_noise((300, 300), 60).convert("RGB")), 300).jpeg
    small = downscale_cover(big, 64)
    assert Image.open(io.BytesIO(small)).size == (64, 64)
    with pytest.raises(BadImage):
        downscale_cover(b"\x00" * 100, 64)


def test_same_input_same_bytes():
    data = encode(Image.effect_noise((300, 300), 60).convert("RGB"))
    assert normalize_cover(data, 64).jpeg == normalize_cover(data, 64).jpeg


def test_sha256_is_content_hash():
    assert sha256(b"a") != sha256(b"b") and sha256(b"a") == sha256(b"a")
