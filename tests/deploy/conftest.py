"""Fixtures of the export/predict/serve tests: small stores and saved networks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import random_batch
from webly.data import Dataset, DatasetWriter, FeatureSpec, Layout
from webly.deploy.exported import LENGTHS, ExportedModel
from webly.deploy.options import PredictOptions
from webly.models import create_model, save_network

# Smaller than the defaults, to keep the tests fast; models not named use their defaults.
SMALL: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": (16,)},
    "resnet_av": {"inner": 16},
    "dbof": {"cluster_size": 32, "hidden": 16},
    "td_conv": {"channels": 16, "hidden": 16},
    "transformer": {"dim": 16, "heads": 2, "layers": 1},
}


def save_model(
    folder: Path, name: str, layout: Layout, groups: tuple[str, ...], **hparams: Any
) -> Path:
    """Build ``name`` over ``groups`` of ``layout``, give its batch norms non-trivial running
    statistics, save it to ``folder`` and return ``folder``."""
    torch.manual_seed(0)
    dims = {g: layout.feature(g).dim for g in groups}
    model = create_model(name, layout.n_classes, dims, **{**SMALL.get(name, {}), **hparams})
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    save_network(model, folder)
    return folder


@pytest.fixture
def frame_layout() -> Layout:
    return Layout(
        features=(
            FeatureSpec("rgb", 16, "uint8", "frame"),
            FeatureSpec("audio", 4, "uint8", "frame", quant_min=-1.0, quant_max=3.0),
            FeatureSpec("mean_rgb", 16, "float32"),
        ),
        n_classes=9,
        class_names=tuple(f"class-{c}" for c in range(9)),
        class_descriptions=tuple(f"the {c}th class" for c in range(9)),
    )


@pytest.fixture
def frame_store(tmp_path: Path, frame_layout: Layout) -> Dataset:
    rng = np.random.default_rng(2)
    with DatasetWriter(tmp_path / "frames", frame_layout) as writer:
        writer.write_batch(random_batch(rng, frame_layout, 45, max_frames=9))
    return Dataset.open(tmp_path / "frames")


class MixedModel(ExportedModel):
    """Stand-in for an export reading frame-level and video-level groups together (e.g. ``rgb``
    frames and ``mean_rgb``) with a known answer: `ExportedModel.feeds` checks its inputs,
    every call's feeds are kept in ``calls``, and a row's probabilities depend on its real
    frames and its video-level values alone (not on padding or the rows beside it)."""

    def __init__(
        self,
        features: tuple[FeatureSpec, ...],
        n_classes: int = 5,
        options: PredictOptions | None = None,
        max_frames: int = 6,
    ) -> None:
        info: dict[str, Any] = {
            "name": "mixed",
            "level": "frame",
            "n_classes": n_classes,
            "class_names": [f"class-{c}" for c in range(n_classes)],
            "max_frames": max_frames,
            "features": [spec.name for spec in features],
            "webly_version": "test",
            "predict": (options or PredictOptions()).to_json(),
        }
        super().__init__(Path("mixed-export"), info, features)
        object.__setattr__(self, "calls", [])

    def predict(self, groups: dict[str, np.ndarray], lengths: Any = None) -> np.ndarray:
        feeds = self.feeds(groups, lengths)
        self.calls.append(feeds)
        n = feeds[LENGTHS]
        score = np.zeros(len(n))
        for i, spec in enumerate(self.features):
            x = feeds[spec.name].astype(np.float64) * (i + 1) / spec.dim
            if spec.level == "frame":  # the mean of the real frames
                real = np.arange(x.shape[1]) < n[:, None]  # (B, T)
                score += (x * real[..., None]).sum(axis=(1, 2)) / np.maximum(n, 1)
            else:
                score += x.sum(axis=1)
        steps = np.linspace(-1.0, 1.0, self.n_classes) / 100
        return (1 / (1 + np.exp(-score[:, None] * steps))).astype(np.float32)
