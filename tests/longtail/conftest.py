"""A long-tailed toy problem: 4 classes with 300 / 150 / 30 / 6 training rows (head, head,
medium, tail under bands head > 100, tail < 20) and a class-balanced validation split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from webly.data import Batch, Dataset, DatasetWriter, FeatureSpec, Layout
from webly.models import create_model
from webly.train import TrainConfig, fit

DIM, N_CLASSES = 8, 4
TRAIN_COUNTS = (300, 150, 30, 6)
VALID_PER_CLASS = 60
SEPARATION = 4.0
HEAD, TAIL = 100, 20  # band thresholds: class 3 (6 rows) is tail, class 2 (30) medium
TRAIN = TrainConfig(epochs=40, batch_size=64, lr=0.05, seed=0)


def write_store(path: Path, labels: Sequence[Any], x: np.ndarray, task: str) -> Dataset:
    """A store with one video-level feature group ``x``."""
    layout = Layout(
        features=(FeatureSpec("x", x.shape[1]),),
        n_classes=N_CLASSES,
        task=task,  # type: ignore[arg-type]
    )
    with DatasetWriter(path, layout) as writer:
        ids = [f"r{i}" for i in range(len(labels))]
        writer.write_batch(Batch(ids, labels, features={"x": x.astype(np.float32)}))
    return Dataset.open(path)


def gaussian_store(path: Path, counts: tuple[int, ...], seed: int) -> Dataset:
    """Class c: ``counts[c]`` rows around a fixed mean at distance `SEPARATION` from 0."""
    means = np.random.default_rng(42).normal(size=(N_CLASSES, DIM))
    means *= SEPARATION / np.linalg.norm(means, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(N_CLASSES), counts)
    x = means[y] + rng.normal(size=(y.size, DIM))
    return write_store(path, [[int(c)] for c in y], x, "multiclass")


def train_network(name: str, train: Dataset, workdir: Path, **options: Any) -> Any:
    """``name`` fitted on ``train`` with `TRAIN` (instance-balanced sampling)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = create_model(name, N_CLASSES, {"x": DIM}, **options)
    fit(net, train, None, TRAIN, ("x",), workdir)
    return net


@pytest.fixture(scope="session")
def long_tail(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Dataset]:
    """(train, valid) of the long-tailed toy problem."""
    root = tmp_path_factory.mktemp("longtail")
    train = gaussian_store(root / "train", TRAIN_COUNTS, seed=0)
    valid = gaussian_store(root / "valid", (VALID_PER_CLASS,) * N_CLASSES, seed=1)
    return train, valid
