"""Interpretable cover features: faces, colour, brightness, hue and a large-text heuristic.

Every feature is computed on the cover resized to WORK_SIZE px (longest side; faces on a
FACE_SIZE copy), so covers stored at different sizes give comparable numbers. The face detector is OpenCV's Haar frontal-face
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
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from coverpop.core.errors import CoverpopError
from coverpop.covers.store import CoverStore

if TYPE_CHECKING:  # pandas only in the parent: the spawned workers need not import it
    import pandas as pd

WORK_SIZE = 300
# Faces are searched on a copy this size (longest side): a third of the cost of 300 px. On 900
# demo covers: recall 0.86 (0.85 at 300 px), precision 1.0 at both; the price is the smallest
# face counted, 13 % of the side instead of 8 %.
FACE_SIZE = 150
# Six 60°-wide hue families, centred on the primaries/secondaries (red spans 330°–30°).
HUE_NAMES = ("red", "yellow", "green", "cyan", "blue", "magenta")
FEATURES = ("faces", "face_area", "colourfulness", "brightness", "saturation",
            "hue", "hue_name", "text_score", "text")
# A pixel counts towards the dominant hue only when it is clearly coloured: grey pixels have
# no meaningful hue.
_MIN_SAT, _MIN_VAL = 0.2, 0.15
# A text line must span at least this share of the cover's width to count as "large text".
# Measured with 0.25: on 60 rendered covers (4 fonts, 30-56 px, plain/noise/face/shape
# backgrounds) it found 87 % of the titles with no false alarm in 61 covers without text; on
# 500 demo covers 79 % of the planted text bands (bands over a face are missed), no false alarm.
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
    """Face boxes (x, y, w, h, in `rgb`'s pixels) found by the Haar cascade on a FACE_SIZE copy.
    The cascade's smallest window (20 px) is then 13 % of the cover's side: smaller faces (a
    crowd, specks, where false positives live) are not counted."""
    scale = min(1.0, FACE_SIZE / max(rgb.shape[:2]))
    if scale < 1:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    min_side = max(12, int(0.08 * min(gray.shape)))
    boxes = _face_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                             minSize=(min_side, min_side))
    return (np.asarray(boxes, dtype=float).reshape(-1, 4) / scale).round().astype(int)


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


def text_score(rgb: np.ndarray, faces: np.ndarray | None = None) -> float:
    """Width share (0–1) of the widest line of large, letter-like blobs; a heuristic, not OCR.

    Letters are found as MSER regions (blobs, dark-on-light or light-on-dark, that stay stable
    over a wide range of thresholds: delta 15 keeps photo and noise speckle out) 5–30 % of the
    cover high. A blob is one letter when it is narrow, or several touching letters (bold,
    tightly set titles) when it is wide but hollow; solid wide shapes are not text. Blobs of
    comparable height that share a top or bottom edge and sit close together are chained into
    a line; a line needs about three letters. Photos, gradients and noise rarely chain.
    Blobs centred on a detected face's head (`faces`: x y w h boxes, widened to take in hair or a
    cap) are ignored: glasses, eyes and badges line up like letters.
    """
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    height, width = gray.shape
    mser = cv2.MSER_create(delta=15, min_area=max(20, int(0.0005 * gray.size)),
                           max_area=int(0.05 * gray.size))
    regions, boxes = mser.detectRegions(gray)
    if len(boxes) == 0:
        return 0.0
    boxes = np.asarray(boxes, dtype=float)
    bw, bh = boxes[:, 2], boxes[:, 3]
    size_ok = (bh >= 0.05 * height) & (bh <= 0.30 * height) & (bw >= 0.15 * bh) & (bw <= 8 * bh)
    letter = size_ok & (bw <= 1.5 * bh)
    for i in np.flatnonzero(size_ok & ~letter):
        letter[i] = _touching_letters(regions[i], boxes[i])
    boxes = boxes[letter]
    if faces is not None and len(faces) and len(boxes):
        cx, cy = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
        in_face = np.zeros(len(boxes), dtype=bool)
        for fx, fy, fw, fh in faces:  # the whole head: hair or a cap sit above the face box
            in_face |= ((cx >= fx - 0.25 * fw) & (cx <= fx + 1.25 * fw)
                        & (cy >= fy - 0.6 * fh) & (cy <= fy + 1.2 * fh))
        boxes = boxes[~in_face]
    if len(boxes) == 0:
        return 0.0
    boxes = _unique_boxes(boxes)
    best = 0.0
    for _, y, _, h in boxes:
        # Same line: a blob of comparable height whose top or bottom is level with this one's
        # (capitals and x-height letters share a baseline, ascenders and descenders one edge).
        tops, bottoms, heights = boxes[:, 1], boxes[:, 1] + boxes[:, 3], boxes[:, 3]
        level = (np.abs(tops - y) <= 0.15 * h) | (np.abs(bottoms - y - h) <= 0.15 * h)
        line = boxes[level & (heights >= 0.5 * h) & (heights <= 2.0 * h)]
        # Chain neighbours left to right: letters of a word sit closer than half their height
        # (regular patterns such as stars on a flag are spaced wider). A blob inside the
        # current span (a letter of an already counted touching group) adds nothing.
        line = line[np.argsort(line[:, 0])]
        start = end = line[0, 0]
        letters = 0
        for sx, _, sw, sh in line:
            if sx - end > 0.5 * h:
                if letters >= 3:
                    best = max(best, (end - start) / width)
                start, end, letters = sx, sx, 0
            if sx + sw > end:
                # a touching-letters blob counts one letter per letter width, others one
                new = sx + sw - max(sx, end)
                letters += max(1, round(new / (0.8 * sh))) if sw > 1.5 * sh else 1
                end = sx + sw
        if letters >= 3:
            best = max(best, (end - start) / width)
    return float(min(best, 1.0))


def _touching_letters(points: np.ndarray, box: np.ndarray) -> bool:
    """A wide blob is a run of touching letters when a scan line through its middle crosses
    about one stroke per letter width; a wide solid or outlined shape crosses one or two."""
    x, y, w, h = (int(v) for v in box)
    mask = np.zeros((h, w), dtype=np.int8)
    mask[points[:, 1] - y, points[:, 0] - x] = 1
    rows = mask[[int(h * f) for f in (0.35, 0.5, 0.65)]]
    strokes = (np.diff(rows, axis=1, prepend=0) == 1).sum(axis=1).mean()
    return bool(mask.mean() <= 0.6 and strokes >= w / (0.8 * h))


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
    score = text_score(rgb, faces)
    return {"faces": int(len(faces)), "face_area": area, "colourfulness": colourfulness(rgb),
            **colour_stats(rgb), "text_score": score, "text": int(score >= TEXT_MIN_SPAN)}


_STORE: CoverStore | None = None   # set in each worker: covers are then read by id from it


def file_features(path: str | Path) -> dict:
    """Features of one image file (a cover id when a cover store is set); an unreadable image
    gives `error` instead of raising, so one bad cover does not stop a folder (a damaged store
    shard does: CoverpopError)."""
    try:
        with (_STORE.open(str(path)) if _STORE is not None else Image.open(path)) as im:
            return {**cover_features(im), "error": ""}
    except (OSError, UnidentifiedImageError, ValueError) as err:
        return {"error": f"{type(err).__name__}: {err}".splitlines()[0]}


def _init_worker(store: str | None = None) -> None:
    global _STORE
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would fight them
    _STORE = CoverStore(store) if store else None


def features_table(paths: Sequence[str | Path], workers: int | None = None,
                   progress: bool = True, store: str | Path | None = None) -> pd.DataFrame:
    """Features for many image files, in order, one row per path (`file` column first); with
    `store` (a cover store folder), `paths` are cover ids in it (`cover_id` column first).

    Runs in a process pool (`workers`, default: all cores); the cascade is loaded once per
    worker process. `error` is "" for a good file and the reason otherwise.
    """
    import pandas as pd

    paths = [str(p) for p in paths]
    workers = workers or os.cpu_count() or 1
    rows: Iterable[dict]
    bar = dict(total=len(paths), desc="cover features", unit="cover", disable=not progress)
    if workers <= 1 or len(paths) < POOL_MIN_COVERS:
        global _STORE
        saved, _STORE = _STORE, CoverStore(store) if store else None
        try:
            rows = [file_features(p) for p in tqdm(paths, **bar)]
        finally:
            _STORE = saved
    else:
        # spawn, not fork: a forked child inherits OpenCV's thread pool mid-state and can hang.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(str(store) if store else None,)) as pool:
            rows = list(tqdm(pool.map(file_features, paths, chunksize=16), **bar))
    table = pd.DataFrame(list(rows), columns=[*FEATURES, "error"])
    table.insert(0, "cover_id" if store else "file", paths)
    return table
