"""The model: any timm backbone, a regression head, and an output initialised on purpose."""

import math

import torch
from torch import nn

from coverpop.data import Normalize
from coverpop.errors import CoverpopError
from coverpop.params import choice

OUTPUTS = ("sigmoid", "linear")


def create_backbone(name: str, pretrained: bool, image_size: int) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise CoverpopError(f"params.yaml: model={name!r} is not a timm model name "
                            f"(see timm.list_models())")
    try:  # ViTs and friends need the input size at construction
        return timm.create_model(name, pretrained=pretrained, num_classes=0, img_size=image_size)
    except TypeError:
        return timm.create_model(name, pretrained=pretrained, num_classes=0)


class CoverRegressor(nn.Module):
    """uint8 pixels in, popularity on a 0-1 scale out (×100 for points)."""

    def __init__(self, name: str, image_size: int, mean, std, output: str = "sigmoid",
                 head_hidden: int = 0, pretrained: bool = False):
        super().__init__()
        self.output = choice(output, OUTPUTS, "train.output")
        self.normalize = Normalize(mean, std)
        self.backbone = create_backbone(name, pretrained, image_size)
        # head_hidden_size: models whose pooled features pass a pre-logits layer (MobileNetV3)
        width = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        if head_hidden:
            self.head = nn.Sequential(nn.Linear(width, head_hidden), nn.GELU(),
                                      nn.Linear(head_hidden, 1))
        else:
            self.head = nn.Linear(width, 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        z = self.head(features).squeeze(1)
        return torch.sigmoid(z) if self.output == "sigmoid" else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.backbone(self.normalize(x)))

    def init_output(self, target_mean: float) -> None:
        """Start at the train mean, so the first loss is the target variance (Karpathy's
        'init well'): zero last-layer weights, bias = mean (or its logit under a sigmoid)."""
        last = self.head[-1] if isinstance(self.head, nn.Sequential) else self.head
        m = min(max(target_mean, 1e-3), 1 - 1e-3)
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(math.log(m / (1 - m)) if self.output == "sigmoid" else m)
