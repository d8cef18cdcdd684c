"""Evaluation metrics over dense scores or sparse top-k predictions (see `ranking`)."""

from webly.metrics.classification import (
    BAND_NAMES,
    frequency_bands,
    mean_class_error,
    metrics_by_band,
    per_class_top1_accuracy,
)
from webly.metrics.ranking import (
    gap_at_k,
    hit_at_1,
    mean_average_precision,
    per_class_average_precision,
    perr,
    top_k_accuracy,
)

__all__ = [
    "BAND_NAMES",
    "frequency_bands",
    "gap_at_k",
    "hit_at_1",
    "mean_average_precision",
    "mean_class_error",
    "metrics_by_band",
    "per_class_average_precision",
    "per_class_top1_accuracy",
    "perr",
    "top_k_accuracy",
]
