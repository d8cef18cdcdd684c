"""Tests of webly.metrics.classification: mean class error and frequency bands."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from webly.core import TopK
from webly.errors import ConfigError, DataError
from webly.metrics import (
    frequency_bands,
    mean_class_error,
    metrics_by_band,
    per_class_average_precision,
    per_class_top1_accuracy,
)


def test_mean_class_error_hand_computed() -> None:
    # class 0: rows 0, 1 -> predicted 0, 2 -> 1/2; class 1: row 2 -> 1/1; class 2: absent
    # from the labels, so it does not count. MCE = 1 - (1/2 + 1) / 2 = 1/4.
    labels = np.array([0, 0, 1])
    pred = np.array([0, 2, 1])
    assert mean_class_error(pred, labels) == pytest.approx(0.25)
    scores = np.eye(3)[pred] * 0.9
    assert mean_class_error(scores, labels) == pytest.approx(0.25)
    assert mean_class_error(TopK.from_dense(scores, 2), labels) == pytest.approx(0.25)
    acc = per_class_top1_accuracy(pred, labels, n_classes=4)
    np.testing.assert_allclose(acc, [0.5, 1.0, np.nan, np.nan])


def test_mean_class_error_matches_balanced_accuracy() -> None:
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    y, scores = rng.integers(0, 6, 500), rng.random((500, 6))
    expected = 1 - balanced_accuracy_score(y, scores.argmax(axis=1))
    assert mean_class_error(scores, y) == pytest.approx(expected)


def test_multilabel_rows_count_once_per_positive_class() -> None:
    # row 0 has classes 0 and 1 and predicts 1: right for class 1, wrong for class 0
    labels = sp.csr_matrix(np.array([[1, 1], [1, 0]]))
    pred = np.array([1, 0])
    np.testing.assert_allclose(per_class_top1_accuracy(pred, labels), [0.5, 1.0])


def test_mean_class_error_errors() -> None:
    with pytest.raises(DataError, match="no positives"):
        mean_class_error(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(DataError, match="1-d predictions have dtype float64"):
        mean_class_error(np.array([0.0, 1.0]), np.array([0, 1]))
    with pytest.raises(DataError, match="minimum -1"):
        mean_class_error(np.array([-1, 1]), np.array([0, 1]))


def test_frequency_bands_thresholds() -> None:
    counts = np.array([500, 101, 100, 20, 19, 0])
    np.testing.assert_array_equal(frequency_bands(counts), [0, 0, 1, 1, 2, 2])
    bands = frequency_bands(counts, head=10, tail=5)
    assert bands.dtype == np.int8
    np.testing.assert_array_equal(bands, [0, 0, 0, 0, 0, 2])


@pytest.mark.parametrize(
    ("counts", "kwargs", "error", "message"),
    [
        (np.array([1.5, 2.0]), {}, DataError, "1-d integer array"),
        (np.array([[1, 2]]), {}, DataError, r"shape \(1, 2\)"),
        (np.array([3, -1]), {}, DataError, "hold -1 for class 1"),
        (np.array([3]), {"head": 10, "tail": 50}, ConfigError, "tail=50 exceeds head=10"),
    ],
)
def test_frequency_bands_errors(
    counts: np.ndarray, kwargs: dict[str, int], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        frequency_bands(counts, **kwargs)


def test_metrics_by_band_averages_within_each_band() -> None:
    labels = np.array([0, 0, 1, 2, 3])
    pred = np.array([0, 1, 1, 0, 3])
    bands = np.array([0, 0, 2, 1], dtype=np.int8)  # classes 0, 1 head; 3 medium; 2 tail
    # head: class 0 -> 1/2, class 1 -> 1/1; medium: class 3 -> 1; tail: class 2 -> 0
    assert metrics_by_band(pred, labels, bands) == {"head": 0.75, "medium": 1.0, "tail": 0.0}
    empty_tail = metrics_by_band(pred, labels, np.array([0, 0, 0, 1, 1], dtype=np.int8))
    assert np.isnan(empty_tail["tail"]) and empty_tail["medium"] == 1.0


def test_metrics_by_band_average_precision() -> None:
    rng = np.random.default_rng(1)
    scores, labels = rng.random((60, 4)), (rng.random((60, 4)) < 0.3).astype(int)
    bands = np.array([0, 1, 1, 2])
    ap = per_class_average_precision(scores, labels)
    got = metrics_by_band(scores, labels, bands, metric="average_precision")
    assert got == pytest.approx({"head": ap[0], "medium": ap[1:3].mean(), "tail": ap[3]})


def test_metrics_by_band_errors() -> None:
    with pytest.raises(ConfigError, match="unknown band metric 'f1'"):
        metrics_by_band(np.array([0]), np.array([0]), np.array([0]), metric="f1")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"in \{0, 1, 2\}"):
        metrics_by_band(np.array([0]), np.array([0]), np.array([3]))
    with pytest.raises(DataError, match="n_classes=2"):
        metrics_by_band(np.zeros((1, 3)), np.array([0]), np.array([0, 1]))
