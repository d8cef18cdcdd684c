"""Frame selection: random with replacement, regular, cosine threshold, all."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from webly.data import Batch, Dataset, DatasetWriter, FeatureSpec, Layout
from webly.errors import ConfigError
from webly.train import cosine_keep, gather_frames, regular_indices


def test_cosine_keep_drops_near_duplicates() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    frames = np.stack([a, a * 2, a + 0.01 * b, b, b, a])  # (6, 2)
    assert cosine_keep(frames, 0.1).tolist() == [0, 3, 5]
    kept = cosine_keep(frames, 0.1)
    unit = frames / np.linalg.norm(frames, axis=1, keepdims=True)
    assert all(1 - unit[i] @ unit[j] > 0.1 for i, j in itertools.pairwise(kept))
    assert cosine_keep(frames, -1.0).tolist() == list(range(6))
    assert cosine_keep(np.zeros((0, 2)), 0.1).size == 0


def test_regular_indices() -> None:
    assert regular_indices(3, 5).tolist() == [0, 1, 2]
    assert regular_indices(9, 3).tolist() == [0, 4, 8]


@pytest.fixture
def store(tmp_path: Path) -> Dataset:
    layout = Layout(features=(FeatureSpec("rgb", 2, level="frame"),), n_classes=2)
    t = np.arange(10, dtype=np.float32)
    long = np.stack([np.cos(t), np.sin(t)], axis=1)  # (10, 2), each frame turns by 1 rad
    still = np.tile([[1.0, 0.0]], (4, 1)).astype(np.float32)  # (4, 2), one repeated frame
    with DatasetWriter(tmp_path / "s", layout) as writer:
        writer.write_batch(Batch(["a", "b"], [[0], [1]], frames={"rgb": [long, still]}))
    return Dataset.open(tmp_path / "s")


def test_random_with_replacement_is_seeded(store: Dataset) -> None:
    rows = np.array([0, 1])
    x, lengths = gather_frames(store, rows, ["rgb"], "random", 6, np.random.default_rng(0))
    assert lengths.tolist() == [6, 4] and x.shape == (2, 6, 2)  # the 4-frame row draws 4
    y, _ = gather_frames(store, rows, ["rgb"], "random", 6, np.random.default_rng(0))
    assert np.array_equal(x, y)
    long, _ = store.frames([0], ["rgb"])  # (1, 10, 2)
    times = np.linalg.norm(x[0][:, None] - long[0][None], axis=2).argmin(axis=1)  # (6,)
    assert np.allclose(x[0], long[0][times]) and np.all(np.diff(times) >= 0)  # time order


def test_regular_cosine_and_all(store: Dataset) -> None:
    rng = np.random.default_rng(0)
    rows = np.array([0, 1])
    _, lengths = gather_frames(store, rows, ["rgb"], "regular", 3, rng)
    assert lengths.tolist() == [3, 3]
    x, lengths = gather_frames(store, rows, ["rgb"], "cosine", 100, rng, threshold=0.4)
    assert lengths.tolist() == [10, 1]  # 1 - cos(1 rad) = 0.46 > 0.4; a still video keeps one
    _, lengths = gather_frames(store, rows, ["rgb"], "cosine", 100, rng, threshold=0.5)
    assert lengths.tolist() == [5, 1]  # only 2 rad turns exceed 0.5: every other frame
    x, lengths = gather_frames(store, rows, ["rgb"], "cosine", 4, rng, threshold=0.4)
    assert lengths.tolist() == [4, 1] and x.shape == (2, 4, 2)
    _, lengths = gather_frames(store, rows, ["rgb"], "all", 1, rng)
    assert lengths.tolist() == [10, 4]
    with pytest.raises(ConfigError, match="frame sampling 'x' is unknown"):
        gather_frames(store, rows, ["rgb"], "x", 3, rng)  # type: ignore[arg-type]
