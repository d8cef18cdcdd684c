"""Every ranking figure of a prediction set at once, the zoo's headline figures (GAP@20 or
accuracy, BCE or log-loss) and the cells of a results table."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from webly.core import GAP_K, LabelsLike, Task, TopK
from webly.metrics.ranking import gap_at_k, hit_at_1, mean_average_precision, perr, top_k_accuracy

_EPS = 1e-7


def ranking_metrics(scores: np.ndarray | TopK, labels: LabelsLike, k: int = 20) -> dict[str, float]:
    """GAP@k, hit@1, PERR, mAP and top-5 accuracy of ``scores`` against ``labels``."""
    return {
        f"GAP@{k}": gap_at_k(scores, labels, k=k),
        "hit@1": hit_at_1(scores, labels),
        "PERR": perr(scores, labels),
        "mAP": mean_average_precision(scores, labels),
        "top-5 accuracy": top_k_accuracy(scores, labels, k=5),
    }


def task_metric(scores: np.ndarray | TopK, labels: LabelsLike, task: Task, k: int = GAP_K) -> float:
    """``task.metric(k)`` of ``scores`` (B, C) or a (B, k') TopK: GAP@k (multi-label) or
    accuracy (multi-class)."""
    if Task.parse(task).multilabel:
        return gap_at_k(scores, labels, k=k)
    return hit_at_1(scores, labels)


def loss_sum(probs: np.ndarray, labels: sp.csr_matrix, task: Task) -> float:
    """Summed per-row ``task.loss``: BCE (mean over classes, multi-label) or log-loss
    (multi-class).

    ``probs`` (B, C) in [0, 1], ``labels`` (B, C) 0/1; probabilities are clipped to
    ``[1e-7, 1 - 1e-7]``.
    """
    p = np.clip(probs.astype(np.float64), _EPS, 1 - _EPS)
    if Task.parse(task).multilabel:
        y = labels.toarray() > 0
        return float(-np.where(y, np.log(p), np.log1p(-p)).mean(axis=1).sum())
    rows, cols = labels.nonzero()
    return float(-np.log(p[rows, cols]).sum())


def format_cell(column: str, value: Any) -> str:
    """A results-table cell: metrics to 4 decimals, ``seconds`` to 1, yes/no, blank for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}" if column == "seconds" else f"{value:.4f}"
    return str(value)
