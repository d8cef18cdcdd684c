"""A validation split carved out of a training store: stratified, disjoint, every byte kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from webly.data import Dataset
from webly.data.folds import rarest_label
from webly.data.split import carve_valid, valid_rows, write_rows
from webly.errors import ConfigError


def test_carved_rows_are_stratified_and_the_two_stores_hold_every_row_once(
    small_store: Dataset, tmp_path: Path
) -> None:
    before = sorted(p.name for p in small_store.path.iterdir())
    rows = valid_rows(small_store, 0.1, seed=0)
    assert rows.size == 20 and np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, valid_rows(small_store, 0.1, seed=0))  # deterministic
    assert not np.array_equal(rows, valid_rows(small_store, 0.1, seed=1))
    carve_valid(small_store.path, 0.1, 0, tmp_path / "train", tmp_path / "valid")
    train, valid = Dataset.open(tmp_path / "train"), Dataset.open(tmp_path / "valid")
    assert len(train) == 180 and len(valid) == 20
    assert set(train.ids) | set(valid.ids) == set(small_store.ids)
    assert not set(train.ids) & set(valid.ids)
    np.testing.assert_array_equal(valid.ids, small_store.ids[rows])
    np.testing.assert_array_equal(valid.features(np.arange(20)), small_store.features(rows))
    assert (valid.labels != small_store.labels[rows]).nnz == 0
    assert valid.layout == small_store.layout
    # every class that is the rarest label of at least 10 rows (one a part) is in the split
    counts = np.bincount(rarest_label(small_store.labels), minlength=small_store.n_classes)
    frequent = np.flatnonzero(counts[: small_store.n_classes] >= 10)
    assert frequent.size >= 3
    assert set(frequent) <= set(valid.labels.indices)
    assert sorted(p.name for p in small_store.path.iterdir()) == before  # only read


def test_write_rows_refuses_an_existing_folder_and_a_store_too_small(
    small_store: Dataset, tmp_path: Path
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match="taken"):
        write_rows(small_store, np.arange(3), tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match=r"has 5 rows, too few to carve a validation split"):
        valid_rows(small_store.subset(np.arange(5)), 0.2, seed=0)
