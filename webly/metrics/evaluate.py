"""Every ranking figure of a prediction set at once, and scoring of a Kaggle submission file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from webly.data.store import Dataset
from webly.io import align_submission, read_submission
from webly.metrics.ranking import (
    LabelsLike,
    TopK,
    gap_at_k,
    hit_at_1,
    mean_average_precision,
    perr,
    top_k_accuracy,
)


def ranking_metrics(scores: np.ndarray | TopK, labels: LabelsLike, k: int = 20) -> dict[str, float]:
    """GAP@k, hit@1, PERR, mAP and top-5 accuracy of ``scores`` against ``labels``."""
    return {
        f"GAP@{k}": gap_at_k(scores, labels, k=k),
        "hit@1": hit_at_1(scores, labels),
        "PERR": perr(scores, labels),
        "mAP": mean_average_precision(scores, labels),
        "top-5 accuracy": top_k_accuracy(scores, labels, k=5),
    }


def format_cell(column: str, value: Any) -> str:
    """A results-table cell: metrics to 4 decimals, ``seconds`` to 1, yes/no, blank for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}" if column == "seconds" else f"{value:.4f}"
    return str(value)


def score_submission(path: Path, store: Dataset, k: int = 20) -> dict[str, float]:
    """Score a ``VideoId,LabelConfidencePairs`` file against ``store``'s labels.

    Rows of the store without a line in the file count as rows with no predictions.
    """
    store_ids = store.ids
    ids, topk = read_submission(
        path, {str(i): row for row, i in enumerate(store_ids)}, store.n_classes
    )
    return ranking_metrics(align_submission(ids, topk, list(store_ids)), store.labels, k=k)
