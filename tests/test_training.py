"""The pipeline must learn from pixels: on demo covers the model beats the mean baseline."""

import numpy as np
import torch

from coverpop import demo
from coverpop.data import to_uint8
from coverpop.metrics import score
from coverpop.models import CoverRegressor
from coverpop.training import TrainConfig, predict, train


def demo_covers(n_albums, size):
    albums = demo.make_tracks(n_albums, seed=7).drop_duplicates("album_id")
    albums = albums[albums["demo_variant"] == "original"]
    x = np.stack([to_uint8(demo.render_cover(r, 96), size) for r in albums.to_dict("records")])
    return torch.from_numpy(x), torch.tensor(albums["popularity"].to_numpy() / 100,
                                             dtype=torch.float32)


def test_model_beats_mean_baseline_on_demo_covers():
    torch.manual_seed(0)
    x, y = demo_covers(800, 32)
    n_test = 200
    x_train, y_train, x_test, y_test = x[n_test:], y[n_test:], x[:n_test], y[:n_test]
    model = CoverRegressor("resnet10t", 32, [0.5] * 3, [0.25] * 3)
    cfg = TrainConfig(epochs=6, batch_size=32, lr=3e-3, seed=0)
    train(model, x_train, y_train, x_test, y_test, cfg)
    pred = predict(model, x_test).numpy() * 100
    truth = y_test.numpy() * 100
    mean = np.full_like(truth, float(y_train.mean()) * 100)
    assert score(truth, pred, "spearman") > 0.35
    assert score(truth, pred, "mae") < score(truth, mean, "mae") - 1.0


def test_best_epoch_weights_are_kept():
    torch.manual_seed(0)
    x, y = demo_covers(60, 16)
    model = CoverRegressor("resnet10t", 16, [0.5] * 3, [0.25] * 3)
    result = train(model, x, y, x[:20], y[:20], TrainConfig(epochs=3, batch_size=16, seed=0))
    final = torch.nn.functional.mse_loss(predict(model, x[:20]), y[:20]).item()
    assert abs(final - result["best_val_loss"]) < 1e-5
