"""The offline demo: a synthetic tracks table in the Kaggle schema, and the covers it describes.

Popularity depends on what is visible on the cover (a face, colour saturation, a bold text band),
on genre and year, and on noise, with many zeros like the real data. Albums hold several tracks
that share a cover, and a few albums re-use another album's art (an exact copy or a re-encoded,
resized one) so the dedupe stage has real work. The `demo_*` columns record the planted truth.

Two strengths (`data.demo.effects`): `strong` (the default) plants cover effects a model must find
by a wide margin, to check the machinery; `weak` plants them as weak as real covers show them
(covers alone worth a Spearman of about 0.1, genre and year far stronger, a face worth a couple
of points), to choose and test a recipe under realistic difficulty. The covers themselves are
drawn the same way in both: only how popularity follows from them differs.
"""

import colorsys
import io
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps


GENRES = ["pop", "hip-hop", "rock", "dance", "indie", "jazz", "classical", "metal", "country",
          "ambient", "k-pop", "techno"]
GENRE_EFFECT = dict(zip(GENRES, [8, 6, 2, 4, 0, -4, -6, -3, 1, -5, 5, -1]))


@dataclass(frozen=True)
class Effects:
    """How popularity follows from an album, in popularity points (before the zero-inflation):
    quality = face + saturation·s + text + genre_scale·GENRE_EFFECT + year_slope·(year − 2000)
    + offset + N(0, album_noise); a track adds N(0, track_noise) and is 0 with probability
    1 / (1 + exp((latent − zero_centre) / zero_width))."""

    face: float
    saturation: float     # for saturation 1 (0 = grey)
    text: float
    genre_scale: float
    year_slope: float
    offset: float
    album_noise: float
    track_noise: float
    zero_centre: float
    zero_width: float


EFFECTS = {
    # covers decide a lot: a model that learns from pixels must beat the mean by a wide margin
    "strong": Effects(face=20.0, saturation=16.0, text=9.0, genre_scale=1.0, year_slope=0.4,
                      offset=8.0, album_noise=6.0, track_noise=5.0, zero_centre=22.0,
                      zero_width=5.0),
    # as weak as real covers: oracle Spearman of the cover truth about 0.1, genre + year about
    # 0.4, a face +2 points, about 30 % zeros among the kept covers (calibrated: see
    # docs/real-covers.md)
    "weak": Effects(face=2.5, saturation=4.0, text=2.0, genre_scale=1.2, year_slope=0.5,
                    offset=14.0, album_noise=11.0, track_noise=6.0, zero_centre=18.0,
                    zero_width=5.0),
}
FACE_EFFECT, SATURATION_EFFECT, TEXT_EFFECT = (EFFECTS["strong"].face, EFFECTS["strong"].saturation,
                                               EFFECTS["strong"].text)
ALPHABET = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))


def _spotify_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Random 22-character base-62 ids, like Spotify's."""
    return ["".join(row) for row in rng.choice(ALPHABET, size=(n, 22))]


def make_tracks(n_albums: int = 2000, seed: int = 0,
                effects: str | Effects = "strong") -> pd.DataFrame:
    """A deterministic tracks table: Kaggle columns, album_id/album_name and the demo_* truth.
    `effects`: a name in EFFECTS or an Effects; the covers do not depend on it."""
    if isinstance(effects, str):
        effects = EFFECTS[effects]   # the params schema checked the name
    e = effects
    rng = np.random.default_rng(seed)
    n_artists = max(1, n_albums // 3)
    artist_genre = rng.choice(GENRES, size=n_artists)
    albums = pd.DataFrame({
        "album_id": _spotify_ids(rng, n_albums),
        "artist": rng.integers(0, n_artists, size=n_albums),
        "year": rng.integers(2000, 2024, size=n_albums),
        "demo_face": (rng.random(n_albums) < 0.35).astype(int),
        "demo_saturation": rng.random(n_albums).round(3),
        "demo_text": (rng.random(n_albums) < 0.3).astype(int),
        "demo_hue": rng.random(n_albums).round(3),
        "demo_brightness": rng.uniform(0.35, 0.95, n_albums).round(3),
        "demo_seed": rng.integers(0, 2**31, size=n_albums),
        "demo_variant": "original",
    })
    # Re-releases: ~5 % of albums take another album's art, as an exact copy or re-encoded.
    reuse = rng.random(n_albums) < 0.05
    sources = rng.integers(0, n_albums, size=n_albums)
    art = ["demo_face", "demo_saturation", "demo_text", "demo_hue", "demo_brightness", "demo_seed"]
    for i in np.flatnonzero(reuse):
        j = sources[i]
        if j == i or albums.at[j, "demo_variant"] != "original":
            continue
        albums.loc[i, art] = albums.loc[j, art].to_numpy()
        albums.at[i, "demo_variant"] = "copy" if rng.random() < 0.4 else "reencoded"
    albums["genre"] = artist_genre[albums["artist"]]
    albums["artist_name"] = [f"Demo Artist {a:04d}" for a in albums["artist"]]
    albums["album_name"] = [f"Demo Album {i:05d}" for i in range(n_albums)]
    albums["quality"] = (
        e.face * albums["demo_face"] + e.saturation * albums["demo_saturation"]
        + e.text * albums["demo_text"] + e.genre_scale * albums["genre"].map(GENRE_EFFECT)
        + e.year_slope * (albums["year"] - 2000) + rng.normal(0, e.album_noise, n_albums)
        + e.offset)

    tracks = albums.loc[albums.index.repeat(1 + rng.poisson(1.3, n_albums))].reset_index(drop=True)
    n = len(tracks)
    latent = tracks["quality"] + rng.normal(0, e.track_noise, n)
    # Zero-inflation: weaker tracks are more often at popularity 0 (about 40 % overall, strong).
    zero = rng.random(n) < 1 / (1 + np.exp((latent - e.zero_centre) / e.zero_width))
    tracks["popularity"] = np.where(zero, 0, np.clip(np.round(latent), 0, 100)).astype(int)
    tracks["track_id"] = _spotify_ids(rng, n)
    tracks["track_name"] = [f"Demo Track {i:06d}" for i in range(n)]
    audio = {
        "danceability": rng.random(n), "energy": rng.random(n),
        "key": rng.integers(0, 12, n), "loudness": rng.uniform(-30, 0, n),
        "mode": rng.integers(0, 2, n), "speechiness": rng.random(n) * 0.5,
        "acousticness": rng.random(n), "instrumentalness": rng.random(n) ** 3,
        "liveness": rng.random(n) * 0.6, "valence": rng.random(n),
        "tempo": rng.uniform(60, 190, n), "duration_ms": rng.integers(90_000, 400_000, n),
        "time_signature": rng.choice([3, 4, 4, 4, 5], n),
    }
    for name, values in audio.items():
        tracks[name] = np.round(values, 4) if values.dtype.kind == "f" else values
    columns = ["artist_name", "track_name", "track_id", "popularity", "year", "genre",
               *audio, "album_id", "album_name", *art, "demo_variant"]
    return tracks[columns]


@cache
def _face() -> Image.Image:
    """A real face photo that ships with matplotlib, cropped around the face."""
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return Image.open(f).convert("RGB").crop((125, 75, 407, 357))


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


def render_cover(row: dict, size: int = 300) -> Image.Image:
    """Draw the cover a demo row describes; the same row always gives the same pixels."""
    rng = np.random.default_rng(int(row["demo_seed"]))
    hue, sat, val = float(row["demo_hue"]), float(row["demo_saturation"]), float(row["demo_brightness"])
    img = Image.new("RGB", (size, size), _hsv(hue, sat, val))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(4, 10)):
        x0, y0 = rng.integers(-size // 4, size, 2)
        w, h = rng.integers(size // 8, size // 2, 2)
        colour = _hsv(hue + rng.normal(0, 0.12), sat * rng.uniform(0.7, 1.0), rng.uniform(0.2, 1.0))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=colour)
    if int(row["demo_face"]):
        side = int(size * rng.uniform(0.4, 0.65))
        face = _face().resize((side, side), Image.LANCZOS)
        if rng.random() < 0.5:
            face = ImageOps.mirror(face)
        if rng.random() < 0.3:
            face = ImageOps.colorize(ImageOps.grayscale(face), "black", _hsv(hue, 0.4, 1.0))
        mask = Image.new("L", (side, side), 0)
        ImageDraw.Draw(mask).ellipse((0, 0, side, side), fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(side // 30))
        img.paste(face, tuple(int(v) for v in rng.integers(0, size - side + 1, 2)), mask)
    if int(row["demo_text"]):
        band = int(size * 0.2)
        top = int(rng.integers(0, size - band))
        dark = rng.random() < 0.5
        draw.rectangle((0, top, size, top + band), fill=(15, 15, 15) if dark else (245, 245, 245))
        font = ImageFont.load_default(size=int(band * 0.75))
        word = "".join(rng.choice(list("ABCDEFGHKMNRSTWXZ"), 5))
        draw.text((size * 0.06, top + band * 0.1), word, font=font,
                  fill=(245, 245, 245) if dark else (15, 15, 15), stroke_width=2,
                  stroke_fill=(245, 245, 245) if dark else (15, 15, 15))
    return img


def cover_bytes(row: dict, size: int = 300) -> bytes:
    """JPEG bytes of a demo cover; "reencoded" re-releases get a smaller, lossier copy."""
    img = render_cover(row, size)
    quality = 92
    if row.get("demo_variant") == "reencoded":
        img = img.resize((size * 4 // 5, size * 4 // 5), Image.BILINEAR)
        quality = 60
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()
