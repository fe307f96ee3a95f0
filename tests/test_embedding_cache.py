"""The per-cover embedding cache (train/embeddings.by_content): each cover's features computed
once, whichever set of covers asks; an interrupted run keeps what it finished."""

import numpy as np
import pytest
import torch

from coverpop.train import embeddings


def fake_features(hashes):
    """Features that name their cover: row i of cover 'hK' is [K, K]."""
    return torch.tensor([[float(h[1:])] * 2 for h in hashes])


def test_only_missing_covers_are_computed_and_rows_keep_their_order(tmp_path):
    asked = []

    def make_for(hashes):
        def make(rows):
            asked.append([hashes[i] for i in rows])
            return fake_features([hashes[i] for i in rows])
        return make

    train = ["h1", "h2", "h3"]
    feats, computed = embeddings.by_content("k", train, make_for(train), root=tmp_path)
    assert computed == 3 and feats[:, 0].tolist() == [1, 2, 3]
    every = ["h3", "h4", "h1", "h2", "h4"]          # the test covers join; h4 listed twice
    feats, computed = embeddings.by_content("k", every, make_for(every), root=tmp_path)
    assert asked[-1] == ["h4"] and computed == 2     # two rows, one cover computed once
    assert feats[:, 0].tolist() == [3, 4, 1, 2, 4]
    feats, computed = embeddings.by_content("k", every, make_for(every), root=tmp_path)
    assert computed == 0 and len(asked) == 2
    # another backbone (key) shares nothing
    _, computed = embeddings.by_content("other", train, make_for(train), root=tmp_path)
    assert computed == 3


def test_a_failed_make_leaves_the_finished_shards_and_no_partial_file(tmp_path):
    embeddings.by_content("k", ["h1"], lambda rows: fake_features(["h1"]), root=tmp_path)

    def boom(rows):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embeddings.by_content("k", ["h1", "h2"], boom, root=tmp_path)
    files = sorted(p.name for p in (tmp_path / "embeddings" / "k").iterdir())
    assert len(files) == 1 and files[0].endswith(".pt")
    feats, computed = embeddings.by_content("k", ["h1", "h2"],
                                            lambda rows: fake_features(["h2"]), root=tmp_path)
    assert computed == 1 and np.array_equal(feats[:, 0].numpy(), [1, 2])
    with pytest.raises(ValueError, match="2 rows for 1 covers"):
        embeddings.by_content("k", ["h9"], lambda rows: fake_features(["h9", "h9"]),
                              root=tmp_path)


def test_features_all_new_are_returned_without_another_copy(tmp_path):
    """A first run (every cover new, none twice) gets make()'s tensor itself: at 60k covers a
    stacked copy is 300 MB more."""
    made = []

    def make(rows):
        made.append(fake_features([f"h{i}" for i in rows]))
        return made[-1]

    feats, _ = embeddings.by_content("k", ["h0", "h1", "h2"], make, root=tmp_path)
    assert feats.data_ptr() == made[0].data_ptr()
    # from the shard, a cover listed twice: rows filled in place, in order
    feats, computed = embeddings.by_content("k", ["h2", "h0", "h2"], make, root=tmp_path)
    assert computed == 0 and feats[:, 0].tolist() == [2, 0, 2]


def test_cpu_batches_are_capped_by_pixels():
    """On CPU a forward's activations are the process's memory: 128 covers up to 64 px, fewer
    for bigger covers; other devices keep 128."""
    def size(px, device="cpu"):
        return embeddings.batch_size_for(torch.zeros(1, 3, px, px), torch.device(device))

    assert (size(32), size(64), size(128), size(224), size(4000)) == (128, 128, 32, 10, 1)
    assert size(128, "cuda") == 128


# --- the fast pass: BatchNorm folded into the convs, the same features as the plain forward ---

def _covers(n: int, size: int) -> torch.Tensor:
    """uint8 covers with structure (gradients, blocks) and noise, not only noise."""
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 255, size)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.float32, generator=g) * 0.3
    x += 0.7 * ramp[None, None, :, None] * torch.rand(n, 3, 1, 1, generator=g)
    x[:, :, size // 4:size // 2, size // 4:size // 2] = 255 * torch.rand(n, 3, 1, 1, generator=g)
    return x.clamp(0, 255).to(torch.uint8)


def _plain(model, images):
    with torch.no_grad():
        return model.eval().features(images.float())


def _randomise_batchnorm(model, seed=0):
    """Trained-looking BatchNorm statistics (a fresh model's are 0 and 1: folding would be
    almost the identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.2)


@pytest.mark.parametrize("name, pretrained, channels_last", [
    ("tf_efficientnet_lite0", "package", True),    # the recommended line: BatchNormAct2d
    ("resnet18", False, True),                     # nn.BatchNorm2d, separate activations
])
def test_folded_pass_gives_the_plain_forward_features(name, pretrained, channels_last):
    from coverpop.train.models import CoverRegressor
    from coverpop.train.pretrained import resolve_weights

    torch.manual_seed(0)
    w = resolve_weights(name, pretrained)
    model = CoverRegressor(name, 64, w.mean, w.std, "linear", 0, weights=w).eval()
    if not pretrained:
        _randomise_batchnorm(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    images = _covers(6, 64)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    folded, n, _ = embeddings.fold_batchnorm(model.backbone, model.normalize(images[:2].float()))
    assert n == n_bn and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    want = _plain(model, images)
    got = embeddings.compute(model, images, torch.device("cpu"), batch_size=4,
                             channels_last=channels_last, progress=False, fold=True)
    assert got.shape == want.shape and want.abs().max() > 0.1
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    # the original model is untouched: its checkpoint keeps its BatchNorms
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules()) == n_bn
    torch.testing.assert_close(_plain(model, images), want, rtol=0, atol=0)


class _ConvOutputReadTwice(torch.nn.Module):
    """conv → BatchNorm, and the conv's raw output also added to the result: folding the
    BatchNorm into the conv changes that second read."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
        _randomise_batchnorm(self)

    def forward(self, x):
        y = self.conv(x)
        return (self.bn(y) + y).mean((2, 3))


class _Featurizer(torch.nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.normalize, self.backbone = torch.nn.Identity(), backbone

    def features(self, x):
        return self.backbone(self.normalize(x))


def test_a_conv_output_read_elsewhere_falls_back_to_the_plain_forward():
    model = _Featurizer(_ConvOutputReadTwice()).eval()
    images = _covers(6, 16)
    folded, n, _ = embeddings.fold_batchnorm(model.backbone, images[:2].float())
    assert n == 1   # the hooks alone cannot see the second read ...
    with torch.no_grad():
        assert not torch.allclose(folded(images.float()), model.backbone(images.float()))
    # ... the check on the first batch does: the features are the plain forward's
    got = embeddings.compute(model, images, torch.device("cpu"), progress=False, fold=True)
    torch.testing.assert_close(got, _plain(model, images), rtol=0, atol=0)
