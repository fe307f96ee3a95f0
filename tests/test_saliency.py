"""Grad-CAM plumbing: the right layer, maps that follow the object, overlays and a gallery."""

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from coverpop.evaluate import saliency


def bright_square(corner: str, size=64) -> torch.Tensor:
    x = torch.zeros(1, 3, size, size)
    s = size // 4
    r, c = {"top_left": (4, 4), "bottom_right": (size - s - 4, size - s - 4)}[corner]
    x[:, :, r:r + s, c:c + s] = 1.0
    return x


class BrightnessNet(nn.Module):
    """conv → ReLU → global mean → positive weight: 'popularity' rises with bright pixels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.fill_(0.1)
            self.conv.bias.zero_()
        self.head = nn.Linear(4, 1)
        with torch.no_grad():
            self.head.weight.fill_(1.0)

    def forward(self, x):
        return self.head(self.act(self.conv(x)).mean(dim=(2, 3)))


def test_layer_is_the_last_spatial_map():
    model = BrightnessNet()
    assert saliency.find_cam_layer(model, bright_square("top_left")) is model.act


@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_map_follows_the_bright_object(corner):
    x = bright_square(corner)
    maps, method = saliency.saliency_maps(BrightnessNet(), x)
    assert method == "Grad-CAM" and maps.shape == (1, 64, 64)
    assert maps.max() == pytest.approx(1.0) and maps.min() >= 0
    peak = np.unravel_index(maps[0].argmax(), maps[0].shape)
    mask = x[0, 0].numpy() > 0
    assert mask[peak]
    assert maps[0][mask].mean() > 5 * maps[0][~mask].mean()


def test_timm_cnn_uses_its_last_stage_and_vit_falls_back():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    cnn = timm.create_model("resnet18", pretrained=False, num_classes=1)
    layer = saliency.find_cam_layer(cnn, x)
    assert layer is cnn.layer4
    maps, method = saliency.saliency_maps(cnn, x)
    assert method == "Grad-CAM" and maps.shape == (2, 64, 64)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=1, img_size=32)
    maps, method = saliency.saliency_maps(vit, torch.randn(1, 3, 32, 32))
    assert method == "input-gradient saliency" and maps.shape == (1, 32, 32)


def test_overlay_and_gallery(tmp_path):
    image = np.full((50, 40, 3), 200, np.uint8)
    cam = np.zeros((10, 8))
    cam[:5] = 1.0  # hot top half, resized to the image
    out = saliency.overlay(image, cam)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out[:20], out[30:])
    path = tmp_path / "g.png"
    saliency.save_gallery([image] * 3, [cam] * 3, ["a", "b", "c"], path, "title")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 100
