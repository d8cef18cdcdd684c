"""Shared fixtures: small random datasets written through the real store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from webly.data import Batch, Dataset, DatasetWriter, FeatureSpec, Layout

REAL_YT8M = Path(__file__).resolve().parents[2] / "shared" / "data" / "yt8m-2018-validate"


def random_batch(
    rng: np.random.Generator, layout: Layout, n: int, prefix: str = "v", max_frames: int = 12
) -> Batch:
    """``n`` random rows matching ``layout`` (1–3 labels a row, 1..max_frames frames)."""
    k = 1 if layout.task == "multiclass" else 3
    labels = [
        rng.choice(layout.n_classes, size=rng.integers(1, k + 1), replace=False) for _ in range(n)
    ]
    n_frames = rng.integers(1, max_frames + 1, size=n)
    features, frames = {}, {}
    for spec in layout.features:
        if spec.level == "video":
            features[spec.name] = rng.uniform(-2, 2, size=(n, spec.dim)).astype(np.float32)
        else:
            frames[spec.name] = [
                rng.integers(0, 256, size=(t, spec.dim), dtype=np.uint8) for t in n_frames
            ]
    return Batch(
        ids=[f"{prefix}{i}" for i in range(n)],
        labels=labels,
        features=features,
        frames=frames,
        groups=[f"g{i // 3}" for i in range(n)] if layout.has_group else None,
        texts=[f"text of {prefix}{i}" for i in range(n)] if layout.has_text else None,
        clean_labels=labels if layout.has_clean_labels else None,
    )


@pytest.fixture
def video_layout() -> Layout:
    return Layout(
        features=(FeatureSpec("rgb", 16, "uint8"), FeatureSpec("audio", 4, "float32")),
        n_classes=20,
    )


@pytest.fixture
def small_store(tmp_path: Path, video_layout: Layout) -> Dataset:
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "store", video_layout) as writer:
        writer.write_batch(random_batch(rng, video_layout, 200))
    return Dataset.open(tmp_path / "store")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Small test models run faster on one thread than with two threads fighting for 2 cores."""
    import torch

    torch.set_num_threads(1)
