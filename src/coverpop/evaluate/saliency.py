"""Where on a cover the model looks: Grad-CAM overlays (captum's LayerGradCam).

Grad-CAM weights the channels of a late feature map by the mean gradient of the predicted
popularity and keeps the positive part: bright regions are those that pushed the prediction up.
The feature map is found automatically: the last module (in execution order) whose output is a
spatial map (N, C, H, W) with H, W > 1, i.e. the last stage before global pooling. Models without
such a map (ViTs: tokens, not maps) fall back to captum's plain input-gradient Saliency, and the
figure says which method was used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _scalar_output(model: nn.Module):
    """captum wants one number per example; a regression head may return (N,) or (N, 1)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x).reshape(len(x), -1)[:, 0]
    return forward


def find_cam_layer(model: nn.Module, example: torch.Tensor) -> nn.Module | None:
    """The last module to finish whose output is an (N, C, H, W) map of the image: H, W > 1 and
    the same stride on both axes (attention internals are 4-D too, but not image-shaped)."""
    last: list[nn.Module] = []
    in_h, in_w = example.shape[2:]

    def hook(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            h, w = output.shape[2:]
            if 1 < h <= in_h and 1 < w <= in_w and abs(in_h / h - in_w / w) < 1e-6:
                last[:] = [module]

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    return last[0] if last else None


def _is_patch_embedding(layer: nn.Module, model: nn.Module) -> bool:
    # A ViT's only spatial map is its patch embedding: Grad-CAM there says nothing useful.
    return any(m is layer and "patch_embed" in name for name, m in model.named_modules())


def saliency_maps(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, str]:
    """Per-image maps in 0–1 at the input's resolution, and the method name.

    `x` is the batch exactly as the model takes it (normalised floats, N×3×H×W).
    """
    from captum.attr import LayerAttribution, LayerGradCam, Saliency

    model.eval()
    forward = _scalar_output(model)
    layer = find_cam_layer(model, x)
    x = x.detach().clone()
    if layer is not None and not _is_patch_embedding(layer, model):
        cam = LayerGradCam(forward, layer).attribute(x, relu_attributions=True)
        cam = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
        method = "Grad-CAM"
    else:
        cam = Saliency(forward).attribute(x.requires_grad_(True), abs=True).amax(dim=1,
                                                                                keepdim=True)
        method = "input-gradient saliency"
    cam = cam.detach()[:, 0].float().clamp(min=0)
    peak = cam.flatten(1).amax(dim=1).clamp(min=1e-12)[:, None, None]
    return (cam / peak).cpu().numpy(), method


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The cover (H×W×3 uint8) with the map drawn over it in a heat colour map."""
    from matplotlib import colormaps
    from PIL import Image

    if cam.shape != image.shape[:2]:
        cam = np.asarray(Image.fromarray((cam * 255).astype(np.uint8)).resize(
            (image.shape[1], image.shape[0]), Image.Resampling.BILINEAR)) / 255.0
    heat = colormaps["jet"](cam)[..., :3] * 255
    return (image * (1 - alpha) + heat * alpha).clip(0, 255).astype(np.uint8)


def save_gallery(images: Sequence[np.ndarray], cams: Sequence[np.ndarray],
                 titles: Sequence[str], path: str | Path, suptitle: str = "",
                 ncols: int = 4) -> None:
    """A grid: each cover above its overlay, with its title (e.g. true and predicted values)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from coverpop.core.figures import save_png

    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = 2 * ((n + ncols - 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.5 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (image, cam, title) in enumerate(zip(images, cams, titles)):
        r, c = 2 * (i // ncols), i % ncols
        axes[r, c].imshow(image)
        axes[r, c].set_title(title, fontsize=8)
        axes[r + 1, c].imshow(overlay(image, cam))
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    save_png(fig, path, dpi=110)


def explain_test_covers(predictor, test, predicted, store, path: str | Path, n: int = 4) -> str:
    """Grad-CAM overlays for the `n` best- and `n` worst-predicted test covers (by absolute
    error), saved as one PNG; returns the method used. `predictor` is a
    coverpop.train.checkpoint.Predictor (its `.model` takes uint8 pixels and normalises itself);
    `store`, the cover store holding the test covers."""
    from coverpop.train.data import to_uint8

    err = np.abs(np.asarray(predicted, dtype=float) - test["popularity"].to_numpy(dtype=float))
    order = np.argsort(err, kind="stable")
    n = max(1, min(n, len(order) // 2))
    picks = [("best", i) for i in order[:n]] + [("worst", i) for i in order[::-1][:n]]
    covers, batch = [], []
    for _, i in picks:
        with store.open(test["cover_id"].iloc[i]) as im:
            covers.append(np.asarray(im.convert("RGB")))
            batch.append(to_uint8(im, predictor.image_size))
    x = torch.from_numpy(np.stack(batch)).float()  # float so gradients can flow to the input
    maps, method = saliency_maps(predictor.model, x)
    titles = [f"{label}: pred {predicted[i]:.0f} / true {test['popularity'].iloc[i]:.0f}"
              for label, i in picks]
    save_gallery(covers, list(maps), titles, path, ncols=n,
                 suptitle=f"{method}: best-predicted (top) and worst-predicted (bottom) test "
                          "covers; warm = pushed the prediction up")
    return method
