"""Per-label confidences in the forms `webly.longtail` accepts, and labelled entries ranked by
them within each class.

Labels come as a canonical 0/1 CSR matrix (`webly.core.canonical_labels`). A confidence
("score") ranks a row within a class: one per row ``(n_samples,)`` (e.g. the out-of-fold
probability of its given label), used for each of the row's classes, or one per (row, class)
``(n_samples, n_classes)``, dense or sparse (read at the labelled entries; an entry a sparse
matrix does not store counts as 0).
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import scipy.sparse as sp

from webly.errors import DataError

ScoresLike: TypeAlias = np.ndarray | sp.spmatrix | sp.sparray


def entry_scores(labels: sp.csr_matrix, scores: ScoresLike) -> np.ndarray:
    """The confidence of each labelled (row, class) entry, in the CSR order of ``labels``.

    Parameters
    ----------
    labels : (n_samples, n_classes) canonical 0/1 csr_matrix
    scores : (n_samples,) float, or (n_samples, n_classes) float dense or sparse

    Returns
    -------
    (nnz,) float64
    """
    n, c = labels.shape
    shape = scores.shape if sp.issparse(scores) else np.shape(scores)
    if shape not in ((n,), (n, c)):
        raise DataError(
            f"scores have shape {shape} but labels are ({n}, {c}); pass one confidence per row "
            f"({n},) or per row and class ({n}, {c})"
        )
    rows = np.repeat(np.arange(n), np.diff(labels.indptr))  # (nnz,)
    if sp.issparse(scores):
        values = np.asarray(sp.csr_matrix(scores)[rows, labels.indices]).ravel()
    else:
        array: np.ndarray = np.asarray(scores)
        if array.dtype.kind not in "fiu":
            raise DataError(f"scores have dtype {array.dtype}; pass real-valued confidences")
        values = array[rows] if array.ndim == 1 else array[rows, labels.indices]
    values = values.astype(np.float64, copy=False)
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"scores hold {values[first]} at row {rows[first]}, class "
            f"{labels.indices[first]}; replace non-finite confidences"
        )
    return values


def rank_in_class(
    labels: sp.csr_matrix, scores: np.ndarray, tiebreak: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort the labelled entries by class, then by descending confidence.

    Parameters
    ----------
    labels : (n_samples, n_classes) canonical 0/1 csr_matrix
    scores : (nnz,) float, as `entry_scores` returns
    tiebreak : (n_samples,) int, optional
        Order among rows of equal confidence (lower first); default the row index.

    Returns
    -------
    classes : (nnz,) int64, ascending
    rows : (nnz,) int64, each class's rows best first
    rank : (nnz,) int64, 0-based position of the row within its class
    """
    n = labels.shape[0]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(labels.indptr))
    ties = rows if tiebreak is None else np.asarray(tiebreak)[rows]
    order = np.lexsort((ties, -scores, labels.indices))
    classes = labels.indices[order].astype(np.int64)
    position = np.arange(classes.size, dtype=np.int64)
    starts = np.r_[True, classes[1:] != classes[:-1]] if classes.size else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(starts, position, 0)) if classes.size else position
    return classes, rows[order], position - first
