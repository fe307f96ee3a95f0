import io

import numpy as np
import pandas as pd
from PIL import Image

from coverpop.covers.images import sha256
from coverpop.split.dedupe import dedupe, near_duplicate_groups, phashes, pick


def save(tmp_path, name, img, quality=92):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    (tmp_path / name).write_bytes(buf.getvalue())
    return str(tmp_path / name), sha256(buf.getvalue())


def pattern(seed, size=200):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)  # smooth blocks survive re-encoding
    return Image.fromarray(small).resize((size, size), Image.BICUBIC)


def test_near_duplicates_found_distinct_images_kept(tmp_path):
    a, _ = save(tmp_path, "a.jpg", pattern(1))
    a_small, _ = save(tmp_path, "a2.jpg", pattern(1).resize((150, 150)), quality=55)
    b, _ = save(tmp_path, "b.jpg", pattern(2))
    groups = near_duplicate_groups(phashes([a, a_small, b]), threshold=6)
    assert groups[0] == groups[1] != groups[2]


def test_near_duplicate_groups_are_transitive():
    h = np.array([0b0, 0b111, 0b111111, 0xFFFF_FFFF_0000_0000], dtype=np.uint64)
    assert list(near_duplicate_groups(h, threshold=3, chunk=2)) == [0, 0, 0, 1]


def test_pick_rules():
    df = pd.DataFrame({"popularity": [10, 50, 30, 5]})
    g = pd.Series(["x", "x", "x", "y"])
    assert pick(df, g, "max").tolist() == [False, True, False, True]
    assert pick(df, g, "first").tolist() == [True, False, False, True]
    assert pick(df, g, "median").tolist() == [False, False, True, True]
    assert pick(df, g, "random", seed=1).sum() == 2


def test_dedupe_collapses_albums_copies_and_near_copies(tmp_path):
    a, sa = save(tmp_path, "a.jpg", pattern(1))
    a2, sa2 = save(tmp_path, "a2.jpg", pattern(1).resize((150, 150)), quality=55)
    b, sb = save(tmp_path, "b.jpg", pattern(2))
    c, sc = save(tmp_path, "c.jpg", pattern(3))
    df = pd.DataFrame({
        "track_id": ["t1", "t2", "t3", "t4", "t5"],
        "album_id": ["A", "A", "B", "C", "D"],      # t1/t2 one album; D re-uses A's art re-encoded
        "cover_id": ["A", "A", "B", "C", "D"],
        "file": [a, a, b, c, a2],
        "sha256": [sa, sa, sb, sb, sa2],           # C is a byte-exact copy of B
        "popularity": [10.0, 40.0, 20.0, 30.0, 50.0],
    })
    kept, removed = dedupe(df, "max", threshold=6)
    assert sorted(kept["track_id"]) == ["t4", "t5"]
    reasons = dict(zip(removed["track_id"], removed["reason"]))
    assert reasons == {"t1": "same_album", "t3": "exact_duplicate", "t2": "near_duplicate"}
    assert dict(zip(removed["track_id"], removed["kept_track_id"])) == {"t1": "t2", "t3": "t4",
                                                                        "t2": "t5"}
