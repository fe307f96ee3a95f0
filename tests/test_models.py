import pytest
import torch

from coverpop.core.errors import CoverpopError
from coverpop.train.models import CoverRegressor


@pytest.mark.parametrize("output, head_hidden", [("sigmoid", 0), ("linear", 0), ("sigmoid", 16)])
def test_first_prediction_is_the_train_mean(output, head_hidden):
    model = CoverRegressor("resnet10t", 32, [0.5] * 3, [0.25] * 3, output=output,
                           head_hidden=head_hidden)
    model.init_output(0.27)
    model.eval()
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert torch.allclose(model(x), torch.full((4,), 0.27), atol=1e-5)


def test_unknown_model_is_a_one_line_error():  # train.output and the like: tests/test_params.py
    with pytest.raises(CoverpopError, match="model='resnet-18' is not a timm model name"):
        CoverRegressor("resnet-18", 32, [0] * 3, [1] * 3)


@pytest.mark.parametrize("name", ["mobilenetv3_small_050", "vit_tiny_patch16_224"])
def test_any_timm_family_gets_a_head(name):
    model = CoverRegressor(name, 32, [0.5] * 3, [0.5] * 3).eval()
    assert model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2,)
