"""How well noisy labels were found: precision, recall and F1 against the benchmark's truth.

The generated benchmarks keep the true labels (``Dataset.clean_labels``) beside the noisy ones,
so the truth is exact: a row is noisy when its labels differ from its clean labels, and in
multi-label data each differing (row, class) entry is a spurious label (given, not true) or a
missing one (true, not given).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from webly.core import LabelsLike, canonical_labels
from webly.errors import DataError


class DetectionScores(NamedTuple):
    """Precision, recall and F1 of a detection, and the counts they come from."""

    precision: float
    recall: float
    f1: float
    n_predicted: int
    n_true: int
    n_correct: int


def detection_scores(
    is_noisy_pred: np.ndarray | LabelsLike, is_noisy_true: np.ndarray | LabelsLike
) -> DetectionScores:
    """Score flagged rows, or flagged (row, label) entries, against the truth.

    Parameters
    ----------
    is_noisy_pred, is_noisy_true : (n_samples,) bool, or (n_samples, n_classes) sparse / dense
        0/1 of the same shape
        Rows (or entries) flagged, and those truly noisy; any non-zero counts as flagged.

    Returns
    -------
    DetectionScores
        ``precision = correct / predicted``, ``recall = correct / true``, ``f1`` their harmonic
        mean; each is 0.0 where its denominator is 0 (as scikit-learn's ``zero_division=0``).
    """
    pred, true = (
        _as_flags(is_noisy_pred, "is_noisy_pred"),
        _as_flags(is_noisy_true, "is_noisy_true"),
    )
    if pred.shape != true.shape:
        raise DataError(
            f"is_noisy_pred has shape {pred.shape} but is_noisy_true {true.shape}; pass flags of "
            "the same rows (and classes)"
        )
    if isinstance(pred, sp.csr_matrix) and isinstance(true, sp.csr_matrix):
        n_pred, n_true = int(pred.nnz), int(true.nnz)
        n_correct = int(pred.multiply(true).nnz)
    else:
        n_pred, n_true = int(pred.sum()), int(true.sum())
        n_correct = int((pred & true).sum())
    precision = n_correct / n_pred if n_pred else 0.0
    recall = n_correct / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DetectionScores(precision, recall, f1, n_pred, n_true, n_correct)


def noisy_rows(labels: LabelsLike, clean_labels: LabelsLike) -> np.ndarray:
    """(n_samples,) bool: rows whose given labels differ from their true labels."""
    spurious, missing = noisy_entries(labels, clean_labels)
    return (np.diff(spurious.indptr) + np.diff(missing.indptr)) > 0


def noisy_entries(
    labels: LabelsLike, clean_labels: LabelsLike
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The truth per (row, label): ``spurious`` (given, not true) and ``missing`` (true, not
    given), each an (n_samples, n_classes) bool csr_matrix.

    Parameters
    ----------
    labels, clean_labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int ids
        Given and true labels of the same rows (1-d ids need ``clean_labels`` 1-d too).
    """
    given, clean = _as_label_matrix(labels, clean_labels), _as_label_matrix(clean_labels, labels)
    if given.shape != clean.shape:
        raise DataError(
            f"labels have shape {given.shape} but clean_labels {clean.shape}; pass the given and "
            "true labels of the same rows and classes"
        )
    return sp.csr_matrix(given > clean), sp.csr_matrix(clean > given)


def _as_flags(flags: np.ndarray | LabelsLike, name: str) -> np.ndarray | sp.csr_matrix:
    """(n_samples,) bool row flags, or (n_samples, n_classes) bool CSR entry flags."""
    if not sp.issparse(flags):
        array = np.asarray(flags)
        if array.ndim == 1:
            return array != 0
        if array.ndim != 2:
            raise DataError(
                f"{name} has shape {array.shape}; pass (n_samples,) row flags or (n_samples, "
                "n_classes) label flags"
            )
        flags = array
    out = sp.csr_matrix(flags != 0, dtype=bool)
    out.eliminate_zeros()
    return out


def _as_label_matrix(labels: LabelsLike, other: LabelsLike) -> sp.csr_matrix:
    """`canonical_labels` of ``labels``; 1-d ids become one-hot rows with ``other``'s class
    count (2-d) or as many classes as either uses."""
    if len(labels.shape) == 2:
        return canonical_labels(labels)
    if len(other.shape) == 2:
        return canonical_labels(labels, n_classes=int(other.shape[1]))
    ids = [np.asarray(labels), np.asarray(other)]
    most = max(int(a.max(initial=-1)) if a.dtype.kind in "iu" else -1 for a in ids)
    return canonical_labels(labels, n_classes=most + 1)
