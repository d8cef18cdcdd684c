"""Row samplers: instance permutation, class-balanced and square-root frequencies."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from webly.errors import ConfigError, DataError
from webly.train import epoch_rows, row_weights


def _labels(classes: list[list[int]], n_classes: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(classes)), [len(c) for c in classes])
    cols = np.concatenate([np.asarray(c, dtype=np.int64) for c in classes])
    return sp.csr_matrix((np.ones(cols.size), (rows, cols)), shape=(len(classes), n_classes))


# long tail: class 0 has 800 rows, class 1 150, class 2 40, class 3 10
TAIL = _labels([[0]] * 800 + [[1]] * 150 + [[2]] * 40 + [[3]] * 10, 4)


def test_instance_is_a_permutation() -> None:
    rows = epoch_rows(TAIL, "instance", np.random.default_rng(0))
    assert np.array_equal(np.sort(rows), np.arange(1000))


def test_class_balanced_roughly_uniform_over_classes() -> None:
    rows = epoch_rows(TAIL, "class", np.random.default_rng(0), n_rows=20_000)
    classes = TAIL.indices[rows]
    share = np.bincount(classes, minlength=4) / rows.size
    assert np.allclose(share, 0.25, atol=0.02)


def test_square_root_frequencies() -> None:
    counts = np.array([800, 150, 40, 10])
    expected = np.sqrt(counts) / np.sqrt(counts).sum()
    rows = epoch_rows(TAIL, "sqrt", np.random.default_rng(1), n_rows=20_000)
    share = np.bincount(TAIL.indices[rows], minlength=4) / rows.size
    assert np.allclose(share, expected, atol=0.02)


def test_multilabel_row_weights_sum_over_labels() -> None:
    labels = _labels([[0, 1], [0], [1], []], 3)
    w = row_weights(labels, "class")  # n_0 = n_1 = 2: rows weigh 1/2+1/2, 1/2, 1/2, 0
    assert np.allclose(w, np.array([1.0, 0.5, 0.5, 0.0]) / 2.0)


def test_seeded_and_errors() -> None:
    a = epoch_rows(TAIL, "sqrt", np.random.default_rng(3))
    assert np.array_equal(a, epoch_rows(TAIL, "sqrt", np.random.default_rng(3)))
    with pytest.raises(ConfigError, match="sampler 'x' is unknown"):
        epoch_rows(TAIL, "x", np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no row has a label"):
        row_weights(_labels([[], []], 2), "class")
