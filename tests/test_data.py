"""Decoded-once image cache, normalisation choices, on-device augmentation, batch picture."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from coverpop.core.errors import CoverpopError
from coverpop.train import data as D
from conftest import pack_covers


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COVERPOP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _covers(folder, n=6, size=40):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        arr = np.zeros((size, size, 3), np.uint8)
        arr[..., i % 3] = 40 * i  # a different colour per cover
        arr[: size // 2, : size // 4] = rng.integers(0, 255, (size // 2, size // 4, 3))
        path = folder / f"c{i}.jpg"
        Image.fromarray(arr).save(path, quality=95)
        files.append(str(path))
    return files


def _px(path, size=16):
    return torch.from_numpy(D.to_uint8(Image.open(path), size).copy())


def _counting_decode(monkeypatch):
    """Count the covers decoded (by path) from here on."""
    seen = []
    real = D._decode

    def decode(path, size):
        seen.append((Path(path).name, size))
        return real(path, size)
    monkeypatch.setattr(D, "_decode", decode)
    return seen


def test_load_images_decodes_each_cover_once_per_size(tmp_path, cache, monkeypatch):
    files = _covers(tmp_path / "img")
    hashes = [f"h{i}" for i in range(len(files))]
    first = D.load_images(files, 16, hashes=hashes)
    assert first.shape == (6, 3, 16, 16) and first.dtype == torch.uint8
    assert first[4, 1].float().mean() > 100  # cover 4 is green: channel order kept (RGB, CHW)
    assert torch.equal(first[2], _px(files[2]))
    (folder,) = [p for p in (cache / "images").iterdir() if p.is_dir()]
    assert folder.name.endswith("-16px") and (folder / "index.txt").read_text().split() == hashes

    decoded = _counting_decode(monkeypatch)
    again = D.load_images(files, 16, hashes=hashes)
    assert torch.equal(again[:], first[:]) and decoded == []  # served from the cache
    # a new cover decodes that cover alone; the order of the rows is the caller's
    more = _covers(tmp_path / "more", n=7)
    both = D.load_images([more[6], *files[::-1]], 16, hashes=["h6", *hashes[::-1]])
    assert decoded == [("c6.jpg", 16)]
    assert torch.equal(both[1:], first[:].flip(0))
    assert torch.equal(both[torch.tensor([0, 6])], torch.stack([_px(more[6]), first[0]]))
    decoded.clear()
    D.load_images(files, 24, hashes=hashes)  # another size is another cache folder
    assert sorted(decoded) == sorted((Path(f).name, 24) for f in files)
    decoded.clear()
    assert isinstance(D.load_images(files, 16), torch.Tensor) and len(decoded) == 6  # no hashes: no cache


def test_image_cache_survives_a_killed_writer(tmp_path, cache):
    files = _covers(tmp_path / "img")
    hashes = [f"h{i}" for i in range(len(files))]
    first = D.load_images(files[:3], 16, hashes=hashes[:3])[:]
    (folder,) = [p for p in (cache / "images").iterdir() if p.is_dir()]
    with open(folder / "pixels.u8", "ab") as f:
        f.write(b"\x07" * 1000)            # a record cut short, no index line names it
    with open(folder / "index.txt", "ab") as f:
        f.write(b"h3")                      # an index line cut short
    got = D.load_images(files, 16, hashes=hashes)
    assert torch.equal(got[:3], first)
    assert torch.equal(got[3], _px(files[3]))
    assert (folder / "index.txt").read_text().split() == hashes
    assert (folder / "pixels.u8").stat().st_size == 6 * 3 * 16 * 16


def test_image_cache_concurrent_writers(tmp_path, cache):
    """Two writers adding overlapping covers at once (two experiments, two ranks): each cover
    lands once and both read the right pixels."""
    import threading

    files = _covers(tmp_path / "img")
    hashes = [f"h{i}" for i in range(len(files))]
    want = D.load_images(files, 16)
    results = {}

    def load(name, rows):
        results[name] = D.load_images([files[i] for i in rows], 16, hashes=[hashes[i] for i in rows],
                                      progress=False)
    threads = [threading.Thread(target=load, args=("a", [0, 1, 2, 3])),
               threading.Thread(target=load, args=("b", [5, 4, 3, 2]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(results["a"][:], want[[0, 1, 2, 3]])
    assert torch.equal(results["b"][:], want[[5, 4, 3, 2]])
    (folder,) = [p for p in (cache / "images").iterdir() if p.is_dir()]
    assert sorted((folder / "index.txt").read_text().split()) == sorted(hashes)


def test_image_set_reads_like_the_tensor(tmp_path, cache):
    files = _covers(tmp_path / "img")
    hashes = [f"h{i}" for i in range(len(files))]
    ref = D.load_images(files, 16)
    images = D.load_images(files, 16, hashes=hashes)
    assert len(images) == 6 and images.numel() == ref.numel() and images.shape == ref.shape
    rows = torch.tensor([4, 0, 4])
    assert torch.equal(images[rows], ref[rows]) and torch.equal(images[1:3], ref[1:3])
    sub = D.take(images, torch.tensor([5, 1]))
    assert torch.equal(sub[:], ref[[5, 1]]) and torch.equal(images.to("cpu", chunk=4), ref)
    assert D.dataset_mean_std(sub) == D.dataset_mean_std(ref[[5, 1]])


def test_corrupt_cover_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(CoverpopError, match=r"bad\.jpg: cannot read image"):
        D.load_images([str(bad)], 8, hashes=["x"])


def test_normalizations(tmp_path):
    imgs = torch.full((4, 3, 2, 2), 255, dtype=torch.uint8)
    imgs[:2] = 0  # half black, half white: mean 0.5, std 0.5 per channel
    assert D.resolve_normalization("imagenet", ((0.1,) * 3, (0.2,) * 3))[0] == (0.485, 0.456, 0.406)
    assert D.resolve_normalization("model", ((0.1,) * 3, (0.2,) * 3)) == ((0.1,) * 3, (0.2,) * 3)
    assert D.resolve_normalization("none", ((0.1,) * 3, (0.2,) * 3)) == ((0.0,) * 3, (1.0,) * 3)
    mean, std = D.resolve_normalization("dataset", ((0.1,) * 3, (0.2,) * 3), imgs)
    assert mean == pytest.approx((0.5,) * 3) and std == pytest.approx((0.5,) * 3)
    x = D.Normalize(mean, std)(imgs)
    assert x.min() == pytest.approx(-1) and x.max() == pytest.approx(1)


def test_augment_identity_flip_and_crop():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    same = D.augment(x, g, scale=(1.0, 1.0), flip=False)
    torch.testing.assert_close(same, x, atol=1e-3, rtol=0)  # full-size crop, no flip: unchanged
    flipped = [D.augment(x, torch.Generator().manual_seed(s), scale=(1.0, 1.0)) for s in range(8)]
    assert any(torch.allclose(f[0], x[0].flip(-1), atol=1e-3) for f in flipped)
    assert any(torch.allclose(f[0], x[0], atol=1e-3) for f in flipped)
    crop = D.augment(x, torch.Generator().manual_seed(1), scale=(0.25, 0.25), flip=False)
    assert crop.shape == x.shape and not torch.allclose(crop, x)
    # a crop zooms in: neighbouring pixels differ less than in the original
    assert (crop[..., 1:] - crop[..., :-1]).abs().mean() < (x[..., 1:] - x[..., :-1]).abs().mean()


def test_batch_grid_shows_the_batch():
    x = torch.zeros(4, 3, 8, 8)
    x[1] = 5.0
    pic = D.batch_grid(x)
    assert pic.dtype == np.uint8 and pic.shape[2] == 3
    assert pic.max() == 255 and (pic == 0).any()  # min → black, max → white


def test_load_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = _covers(tmp_path / "covers")
    shas = pack_covers(tmp_path / "shards", {f"c{i}": f for i, f in enumerate(files)})
    df = pd.DataFrame({"track_id": [f"t{i}" for i in range(6)], "cover_id": list(shas),
                       "sha256": list(shas.values()), "popularity": [0, 10, 20, 30, 40, 50],
                       "split": ["train", "val", "train", "test", "train", "val"]})
    df.to_csv("split.csv", index=False)
    data, rows = D.load_split("split.csv", "shards", 16)
    assert list(rows["track_id"]) == ["t0", "t1", "t2", "t4", "t5"]  # test rows never loaded
    assert data.train_idx.tolist() == [0, 2, 3] and data.val_idx.tolist() == [1, 4]
    assert data.popularity.tolist() == [0, 10, 20, 40, 50]
    blank = data.blank()
    assert blank.images.shape == data.images.shape and blank.images.max() == 0
    assert blank.image_key != data.image_key
    assert torch.equal(data.images[3], _px(files[4]))   # row 3 is t4: its cover, from the store
    df.assign(cover_id=["c0", "gone", "c2", "c3", "c4", "c5"]).to_csv("lost.csv", index=False)
    with pytest.raises(CoverpopError, match=r"lost\.csv: 1 covers not in shards, first gone"):
        D.load_split("lost.csv", "shards", 16)
    df.drop(columns="sha256").to_csv("bad.csv", index=False)
    with pytest.raises(CoverpopError, match=r"bad\.csv: missing column 'sha256'"):
        D.load_split("bad.csv", "shards", 16)
