"""Mixed training rows: each row the weighted mix of two, every feature group alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import random_batch
from webly.data import Dataset, DatasetWriter, FeatureSpec, Layout
from webly.distill.mixed import mix_plan, mix_rows
from webly.errors import ConfigError


@pytest.fixture
def store(tmp_path: Path) -> Dataset:
    layout = Layout(
        features=(
            FeatureSpec("mean_rgb", 6, "float32"),
            FeatureSpec("rgb", 3, "float32", level="frame"),
            FeatureSpec("audio", 2, "float32", level="frame"),
        ),
        n_classes=5,
    )
    batch = random_batch(np.random.default_rng(0), layout, 40, max_frames=6)
    batch.frames.update(
        {name: [f.astype(np.float32) / 255 for f in rows] for name, rows in batch.frames.items()}
    )
    with DatasetWriter(tmp_path / "train", layout) as writer:
        writer.write_batch(batch)
    return Dataset.open(tmp_path / "train")


def test_each_row_mixes_its_partner_by_its_weight_frames_padded(
    store: Dataset, tmp_path: Path
) -> None:
    mixed = mix_rows(store, tmp_path / "mixed", alpha=0.4, seed=3)
    partners, w = mix_plan(len(store), 0.4, 3)
    assert len(mixed) == len(store) and sorted(partners.tolist()) == list(range(len(store)))
    assert mixed.labels.nnz == 0 and w.min() > 0 and w.max() < 1
    rows = np.arange(len(store))
    expected = w[:, None] * store.features(rows) + (1 - w[:, None]) * store.features(partners)
    np.testing.assert_allclose(mixed.features(rows), expected, rtol=1e-5, atol=1e-6)
    frames, lengths = mixed.frames(rows)  # (n, T, 5): rgb then audio
    a, len_a = store.frames(rows)
    b, len_b = store.frames(partners)
    np.testing.assert_array_equal(lengths, np.maximum(len_a, len_b))
    i = int(np.flatnonzero(len_a != len_b)[0])
    n = lengths[i]
    pad = np.zeros((n, 5), np.float32)
    x = pad.copy()
    x[: len_a[i]] = a[i, : len_a[i]]
    y = pad.copy()
    y[: len_b[i]] = b[i, : len_b[i]]
    np.testing.assert_allclose(frames[i, :n], w[i] * x + (1 - w[i]) * y, rtol=1e-5, atol=1e-6)


def test_the_same_mix_is_reused_and_another_rewritten(store: Dataset, tmp_path: Path) -> None:
    first = mix_rows(store, tmp_path / "mixed", alpha=0.4, seed=3)
    again = mix_rows(store, tmp_path / "mixed", alpha=0.4, seed=3)
    assert again.manifest == first.manifest
    other = mix_rows(store, tmp_path / "mixed", alpha=1.0, seed=3, overwrite=True)
    assert other.manifest["source"]["alpha"] == 1.0
    assert not np.allclose(other.features([0]), first.features([0]))
    with pytest.raises(ConfigError, match="mixup alpha is 0; use a value > 0"):
        mix_rows(store, tmp_path / "other", alpha=0, seed=3)
