import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.sparse.csgraph import connected_components

import coverpop.split.dedupe as dedupe_module
from coverpop.core.errors import CoverpopError
from coverpop.covers.images import perceptual_hash, sha256
from coverpop.split.dedupe import (dedupe, first_seen_labels, near_duplicate_groups,
                                   parse_phashes, pick)
from coverpop.tracks import demo


def save(tmp_path, name, img, quality=92):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    (tmp_path / name).write_bytes(buf.getvalue())
    return str(tmp_path / name), sha256(buf.getvalue()), perceptual_hash(buf.getvalue())


def pattern(seed, size=200):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)  # smooth blocks survive re-encoding
    return Image.fromarray(small).resize((size, size), Image.BICUBIC)


def all_pairs_groups(hashes: np.ndarray, threshold: int) -> np.ndarray:
    """The reference: every hash against every other (n² memory: small inputs only)."""
    near = np.bitwise_count(hashes[:, None] ^ hashes[None, :]) <= threshold
    return first_seen_labels(connected_components(near, directed=False)[1])


def as_uint64(hexes) -> np.ndarray:
    return parse_phashes(pd.DataFrame({"phash": list(hexes), "track_id": range(len(hexes))}))


def test_near_duplicates_found_distinct_images_kept(tmp_path):
    a = save(tmp_path, "a.jpg", pattern(1))[2]
    a_small = save(tmp_path, "a2.jpg", pattern(1).resize((150, 150)), quality=55)[2]
    b = save(tmp_path, "b.jpg", pattern(2))[2]
    groups = near_duplicate_groups(as_uint64([a, a_small, b]), threshold=6)
    assert groups[0] == groups[1] != groups[2]


def test_perceptual_hash_is_imagehash_phash_of_the_stored_bytes(tmp_path):
    import imagehash

    path, _, hexed = save(tmp_path, "a.jpg", pattern(4))
    assert hexed == str(imagehash.phash(Image.open(path)))   # imagehash prints the same hex


def test_near_duplicate_groups_are_transitive():
    h = np.array([0b0, 0b111, 0b111111, 0xFFFF_FFFF_0000_0000], dtype=np.uint64)
    assert list(near_duplicate_groups(h, threshold=3)) == [0, 0, 0, 1]


def planted(n: int, threshold: int, seed: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Random hashes plus, for every distance 0..threshold+1, pairs planted at exactly that
    distance, and a few chains (a~b~c, a far from c)."""
    rng = np.random.default_rng(seed)
    hashes = list(rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False))
    pairs = []
    for d in range(threshold + 2):
        for k in range(12):
            a = rng.integers(0, 2**64, dtype=np.uint64, endpoint=False)
            if k % 2:   # bits anywhere
                bits = rng.choice(64, d, replace=False)
            else:       # bits spread out, one per block: the pigeonhole's hardest case
                bits = (np.arange(d) * 64 // max(d, 1) + rng.integers(0, 64)) % 64
            flip = np.uint64(sum(1 << int(b) for b in bits))
            pairs.append((len(hashes), len(hashes) + 1, d))
            hashes += [a, a ^ flip]
    for _ in range(3):   # a chain: neighbours within the threshold, the ends beyond it
        a = rng.integers(0, 2**64, dtype=np.uint64, endpoint=False)
        bits = rng.choice(64, 2 * threshold, replace=False)
        b = a ^ np.uint64(sum(1 << int(x) for x in bits[:threshold]))
        c = b ^ np.uint64(sum(1 << int(x) for x in bits[threshold:]))
        hashes += [a, b, c]
    order = rng.permutation(len(hashes))       # planted rows anywhere, not at the end
    where = np.argsort(order)
    return (np.array(hashes, dtype=np.uint64)[order],
            [(int(where[i]), int(where[j]), d) for i, j, d in pairs])


@pytest.mark.parametrize("threshold", [0, 1, 3, 6, 10])
def test_pigeonhole_search_finds_exactly_the_all_pairs_groups(threshold):
    hashes, pairs = planted(1500, threshold, seed=threshold)
    groups = near_duplicate_groups(hashes, threshold)
    assert np.array_equal(groups, all_pairs_groups(hashes, threshold))
    for i, j, d in pairs:
        assert (groups[i] == groups[j]) == (d <= threshold), (i, j, d)


def test_pigeonhole_search_matches_all_pairs_on_crowded_buckets(monkeypatch):
    """Hashes that differ only in a few low bits share most keys: big buckets, checked in many
    small chunks."""
    monkeypatch.setattr(dedupe_module, "PAIRS_PER_CHUNK", 5000)
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**10, 800).astype(np.uint64) | np.uint64(0xABCD << 48)
    for threshold in (2, 6):
        assert np.array_equal(near_duplicate_groups(hashes, threshold),
                              all_pairs_groups(hashes, threshold))


def test_pigeonhole_search_matches_all_pairs_on_demo_covers():
    """Real perceptual hashes (not uniform bits): the demo's covers, re-releases included."""
    rows = demo.make_tracks(300, seed=3).drop_duplicates("album_id").to_dict("records")
    hashes = as_uint64([perceptual_hash(demo.cover_bytes(r, size=96)) for r in rows])
    reencoded = [i for i, r in enumerate(rows) if r["demo_variant"] == "reencoded"]
    assert reencoded
    for threshold in (0, 2, 6, 12, 20):
        groups = near_duplicate_groups(hashes, threshold)
        assert np.array_equal(groups, all_pairs_groups(hashes, threshold)), threshold
    assert len(set(near_duplicate_groups(hashes, 6))) < len(set(hashes))  # re-encodes joined


def test_a_missing_phash_is_one_line_naming_the_track():
    df = pd.DataFrame({"track_id": ["t1", "t2"], "phash": ["00ff00ff00ff00ff", ""]})
    with pytest.raises(CoverpopError, match=r"track t2 has no valid phash \(''\)"):
        parse_phashes(df)


def test_pick_rules():
    df = pd.DataFrame({"popularity": [10, 50, 30, 5]})
    g = pd.Series(["x", "x", "x", "y"])
    assert pick(df, g, "max").tolist() == [False, True, False, True]
    assert pick(df, g, "first").tolist() == [True, False, False, True]
    assert pick(df, g, "median").tolist() == [False, False, True, True]
    assert pick(df, g, "random", seed=1).sum() == 2


def test_dedupe_collapses_albums_copies_and_near_copies(tmp_path):
    a, sa, pa = save(tmp_path, "a.jpg", pattern(1))
    a2, sa2, pa2 = save(tmp_path, "a2.jpg", pattern(1).resize((150, 150)), quality=55)
    b, sb, pb = save(tmp_path, "b.jpg", pattern(2))
    c, sc, pc = save(tmp_path, "c.jpg", pattern(3))
    df = pd.DataFrame({
        "track_id": ["t1", "t2", "t3", "t4", "t5"],
        "album_id": ["A", "A", "B", "C", "D"],      # t1/t2 one album; D re-uses A's art re-encoded
        "cover_id": ["A", "A", "B", "C", "D"],
        "file": [a, a, b, c, a2],
        "sha256": [sa, sa, sb, sb, sa2],           # C is a byte-exact copy of B
        "phash": [pa, pa, pb, pb, pa2],
        "popularity": [10.0, 40.0, 20.0, 30.0, 50.0],
    })
    kept, removed = dedupe(df, "max", threshold=6)
    assert sorted(kept["track_id"]) == ["t4", "t5"]
    reasons = dict(zip(removed["track_id"], removed["reason"]))
    assert reasons == {"t1": "same_album", "t3": "exact_duplicate", "t2": "near_duplicate"}
    assert dict(zip(removed["track_id"], removed["kept_track_id"])) == {"t1": "t2", "t3": "t4",
                                                                        "t2": "t5"}
