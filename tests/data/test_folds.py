from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from webly.data import assign_folds
from webly.data.folds import rarest_label
from webly.errors import ConfigError


def long_tailed_labels(rng: np.random.Generator, n: int, n_classes: int) -> sp.csr_matrix:
    freq = 1.0 / np.arange(1, n_classes + 1)
    rows = [
        rng.choice(n_classes, size=rng.integers(0, 4), replace=False, p=freq / freq.sum())
        for _ in range(n)
    ]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.concatenate(rows).astype(np.int32)
    return sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(n, n_classes))


def test_rarest_label() -> None:
    labels = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]]))
    assert list(rarest_label(labels)) == [1, 0, 3, 2]


def test_folds_are_deterministic_balanced_and_stratified() -> None:
    labels = long_tailed_labels(np.random.default_rng(0), 3000, 50)
    folds = assign_folds(labels, n_folds=5, seed=7)
    assert folds.dtype == np.int8 and set(folds) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(folds, assign_folds(labels, n_folds=5, seed=7))
    assert not np.array_equal(folds, assign_folds(labels, n_folds=5, seed=8))
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 2
    # Every class with >= 5 rows whose rarest label it is shows in every fold.
    strata = rarest_label(labels)
    for cls in np.flatnonzero(np.bincount(strata, minlength=51) >= 5):
        per_fold = np.bincount(folds[strata == cls], minlength=5)
        assert per_fold.min() >= 1 and per_fold.max() - per_fold.min() <= 1


def test_groups_stay_in_one_fold() -> None:
    rng = np.random.default_rng(1)
    labels = long_tailed_labels(rng, 2000, 30)
    groups = rng.integers(0, 500, size=2000).astype(str)
    folds = assign_folds(labels, n_folds=4, seed=0, groups=groups)
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1
    sizes = np.bincount(folds)
    assert sizes.min() > 0.8 * sizes.max()


def test_bad_fold_counts() -> None:
    labels = sp.csr_matrix(np.eye(3))
    with pytest.raises(ConfigError, match=r"n_folds is 1; use 2\.\.127"):
        assign_folds(labels, n_folds=1)
    with pytest.raises(ConfigError, match="3 rows cannot be split into 4 folds"):
        assign_folds(labels, n_folds=4)


def test_dataset_folds(small_store) -> None:  # type: ignore[no-untyped-def]
    folds = small_store.folds(n_folds=3, seed=0)
    assert folds.shape == (200,)
    np.testing.assert_array_equal(folds, small_store.folds(n_folds=3, seed=0))
