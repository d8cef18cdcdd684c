"""Classification metrics for long-tailed data: mean class error and figures per frequency band.

Scores and labels take the forms `webly.metrics.ranking` documents; predictions may also be a
1-d array of predicted class ids.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from webly.core import LabelsLike, TopK, select_top_k
from webly.errors import ConfigError, DataError
from webly.metrics.ranking import per_class_average_precision, validate_inputs

BAND_NAMES = ("head", "medium", "tail")
BandMetric = Literal["top1_accuracy", "average_precision"]


def per_class_top1_accuracy(
    scores_or_pred: np.ndarray | TopK, labels: LabelsLike, n_classes: int | None = None
) -> np.ndarray:
    """Per class, the fraction of its positive rows whose top-1 prediction is that class.

    Parameters
    ----------
    scores_or_pred : (n_samples, n_classes) float, TopK, or (n_samples,) int predicted ids
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
        A multi-label row counts once for each of its positive classes.
    n_classes : int, optional
        Class count when it cannot be read from the inputs (1-d or TopK predictions with 1-d
        labels); the largest id seen + 1 otherwise.

    Returns
    -------
    (n_classes,) float64
        Accuracy per class; NaN for classes without positives.
    """
    scores = _as_scores(scores_or_pred)
    checked, csr = validate_inputs(scores, labels, n_classes)
    top1 = select_top_k(checked, 1, sort=True)[0]  # (n_samples, 1)
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))  # (nnz,) row of each positive
    correct = top1[rows, 0] == csr.indices
    positives = np.bincount(csr.indices, minlength=csr.shape[1])
    right = np.bincount(csr.indices, weights=correct, minlength=csr.shape[1])
    accuracy = np.full(csr.shape[1], np.nan)
    has = positives > 0
    accuracy[has] = right[has] / positives[has]
    return accuracy


def mean_class_error(scores_or_pred: np.ndarray | TopK, labels: LabelsLike) -> float:
    """AliProducts' metric: 1 - mean over classes present in `labels` of top-1 accuracy.

    Parameters
    ----------
    scores_or_pred : (n_samples, n_classes) float, TopK, or (n_samples,) int predicted ids
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids

    Returns
    -------
    float
        Mean class error in [0, 1].
    """
    accuracy = per_class_top1_accuracy(scores_or_pred, labels)
    if np.isnan(accuracy).all():
        raise DataError(
            "labels have no positives, so no class is present; mean class error needs at "
            "least one labelled row"
        )
    return 1.0 - float(np.nanmean(accuracy))


def class_counts(labels: sp.csr_matrix) -> np.ndarray:
    """``(n_classes,)`` int64 rows labelled with each class of a canonical 0/1 CSR matrix."""
    return np.bincount(labels.indices, minlength=labels.shape[1]).astype(np.int64)


def frequency_bands(train_class_counts: np.ndarray, head: int = 100, tail: int = 20) -> np.ndarray:
    """Assign each class to a frequency band by its training-set count.

    Parameters
    ----------
    train_class_counts : (n_classes,) int
        Training samples per class.
    head : int
        Classes with more than `head` samples are head ("many-shot").
    tail : int
        Classes with fewer than `tail` samples are tail ("few-shot"); the rest are medium.

    Returns
    -------
    (n_classes,) int8
        0 = head, 1 = medium, 2 = tail (indices into `BAND_NAMES`).
    """
    counts = np.asarray(train_class_counts)
    if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer):
        raise DataError(
            f"train_class_counts have shape {counts.shape} and dtype {counts.dtype}; pass a "
            "1-d integer array of training samples per class"
        )
    if counts.size and counts.min() < 0:
        raise DataError(
            f"train_class_counts hold {counts.min()} for class {int(np.argmin(counts))}; "
            "counts must be >= 0"
        )
    if tail > head + 1:
        raise ConfigError(
            f"tail={tail} exceeds head={head} + 1, so the bands overlap; pass tail <= head + 1"
        )
    bands = np.ones(counts.shape, dtype=np.int8)
    bands[counts > head] = 0
    bands[counts < tail] = 2
    return bands


def metrics_by_band(
    scores: np.ndarray | TopK,
    labels: LabelsLike,
    bands: np.ndarray,
    metric: BandMetric = "top1_accuracy",
) -> dict[str, float]:
    """Average a per-class figure within each frequency band.

    Parameters
    ----------
    scores : (n_samples, n_classes) float, TopK, or (n_samples,) int predicted ids
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    bands : (n_classes,) int
        Band per class, as `frequency_bands` returns.
    metric : {"top1_accuracy", "average_precision"}
        Per-class figure: `per_class_top1_accuracy` or
        `webly.metrics.ranking.per_class_average_precision`.

    Returns
    -------
    dict
        {"head": ..., "medium": ..., "tail": ...}: mean over the band's classes that have
        positives in `labels`; NaN for a band without such classes.
    """
    band_array = np.asarray(bands)
    if band_array.ndim != 1 or not np.isin(band_array, (0, 1, 2)).all():
        raise DataError(
            f"bands have shape {band_array.shape} and values {np.unique(band_array)[:5]}; "
            "pass one band per class in {0, 1, 2} (see frequency_bands)"
        )
    n_classes = band_array.size
    if metric == "top1_accuracy":
        per_class = per_class_top1_accuracy(scores, labels, n_classes)
    elif metric == "average_precision":
        per_class = per_class_average_precision(_as_scores(scores), labels, n_classes)
    else:
        raise ConfigError(
            f"unknown band metric {metric!r}; choose 'top1_accuracy' or 'average_precision'"
        )
    result = {}
    for band, name in enumerate(BAND_NAMES):
        values = per_class[(band_array == band) & ~np.isnan(per_class)]
        result[name] = float(values.mean()) if values.size else float("nan")
    return result


def _as_scores(scores_or_pred: np.ndarray | TopK) -> np.ndarray | TopK:
    """Turn (n_samples,) predicted ids into a one-entry TopK; pass scores through."""
    if isinstance(scores_or_pred, TopK):
        return scores_or_pred
    array = np.asarray(scores_or_pred)
    if array.ndim != 1:
        return array
    if not np.issubdtype(array.dtype, np.integer) or (array.size and array.min() < 0):
        raise DataError(
            f"1-d predictions have dtype {array.dtype} and minimum "
            f"{array.min() if array.size else None}; pass class ids >= 0, or 2-d scores"
        )
    return TopK(array[:, None], np.zeros((array.size, 1), dtype=np.float32))
