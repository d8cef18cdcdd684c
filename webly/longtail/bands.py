"""Head / medium / tail figures by training frequency (bands of
`webly.metrics.classification.frequency_bands`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from webly.errors import ConfigError
from webly.metrics.classification import (
    BAND_NAMES,
    BandMetric,
    class_counts,
    frequency_bands,
    metrics_by_band,
)
from webly.metrics.ranking import LabelsLike, TopK, label_matrix

Task = Literal["multilabel", "multiclass"]


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
    train = label_matrix(train_labels, n_classes)
    evaluated = label_matrix(labels, train.shape[1])
    if task is None:
        task = "multilabel" if np.diff(evaluated.indptr).max(initial=0) > 1 else "multiclass"
    if task not in ("multilabel", "multiclass"):
        raise ConfigError(f"band report task is {task!r}; use multilabel, multiclass or None")
    metric: BandMetric = "top1_accuracy" if task == "multiclass" else "average_precision"
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
