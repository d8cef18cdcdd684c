"""The CUDA path of the trainer (bfloat16 autocast, uint8 frames dequantised on the device).

Skipped on machines without a GPU; run on one with ``pytest tests/train/test_cuda.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import random_batch
from webly.data import Dataset, DatasetWriter, FeatureSpec, Layout
from webly.models import create_model
from webly.train import TrainConfig, fit, iter_scores
from webly.train.loop import _device_decoder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

LAYOUT = Layout(
    features=(
        FeatureSpec("rgb", 12, "uint8", level="frame"),
        FeatureSpec("audio", 4, "uint8", level="frame", quant_min=-1.0, quant_max=3.0),
    ),
    n_classes=5,
)


@pytest.fixture
def frames(tmp_path: Path) -> Dataset:
    with DatasetWriter(tmp_path / "frames", LAYOUT) as writer:
        writer.write_batch(random_batch(np.random.default_rng(0), LAYOUT, 64, max_frames=9))
    return Dataset.open(tmp_path / "frames")


def test_device_dequantisation_equals_the_loaders(frames: Dataset) -> None:
    rows = np.arange(len(frames))
    decoded, lengths = frames.frames(rows, ("rgb", "audio"))
    codes, _ = frames.frames(rows, ("rgb", "audio"), decode=False)
    device = torch.device("cuda")
    decoder = _device_decoder(frames, ("rgb", "audio"), device)
    assert decoder is not None and codes.dtype == np.uint8
    on_device = decoder(torch.from_numpy(codes).to(device), torch.from_numpy(lengths).to(device))
    np.testing.assert_array_equal(on_device.cpu().numpy(), decoded)


def test_fit_trains_on_the_gpu_and_predicts_there(frames: Dataset, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("dbof", 5, {"rgb": 12, "audio": 4}, cluster_size=16, hidden=16)
    config = TrainConfig(epochs=2, batch_size=16, max_frames=6, workers=2)
    result = fit(model, frames, frames, config, ("rgb", "audio"), tmp_path / "w")
    assert next(model.parameters()).device.type == "cuda"
    assert result.best_metric is not None and np.isfinite([s.loss for s in result.history]).all()
    rows, probs = zip(*iter_scores(model, frames, ("rgb", "audio"), batch_size=16), strict=True)
    assert np.concatenate(rows).tolist() == list(range(len(frames)))
    assert np.isfinite(np.concatenate(probs)).all()
