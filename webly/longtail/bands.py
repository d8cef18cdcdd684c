"""Head / medium / tail figures by training frequency (bands of
`webly.metrics.classification.frequency_bands`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from webly.core import LabelsLike, Task, TopK, canonical_labels
from webly.metrics.classification import (
    BAND_NAMES,
    BandMetric,
    class_counts,
    frequency_bands,
    metrics_by_band,
)


@dataclass(frozen=True)
class BandReport:
    """One figure per frequency band.

    Attributes
    ----------
    metric : ``"top1_accuracy"`` (multi-class) or ``"average_precision"`` (multi-label)
    values : {"head", "medium", "tail"} -> mean of the per-class figure over the band's classes
        that have positives in the evaluated labels; NaN for a band without such classes
    n_classes : {"head", "medium", "tail"} -> classes of the band (by training count)
    """

    metric: BandMetric
    values: dict[str, float]
    n_classes: dict[str, int]


def band_report(
    scores: np.ndarray | TopK,
    labels: LabelsLike,
    train_labels: LabelsLike,
    *,
    task: Task | None = None,
    head: int = 100,
    tail: int = 20,
) -> BandReport:
    """Per-band top-1 accuracy (multi-class) or class-mean average precision (multi-label).

    Parameters
    ----------
    scores : (n_samples, n_classes) float, or TopK
        Predictions on the evaluated rows.
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
        Labels of the evaluated rows.
    train_labels : (n_train, n_classes) sparse or dense 0/1, or (n_train,) int class ids
        Training labels; their class counts define the bands.
    task : {"multilabel", "multiclass"}, optional
        Picks the figure; default multi-class when no row has more than one label.
    head, tail : int
        Classes with more than ``head`` training rows are head, with fewer than ``tail`` tail
        (`frequency_bands`).

    Returns
    -------
    BandReport
    """
    n_classes = _n_classes(scores, labels, train_labels)
    train = canonical_labels(train_labels, n_classes=n_classes)
    evaluated = canonical_labels(labels, n_classes=train.shape[1])
    if task is None:
        multilabel = np.diff(evaluated.indptr).max(initial=0) > 1
        task = Task.MULTILABEL if multilabel else Task.MULTICLASS
    metric: BandMetric = "average_precision" if Task.parse(task).multilabel else "top1_accuracy"
    bands = frequency_bands(class_counts(train), head=head, tail=tail)
    values = metrics_by_band(scores, evaluated, bands, metric)
    sizes = np.bincount(bands, minlength=len(BAND_NAMES))
    return BandReport(
        metric=metric,
        values=values,
        n_classes={name: int(sizes[i]) for i, name in enumerate(BAND_NAMES)},
    )


def _n_classes(scores: np.ndarray | TopK, *labels: LabelsLike) -> int | None:
    """The class count of the first 2-d input (dense scores, then either labels), if any."""
    candidates = list(labels) if isinstance(scores, TopK) else [scores, *labels]
    for given in candidates:
        shape = given.shape if sp.issparse(given) else np.shape(given)
        if len(shape) == 2:
            return int(shape[1])
    return None
