"""Load a trained checkpoint and predict popularity (0-100) for covers."""

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from coverpop.core.errors import CoverpopError
from coverpop.train.data import to_uint8
from coverpop.train.models import CoverRegressor, predict


def save_checkpoint(path: str | Path, net: CoverRegressor, /, **meta) -> None:
    """Same tensors and meta -> same bytes. Saved through memory, not to the temp file: torch.save
    names the zip's inner folder after the file it writes, and the temp name holds a pid."""
    from coverpop.core.atomic import write_bytes

    buf = io.BytesIO()
    torch.save({**meta, "state_dict": net.state_dict()}, buf)
    write_bytes(path, buf.getvalue())


class Predictor:
    def __init__(self, ckpt: dict):
        self.ckpt = ckpt
        self.image_size = int(ckpt["image_size"])
        self.model = CoverRegressor(ckpt["model"], self.image_size, ckpt["mean"], ckpt["std"],
                                    output=ckpt["output"], head_hidden=ckpt.get("head_hidden", 0))
        self.model.load_state_dict(ckpt["state_dict"])
        self.model.eval()

    def predict_uint8(self, images: torch.Tensor) -> np.ndarray:
        return predict(self.model, images).numpy() * float(self.ckpt["target_scale"])

    def predict(self, images: list) -> np.ndarray:
        """Images as paths or PIL images → predicted popularity, 0-100."""
        arrays = []
        for item in images:
            if isinstance(item, Image.Image):
                arrays.append(to_uint8(item, self.image_size))
                continue
            try:
                with Image.open(item) as img:
                    arrays.append(to_uint8(img, self.image_size))
            except FileNotFoundError:
                raise CoverpopError(f"{item}: file not found") from None
            except OSError as err:
                raise CoverpopError(f"{item}: not a readable image ({err})") from None
        return self.predict_uint8(torch.from_numpy(np.stack(arrays)))


def load_predictor(path: str | Path = "models/model.pt") -> Predictor:
    path = Path(path)
    if not path.is_file():
        raise CoverpopError(f"{path}: no trained model; run `dvc repro` (or `dvc pull` to fetch "
                            f"the team's)")
    return Predictor(torch.load(path, map_location="cpu", weights_only=False))
