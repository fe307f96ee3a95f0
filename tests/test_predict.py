import numpy as np
import pytest
import torch
from PIL import Image

from coverpop.core.errors import CoverpopError
from coverpop.train.checkpoint import load_predictor, save_checkpoint
from coverpop.train.models import CoverRegressor


def test_checkpoint_round_trip_predicts_the_same(tmp_path):
    torch.manual_seed(0)
    model = CoverRegressor("resnet10t", 32, [0.4] * 3, [0.2] * 3, output="linear").eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, model="resnet10t", image_size=32, mean=[0.4] * 3,
                    std=[0.2] * 3, output="linear", head_hidden=0, target_scale=100.0)
    images = [Image.effect_noise((50, 50), 40).convert("RGB"), Image.new("RGB", (90, 60), "red")]
    x = torch.from_numpy(np.stack([np.asarray(i.resize((32, 32))).transpose(2, 0, 1) for i in images]))
    with torch.no_grad():
        expected = model(x).numpy() * 100
    got = load_predictor(path).predict(images)
    assert got.shape == (2,)
    assert np.allclose(got[1], expected[1], atol=1e-4)  # solid colour: resize method is moot


def test_missing_model_says_what_to_run(tmp_path):
    with pytest.raises(CoverpopError, match="run `dvc repro` \\(or `dvc pull`"):
        load_predictor(tmp_path / "none.pt")
