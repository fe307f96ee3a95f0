"""The cover store: tar shards + an index, what DVC tracks instead of one file per cover."""

import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from coverpop.core.errors import CoverpopError
from coverpop.covers.store import CoverStore, pack, shard_of


def _jpeg(i: int) -> bytes:
    arr = np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _covers(n: int, start: int = 0) -> dict[str, bytes]:
    return {f"cover{i:04d}": _jpeg(i) for i in range(start, start + n)}


def _pack(folder, covers: dict[str, bytes]) -> int:
    return pack(folder, {c: hashlib.sha256(b).hexdigest() for c, b in covers.items()},
                lambda c: covers[c])


def _shards(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tar"))}


def test_pack_then_read_every_cover(tmp_path):
    covers = _covers(40)
    assert _pack(tmp_path / "s", covers) == len({shard_of(c) for c in covers})
    store = CoverStore(tmp_path / "s")
    assert len(store) == 40
    assert all(store.read(c) == b for c, b in covers.items())
    with store.open("cover0003") as im:
        assert im.size == (24, 24)
    # a plain tar: members in cover-id order, no time or owner of this machine
    for path in (tmp_path / "s").glob("*.tar"):
        with tarfile.open(path) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names) and all(shard_of(n[:-4]) == path.stem for n in names)
        assert {(m.mtime, m.uid, m.uname, m.mode) for m in members} == {(0, 0, "", 0o644)}


def test_same_covers_same_bytes_whatever_the_order(tmp_path):
    covers = _covers(30)
    _pack(tmp_path / "a", covers)
    _pack(tmp_path / "b", dict(reversed(list(covers.items()))))
    _pack(tmp_path / "b", covers)   # again: nothing to do
    assert _shards(tmp_path / "a") == _shards(tmp_path / "b")
    assert (tmp_path / "a/index.csv").read_bytes() == (tmp_path / "b/index.csv").read_bytes()


def test_a_new_cover_rewrites_its_shard_only(tmp_path):
    folder = tmp_path / "s"
    covers = _covers(60)
    _pack(folder, covers)
    before = {p.name: p.stat().st_ino for p in folder.glob("*.tar")}
    new = _covers(1, start=1000)
    (cid,) = new
    assert _pack(folder, {**covers, **new}) == 1   # one shard rewritten
    after = {p.name: p.stat().st_ino for p in folder.glob("*.tar")}
    changed = {n for n in after if before.get(n) != after[n]}
    assert changed == {f"{shard_of(cid)}.tar"}
    assert CoverStore(folder).read(cid) == new[cid]
    # the shard's bytes are what a fresh pack of the same covers writes
    _pack(tmp_path / "fresh", {**covers, **new})
    assert _shards(folder) == _shards(tmp_path / "fresh")
    # dropping covers rewrites their shards; a shard left empty goes
    assert _pack(folder, {cid: new[cid]}) == 1
    assert [p.name for p in folder.glob("*.tar")] == [f"{shard_of(cid)}.tar"]


def test_a_changed_cover_is_taken_from_its_new_file(tmp_path):
    folder = tmp_path / "s"
    covers = _covers(5)
    _pack(folder, covers)
    covers["cover0002"] = _jpeg(99)
    assert _pack(folder, covers) == 1
    assert CoverStore(folder).read("cover0002") == _jpeg(99)
    with pytest.raises(CoverpopError, match="cover cover0002: its file does not match its sha256"):
        pack(folder, {"cover0002": "0" * 64}, lambda c: covers[c])


def test_a_damaged_shard_is_one_line_naming_the_file(tmp_path):
    folder = tmp_path / "s"
    covers = _covers(20)
    _pack(folder, covers)
    store = CoverStore(folder)
    shard, offset, size, _ = store.entries["cover0007"]
    path = folder / f"{shard}.tar"
    data = bytearray(path.read_bytes())
    data[offset + size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CoverpopError) as err:
        store.read("cover0007")
    msg = str(err.value)
    assert str(path) in msg and "cover0007" in msg and "damaged" in msg and "\n" not in msg
    path.unlink()
    with pytest.raises(CoverpopError, match=rf"{path}: missing"):
        store.read("cover0007")
    # packing again heals it from the scrape's files
    _pack(folder, covers)
    assert CoverStore(folder).read("cover0007") == covers["cover0007"]


def test_no_store_is_one_line(tmp_path):
    with pytest.raises(CoverpopError, match=r"index\.csv: not found \(run the scrape_images stage"):
        CoverStore(tmp_path / "none")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/index.csv").write_text("a,b\n")
    with pytest.raises(CoverpopError, match="not a cover index"):
        CoverStore(tmp_path / "bad")
