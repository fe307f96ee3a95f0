"""Covers we can reason about, drawn from files that ship with matplotlib (no downloads)."""

from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

MPL = Path(matplotlib.get_data_path())
GRACE = MPL / "sample_data" / "grace_hopper.jpg"
BOLD = str(MPL / "fonts" / "ttf" / "DejaVuSans-Bold.ttf")


def grace() -> Image.Image:
    return Image.open(GRACE).convert("RGB")


def face_paste(scale: float, flip=False, tint=None, bg=(40, 110, 190), size=300) -> Image.Image:
    """A cover like the demo's: a crop of the photo's face pasted on a flat background."""
    face = grace().crop((110, 60, 420, 370))  # the face box is about x 155-377, y 105-327
    if flip:
        face = ImageOps.mirror(face)
    if tint:
        face = Image.blend(face, Image.new("RGB", face.size, tint), 0.3)
    side = int(size * scale)
    cover = Image.new("RGB", (size, size), bg)
    cover.paste(face.resize((side, side)), ((size - side) // 3, (size - side) // 2))
    return cover


def noise(seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (300, 300, 3), np.uint8))


def with_text(image: Image.Image, text: str, size: int, band=True) -> Image.Image:
    image = image.copy()
    draw = ImageDraw.Draw(image)
    y = image.height - size - 40
    if band:
        draw.rectangle((0, y - 10, image.width, y + size + 14), fill=(10, 10, 10))
    draw.text((12, y), text, font=ImageFont.truetype(BOLD, size), fill=(250, 250, 250))
    return image
