"""Interpretable cover features: faces, colour, brightness, hue and a large-text heuristic.

Every feature is computed on the cover resized to WORK_SIZE px (longest side), so covers stored
at different sizes give comparable numbers. The face detector is OpenCV's Haar frontal-face
cascade (the "alt2" variant: on pasted-face test covers it found every face with no false
alarms, where "default" missed some), whose model ships inside `opencv-python-headless<5`.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from coverpop.errors import CoverpopError

WORK_SIZE = 300
# Six 60°-wide hue families, centred on the primaries/secondaries (red spans 330°–30°).
HUE_NAMES = ("red", "yellow", "green", "cyan", "blue", "magenta")
FEATURES = ("faces", "face_area", "colourfulness", "brightness", "saturation",
            "hue", "hue_name", "text_score", "text")
# A pixel counts towards the dominant hue only when it is clearly coloured: grey pixels have
# no meaningful hue.
_MIN_SAT, _MIN_VAL = 0.2, 0.15
# A text line must span at least this share of the cover's width to count as "large text".
# On 60 rendered covers (4 fonts, 30-56 px, plain/noise/face/shape backgrounds) 0.25 found 93 %
# of the titles with no false alarm on the same covers without text.
TEXT_MIN_SPAN = 0.25
# Below this many covers a serial run wins: starting spawned workers costs seconds
# (bench/bench_features.py: 0.65x at 200 covers, 1.8x at 600 on 2 busy cores).
POOL_MIN_COVERS = 300


@lru_cache(maxsize=1)
def _face_cascade() -> cv2.CascadeClassifier:
    """The Haar cascade, loaded once per process (parsing the XML costs ~30 ms)."""
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_alt2.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise CoverpopError(f"{path}: OpenCV face cascade missing (needs opencv-python-headless<5)")
    return cascade


def to_rgb_array(image: Image.Image | np.ndarray, size: int = WORK_SIZE) -> np.ndarray:
    """RGB uint8 array with the longest side scaled to `size` (aspect kept)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = image.convert("RGB")
    scale = size / max(image.size)
    if scale != 1:
        w, h = (max(1, round(d * scale)) for d in image.size)
        image = image.resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(image)


def detect_faces(rgb: np.ndarray) -> np.ndarray:
    """Face boxes (x, y, w, h) found by the Haar cascade; faces under 8 % of the short side are
    ignored (on a 300 px cover those are specks, and they are where false positives live)."""
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    min_side = max(12, int(0.08 * min(gray.shape)))
    boxes = _face_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                             minSize=(min_side, min_side))
    return np.asarray(boxes, dtype=int).reshape(-1, 4)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness M: 0 for grey images, ~100+ for vivid ones."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def colour_stats(rgb: np.ndarray) -> dict:
    """Mean brightness and saturation (0–1, HSV) and the dominant hue of the coloured pixels."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # uint8: H in 0–179 (2° steps), S and V in 0–255
    h = hsv[..., 0].astype(np.float64) * 2.0
    s = hsv[..., 1] / 255.0
    v = hsv[..., 2] / 255.0
    coloured = (s >= _MIN_SAT) & (v >= _MIN_VAL)
    hue = float("nan")
    hue_name = "none"
    if coloured.mean() >= 0.05:
        # Mode of a 36-bin histogram weighted by saturation: the hue the eye reads as dominant.
        hist, edges = np.histogram(h[coloured], bins=36, range=(0, 360), weights=s[coloured])
        hue = float(edges[hist.argmax()] + 5.0)
        hue_name = HUE_NAMES[int(((hue + 30) % 360) // 60)]
    return {"brightness": float(v.mean()), "saturation": float(s.mean()),
            "hue": hue, "hue_name": hue_name}


def text_score(rgb: np.ndarray) -> float:
    """Width share (0–1) of the widest line of large, letter-like blobs; a heuristic, not OCR.

    Letters are found as MSER regions (blobs, dark-on-light or light-on-dark, that stay stable
    over a wide range of thresholds — delta 15 keeps photo and noise speckle out) whose height
    is 5–30 % of the cover and whose shape is letter-like; blobs of comparable height that share
    a top or bottom edge and sit close together are chained into a text line. A bold title across a cover scores
    high; photos, gradients and noise rarely produce three or more aligned, same-height blobs.
    """
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    height, width = gray.shape
    mser = cv2.MSER_create(delta=15, min_area=max(20, int(0.0005 * gray.size)),
                           max_area=int(0.05 * gray.size))
    _, boxes = mser.detectRegions(gray)
    if len(boxes) == 0:
        return 0.0
    boxes = np.asarray(boxes, dtype=float)
    bw, bh = boxes[:, 2], boxes[:, 3]
    letter = ((bh >= 0.05 * height) & (bh <= 0.30 * height)
              & (bw >= 0.15 * bh) & (bw <= 1.5 * bh))
    boxes = _unique_boxes(boxes[letter])
    best = 0.0
    for _, y, _, h in boxes:
        # Same line: a blob of comparable height whose top or bottom is level with this one's
        # (capitals and x-height letters share a baseline, ascenders and descenders one edge).
        tops, bottoms, heights = boxes[:, 1], boxes[:, 1] + boxes[:, 3], boxes[:, 3]
        level = (np.abs(tops - y) <= 0.15 * h) | (np.abs(bottoms - y - h) <= 0.15 * h)
        same_line = boxes[level & (heights >= 0.5 * h) & (heights <= 2.0 * h)]
        if len(same_line) < 3:
            continue
        # Chain neighbours left to right: letters of a word sit closer than half their height
        # (regular patterns such as stars on a flag are spaced wider).
        same_line = same_line[np.argsort(same_line[:, 0])]
        start, end, count = same_line[0, 0], same_line[0, 0] + same_line[0, 2], 1
        for sx, _, sw, _ in same_line[1:]:
            if sx - end <= 0.5 * h:
                end, count = max(end, sx + sw), count + 1
            else:
                if count >= 3:
                    best = max(best, (end - start) / width)
                start, end, count = sx, sx + sw, 1
        if count >= 3:
            best = max(best, (end - start) / width)
    return float(min(best, 1.0))


def _unique_boxes(boxes: np.ndarray) -> np.ndarray:
    """MSER reports nested, near-identical regions for one letter; keep one box per letter."""
    kept: list[np.ndarray] = []
    for box in boxes[np.argsort(-(boxes[:, 2] * boxes[:, 3]))]:
        if not any(_iou(box, k) > 0.5 for k in kept):
            kept.append(box)
    return np.asarray(kept).reshape(-1, 4)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def cover_features(image: Image.Image | np.ndarray) -> dict:
    """All features of one cover (a PIL image or an RGB array)."""
    rgb = to_rgb_array(image)
    faces = detect_faces(rgb)
    area = float((faces[:, 2] * faces[:, 3]).max() / (rgb.shape[0] * rgb.shape[1])) if len(faces) else 0.0
    score = text_score(rgb)
    return {"faces": int(len(faces)), "face_area": area, "colourfulness": colourfulness(rgb),
            **colour_stats(rgb), "text_score": score, "text": int(score >= TEXT_MIN_SPAN)}


def file_features(path: str | Path) -> dict:
    """Features of one image file; an unreadable file gives `error` instead of raising, so one
    bad cover does not stop a folder."""
    try:
        with Image.open(path) as im:
            return {**cover_features(im), "error": ""}
    except (OSError, UnidentifiedImageError, ValueError) as err:
        return {"error": f"{type(err).__name__}: {err}".splitlines()[0]}


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would fight them


def features_table(paths: Sequence[str | Path], workers: int | None = None,
                   progress: bool = True) -> pd.DataFrame:
    """Features for many image files, in order, one row per path (`file` column first).

    Runs in a process pool (`workers`, default: all cores); the cascade is loaded once per
    worker process. `error` is "" for a good file and the reason otherwise.
    """
    paths = [str(p) for p in paths]
    workers = workers or os.cpu_count() or 1
    rows: Iterable[dict]
    bar = dict(total=len(paths), desc="cover features", unit="cover", disable=not progress)
    if workers <= 1 or len(paths) < POOL_MIN_COVERS:
        rows = [file_features(p) for p in tqdm(paths, **bar)]
    else:
        # spawn, not fork: a forked child inherits OpenCV's thread pool mid-state and can hang.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            rows = list(tqdm(pool.map(file_features, paths, chunksize=16), **bar))
    table = pd.DataFrame(list(rows), columns=[*FEATURES, "error"])
    table.insert(0, "file", paths)
    return table
