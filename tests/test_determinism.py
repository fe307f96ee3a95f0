"""Same inputs -> same bytes, for the training side: the checkpoint file, and the switch for
deterministic kernels (on by default on the CPU, opt-in on CUDA)."""

import hashlib
import os

import pytest
import torch

from coverpop.train.checkpoint import save_checkpoint
from coverpop.train.loop import TrainConfig, run, set_determinism
from test_training import covers


@pytest.fixture(autouse=True)
def keep_global_state(tmp_path, monkeypatch):
    monkeypatch.setenv("COVERPOP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.benchmark = before[2]


def test_two_trainings_write_byte_identical_checkpoints(tmp_path):
    """torch.save used to name the zip's inner folder after the temp file (which held the pid);
    two runs of the same recipe must now give the same file, whatever it is called."""
    cfg = TrainConfig(model="test_resnet", image_size=32, epochs=1, batch_size=16,
                      warmup_epochs=0, progress=False).validated()
    digests = []
    for i, name in enumerate(("model.pt", "other-name.pt")):
        result, blank, meta = run(cfg, covers())
        path = tmp_path / str(i) / name
        save_checkpoint(path, result.model, **meta)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert torch.load(path, weights_only=False)["model"] == "test_resnet"


def test_deterministic_kernels_auto_on_cpu_opt_in_on_cuda(monkeypatch):
    assert set_determinism("auto", torch.device("cpu"))
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()  # a missing kernel warns
    assert not set_determinism(False, torch.device("cpu"))
    assert not torch.are_deterministic_algorithms_enabled()

    cuda = torch.device("cuda")   # only flags are set: no GPU is touched
    assert not set_determinism("auto", cuda)
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    torch.backends.cudnn.benchmark = True
    assert set_determinism(True, cuda)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")   # the user's choice is kept
    set_determinism(True, cuda)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
