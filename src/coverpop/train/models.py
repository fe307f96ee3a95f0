"""The model: any timm backbone, a regression head, and an output initialised on purpose."""

from __future__ import annotations

import math

import torch
from torch import nn

from coverpop.train.data import Normalize
from coverpop.train.pretrained import (
    Weights,
    create_backbone,
    get_pretrained_cfg,
    resolve_weights,
)

TARGET_SCALE = 100.0  # popularity points ↔ the model's 0-1 scale


def is_vit_like(name: str) -> bool:
    """Models whose input size is fixed at construction (ViT, Swin, …)."""
    cfg = get_pretrained_cfg(name)
    return bool(cfg is not None and cfg.fixed_input_size)


def timm_kwargs(name: str, image_size: int) -> dict:
    """Extra create_model arguments: ViT-like models are built for `image_size`."""
    return {"img_size": image_size} if is_vit_like(name) else {}


class CoverRegressor(nn.Module):
    """uint8 pixels in, popularity on a 0-1 scale out (×100 for points)."""

    def __init__(self, name: str, image_size: int, mean, std, output: str = "sigmoid",
                 head_hidden: int = 0, pretrained=False, weights: Weights | None = None):
        super().__init__()
        self.output = output  # sigmoid | linear, checked by the schema (core/schema.py)
        self.normalize = Normalize(mean, std)
        weights = weights or resolve_weights(name, pretrained)
        self.backbone = create_backbone(name, weights=weights, **timm_kwargs(name, image_size))
        # head_hidden_size: models whose pooled features pass a pre-logits layer (MobileNetV3)
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        if head_hidden:  # the seed's "make head a little bit bigger"
            self.head = nn.Sequential(nn.Linear(width, head_hidden), nn.GELU(),
                                      nn.Linear(head_hidden, 1))
        else:
            self.head = nn.Linear(width, 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        z = self.head(features).squeeze(1)
        return torch.sigmoid(z) if self.output == "sigmoid" else z

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of pixels (uint8, or float on the 0–255 scale)."""
        return self.backbone(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.features(x))

    def init_output(self, target_mean: float) -> None:
        """Start at the train mean, so the first loss is the target variance (Karpathy's
        'init well'): zero last-layer weights, bias = mean (or its logit under a sigmoid)."""
        last = self.head[-1] if isinstance(self.head, nn.Sequential) else self.head
        m = min(max(target_mean, 1e-3), 1 - 1e-3)
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(math.log(m / (1 - m)) if self.output == "sigmoid" else m)


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """uint8 images → predictions on the 0–1 scale (CPU), model in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(images[i:i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(images), batch_size)])
