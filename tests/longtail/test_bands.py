"""band_report: bands by training frequency, accuracy or AP per band, reusing
`webly.metrics.classification`."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from webly.core import TopK
from webly.errors import ConfigError, DataError
from webly.longtail import band_report
from webly.metrics import frequency_bands, metrics_by_band

TRAIN_IDS = np.repeat([0, 1, 2], [5, 3, 1])  # head > 4, tail < 2: class 0 head, 1 medium, 2 tail
LABELS = np.array([0, 0, 1, 1, 2, 2])
SCORES = np.array(
    [[0.9, 0.1, 0], [0.2, 0.8, 0], [0.1, 0.9, 0], [0.6, 0.4, 0], [0.1, 0.1, 0.8], [0, 0, 1.0]]
)


def test_multiclass_accuracy_per_band() -> None:
    report = band_report(SCORES, LABELS, TRAIN_IDS, head=4, tail=2)
    assert report.metric == "top1_accuracy"
    assert report.values == {"head": 0.5, "medium": 0.5, "tail": 1.0}
    assert report.n_classes == {"head": 1, "medium": 1, "tail": 1}
    same = band_report(TopK.from_dense(SCORES, 2), LABELS, TRAIN_IDS, head=4, tail=2)
    assert same.values == report.values


def test_multilabel_average_precision_equals_metrics_by_band() -> None:
    rng = np.random.default_rng(0)
    labels = sp.csr_matrix((rng.random((30, 5)) < 0.3).astype(np.float32))
    train = sp.csr_matrix((rng.random((80, 5)) < np.array([0.5, 0.4, 0.1, 0.05, 0.3])) * 1.0)
    scores = rng.random((30, 5))
    report = band_report(scores, labels, train, head=20, tail=8)
    assert report.metric == "average_precision"
    counts = np.asarray(train.sum(axis=0)).ravel().astype(np.int64)
    expected = metrics_by_band(scores, labels, frequency_bands(counts, 20, 8), "average_precision")
    np.testing.assert_equal(report.values, expected)


def test_errors_one_line() -> None:
    with pytest.raises(ConfigError, match="task is 'binary'") as info:
        band_report(SCORES, LABELS, TRAIN_IDS, task="binary")  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="labels have 3 classes but n_classes is 4"):
        band_report(np.zeros((6, 4)), LABELS, np.eye(3))
    with pytest.raises(ConfigError, match="tail=9 exceeds head=4"):
        band_report(SCORES, LABELS, TRAIN_IDS, head=4, tail=9)
