"""Ranking metrics over top-k predictions: GAP@k, mean AP, hit@1, PERR and top-k accuracy.

Every metric takes the scores either dense, a float array of shape (n_samples, n_classes), or
sparse, a `TopK` holding each row's k best classes; and the labels either as a
`scipy.sparse` matrix or a dense 0/1 array of shape (n_samples, n_classes) (multi-label, 1 =
positive), or as a 1-d integer array of n_samples class ids (multi-class). With `TopK` scores
and sparse labels nothing of size n_samples * n_classes is ever built: the work is
O(n_samples * k + nnz), so 5M rows x 3,862 classes fit in memory.
"""

from __future__ import annotations

import heapq
import random

import numpy as np
import scipy.sparse as sp

from webly.core import LabelsLike, TopK, canonical_labels, check_k, dense_scores, select_top_k
from webly.errors import DataError

# Mixed hit/miss ties can move GAP by at most the spread between ranking their hits first and
# last. Up to this spread the midpoint is returned, within 0.95e-6 of the starter code's value
# (the accuracy `gap_at_k` promises); above it the starter's tie order is replayed exactly.
_TIE_TOLERANCE = 1.9e-6


def hit_mask(indices: np.ndarray, labels: sp.csr_matrix) -> np.ndarray:
    """Mark which predicted classes are positives of their row.

    Parameters
    ----------
    indices : (n_samples, k) int
        Predicted class ids, -1 = padding.
    labels : (n_samples, n_classes) csr_matrix
        Canonical 0/1 labels, as `webly.core.canonical_labels` returns them.

    Returns
    -------
    (n_samples, k) bool
        True where ``labels[row, indices[row, j]] == 1``; False at padding.

    Notes
    -----
    Compares the predictions with the rows' j-th positive for j = 0, 1, ..., touching only
    the rows that have more than j positives: O(k * nnz) work and no dense label matrix.
    """
    counts = np.diff(labels.indptr)
    hits = np.zeros(indices.shape, dtype=bool)
    by_count = np.argsort(-counts, kind="stable")
    minus_sorted = -counts[by_count]  # ascending
    for j in range(int(counts.max(initial=0))):
        n_rows = int(np.searchsorted(minus_sorted, -j, side="left"))  # rows with > j positives
        if 4 * n_rows >= indices.shape[0]:  # most rows: compare all, -2 matches nothing
            slot = np.minimum(labels.indptr[:-1] + j, labels.nnz - 1)
            positive = np.where(counts > j, labels.indices[slot], -2)
            hits |= indices == positive[:, None]
        else:
            rows = by_count[:n_rows]
            positive = labels.indices[labels.indptr[rows] + j]
            hits[rows] |= indices[rows] == positive[:, None]
    return hits


def gap_at_k(scores: np.ndarray | TopK, labels: LabelsLike, k: int = 20) -> float:
    """YouTube-8M Global Average Precision over each row's top-k predictions.

    The top-k predictions of all rows are pooled and ranked by score, and
    ``GAP = sum_i precision@i * hit_i / n_positives`` over the pool, where n_positives counts
    ALL positives in `labels`, also those outside any row's top-k (rows without predictions
    still count). Equals ``eval_util.calculate_gap`` of the YouTube-8M starter code to within
    1e-6 on any input.

    Parameters
    ----------
    scores : (n_samples, n_classes) float, or TopK
        Dense scores (top-k picked with ``np.argpartition`` as the starter code does) or sparse
        top-k predictions (the best k of them are used; all of them if they hold fewer).
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    k : int
        Predictions per row; clipped to n_classes.

    Returns
    -------
    float
        GAP in [0, 1]; 0.0 when `labels` have no positives.

    Notes
    -----
    Ties: the starter code ranks tied scores in an order fixed by a heap of (score, label)
    tuples and a ``random.seed(0)`` shuffle, so GAP depends on it only when a tie block mixes
    hits and misses. The fast path sorts the pool once (O(N log N), N = n_samples * k) and
    bounds GAP between ranking each mixed block's hits first and last. When no block mixes (the
    bounds agree) the result is exact; when they differ by at most 1.9e-6 their midpoint is
    returned (float32 scores of a million rows tie often, but mostly deep in the ranking where
    a tie moves GAP by ~1e-12); otherwise the starter procedure is replayed exactly: the pool
    in class-major then row order, pushed as (score, label) tuples onto a ``heapq``, shuffled
    with ``random.Random(0).sample`` and stably sorted by descending score. The replay runs in
    Python, about 90 s per 20M pooled predictions.
    """
    checked, csr = validate_inputs(scores, labels)
    indices, values = select_top_k(checked, check_k(k))
    n_positives = int(csr.nnz)
    if n_positives == 0:
        return 0.0
    hits = hit_mask(indices, csr)
    valid = indices >= 0
    if valid.all():
        pool_scores, pool_hits = values.ravel(), hits.ravel()
    else:
        pool_scores, pool_hits = values[valid], hits[valid]
    low, high = _gap_bounds(pool_scores, pool_hits, n_positives)
    if high - low <= _TIE_TOLERANCE:
        return (low + high) / 2
    rows = np.nonzero(valid)[0]
    return _replay_starter_gap(rows, indices[valid], pool_scores, pool_hits, n_positives)


def _gap_bounds(
    pool_scores: np.ndarray, pool_hits: np.ndarray, n_positives: int
) -> tuple[float, float]:
    """GAP with every mixed tie block's hits ranked last (low) and first (high).

    The t-th hit of a tie block that has g pool entries above it and b misses in it ranks at
    g + t (hits first) or g + b + t (hits last); ranks outside the block do not change.
    """
    ranked = np.sort(pool_scores)  # (N,) ascending
    hit_scores = np.sort(pool_scores[pool_hits])  # (M,) ascending
    n_hits = hit_scores.size
    if n_hits == 0:
        return 0.0, 0.0
    new_value = np.r_[True, hit_scores[1:] != hit_scores[:-1]]
    value_starts = np.flatnonzero(new_value)  # (n_values,) first hit of each distinct score
    value_of_hit = np.cumsum(new_value) - 1  # (M,)
    distinct = hit_scores[value_starts]
    first_tied = np.searchsorted(ranked, distinct, side="left")[value_of_hit]
    past_tied = np.searchsorted(ranked, distinct, side="right")[value_of_hit]
    hits_first_tied = value_starts[value_of_hit]
    hits_past_tied = np.r_[value_starts[1:], n_hits][value_of_hit]
    ordinal = n_hits - np.arange(n_hits)  # 1-based position among hits, best first
    above = ranked.size - past_tied  # pool entries scored higher
    t = ordinal - (n_hits - hits_past_tied)  # 1-based position within its tie block
    tied_misses = (past_tied - first_tied) - (hits_past_tied - hits_first_tied)
    high = float(np.sum(ordinal / (above + t))) / n_positives
    low = float(np.sum(ordinal / (above + tied_misses + t))) / n_positives
    return low, high


def _replay_starter_gap(
    rows: np.ndarray,
    classes: np.ndarray,
    pool_scores: np.ndarray,
    pool_hits: np.ndarray,
    n_positives: int,
) -> float:
    """GAP with ties ordered exactly as the YouTube-8M starter code orders them."""
    order = np.lexsort((rows, classes))  # class-major, then row
    heap: list[tuple[float, int]] = []
    for item in zip(
        pool_scores[order].tolist(), pool_hits[order].astype(np.int64).tolist(), strict=True
    ):
        heapq.heappush(heap, item)
    heap_scores = np.array([score for score, _ in heap], dtype=np.float64)
    heap_hits = np.array([hit for _, hit in heap], dtype=bool)
    shuffle = np.array(random.Random(0).sample(range(len(heap)), len(heap)), dtype=np.int64)
    shuffled_scores, shuffled_hits = heap_scores[shuffle], heap_hits[shuffle]
    ranked_hits = shuffled_hits[np.argsort(-shuffled_scores, kind="stable")]
    hit_ranks = np.flatnonzero(ranked_hits) + 1
    return float(np.sum(np.arange(1, hit_ranks.size + 1) / hit_ranks)) / n_positives


def hit_at_1(scores: np.ndarray | TopK, labels: LabelsLike) -> float:
    """Fraction of rows whose best-scored class is a positive.

    Parameters
    ----------
    scores : (n_samples, n_classes) float, or TopK
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids

    Returns
    -------
    float
        Mean over all rows; rows without positives or predictions count as misses. Tied best
        scores are broken arbitrarily.
    """
    checked, csr = validate_inputs(scores, labels)
    indices, _ = select_top_k(checked, 1, sort=True)
    return float(hit_mask(indices, csr)[:, 0].mean())


def top_k_accuracy(scores: np.ndarray | TopK, labels: LabelsLike, k: int) -> float:
    """Fraction of rows whose k best-scored classes hold at least one positive.

    Parameters
    ----------
    scores : (n_samples, n_classes) float, or TopK
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    k : int
        Clipped to n_classes (and to the k of a `TopK`).

    Returns
    -------
    float
        Mean over all rows; for single-label data the usual top-k accuracy.
    """
    checked, csr = validate_inputs(scores, labels)
    indices, _ = select_top_k(checked, check_k(k))
    return float(hit_mask(indices, csr).any(axis=1).mean())


def perr(scores: np.ndarray | TopK, labels: LabelsLike) -> float:
    """Precision at equal recall rate: precision of each row's top-r, r = its positives.

    Parameters
    ----------
    scores : (n_samples, n_classes) float, or TopK
        With a `TopK` holding fewer than r predictions, the missing ones count as misses.
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids

    Returns
    -------
    float
        Mean over rows with at least one positive (0.0 if there are none). Unlike the starter
        code, rows without positives are left out and non-positive scores are not discarded.
    """
    checked, csr = validate_inputs(scores, labels)
    n_positives = np.diff(csr.indptr)
    r_max = int(n_positives.max())
    if r_max == 0:
        return 0.0
    indices, _ = select_top_k(checked, r_max, sort=True)
    found = np.cumsum(hit_mask(indices, csr), axis=1)  # (n_samples, k)
    rows = np.flatnonzero(n_positives)
    r = n_positives[rows]
    last = np.minimum(r, indices.shape[1]) - 1
    return float(np.mean(found[rows, last] / r))


def per_class_average_precision(
    scores: np.ndarray | TopK, labels: LabelsLike, n_classes: int | None = None
) -> np.ndarray:
    """Average precision of each class over the rows ranked by that class's score.

    Parameters
    ----------
    scores : (n_samples, n_classes) float, or TopK
        With a `TopK`, a class's ranked list holds only the rows that have it in their top-k;
        its positives elsewhere still count in the denominator (as in the starter code's mAP).
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    n_classes : int, optional
        Class count when it cannot be read from the inputs (TopK with 1-d labels).

    Returns
    -------
    (n_classes,) float64
        AP per class; NaN for classes without positives. Tied scores are handled as
        scikit-learn's ``average_precision_score`` handles them (the block's hits all get the
        precision at the block's end), so dense input matches it exactly.
    """
    checked, csr = validate_inputs(scores, labels, n_classes)
    indices, values = select_top_k(checked, None)
    hits = hit_mask(indices, csr)
    valid = indices >= 0
    classes, pool_scores, pool_hits = indices[valid], values[valid], hits[valid]
    order = np.lexsort((-pool_scores, classes))
    classes, pool_scores, pool_hits = classes[order], pool_scores[order], pool_hits[order]
    n_classes_ = csr.shape[1]
    ap_sum = np.zeros(n_classes_)
    if classes.size:
        position = np.arange(classes.size)
        new_class = np.r_[True, classes[1:] != classes[:-1]]
        new_block = new_class | np.r_[True, pool_scores[1:] != pool_scores[:-1]]
        class_start = np.maximum.accumulate(np.where(new_class, position, 0))
        found = np.cumsum(pool_hits)
        found_in_class = found - (found - pool_hits)[class_start]
        block_end = np.r_[np.flatnonzero(new_block)[1:] - 1, classes.size - 1]
        end = block_end[np.cumsum(new_block) - 1]
        precision = found_in_class[end] / (end - class_start[end] + 1)
        ap_sum = np.bincount(classes[pool_hits], weights=precision[pool_hits], minlength=n_classes_)
    n_positives = np.bincount(csr.indices, minlength=n_classes_)
    ap = np.full(n_classes_, np.nan)
    has = n_positives > 0
    ap[has] = ap_sum[has] / n_positives[has]
    return ap


def mean_average_precision(scores: np.ndarray | TopK, labels: LabelsLike) -> float:
    """Mean over classes with at least one positive of `per_class_average_precision`.

    Returns
    -------
    float
        mAP in [0, 1]; 0.0 when `labels` have no positives.
    """
    ap = per_class_average_precision(scores, labels)
    return float(np.nanmean(ap)) if not np.isnan(ap).all() else 0.0


def validate_inputs(
    scores: np.ndarray | TopK, labels: LabelsLike, n_classes: int | None = None
) -> tuple[np.ndarray | TopK, sp.csr_matrix]:
    """Validate scores and labels against each other.

    Returns
    -------
    scores : (n_samples, n_classes) float array (float64 stays float64) or the TopK unchanged
    labels : (n_samples, n_classes) canonical 0/1 csr_matrix
    """
    checked: np.ndarray | TopK
    if isinstance(scores, TopK):
        checked = scores
        n_classes = _infer_n_classes(scores, labels, n_classes)
        if scores.indices.size and scores.indices.max() >= n_classes:
            raise DataError(
                f"predictions use class {scores.indices.max()} but labels have {n_classes} "
                f"classes (0..{n_classes - 1}); check the class count"
            )
    else:
        checked = dense_scores(scores)
        if n_classes is not None and n_classes != checked.shape[1]:
            raise DataError(
                f"scores have {checked.shape[1]} classes but n_classes={n_classes}; "
                "pass matching scores"
            )
        n_classes = checked.shape[1]
    n_samples = checked.n_samples if isinstance(checked, TopK) else checked.shape[0]
    if n_samples == 0:
        raise DataError("scores have 0 rows; pass at least one row")
    return checked, canonical_labels(labels, n_samples, n_classes)


def _infer_n_classes(topk: TopK, labels: LabelsLike, n_classes: int | None) -> int:
    if n_classes is not None:
        return n_classes
    shape = labels.shape
    if len(shape) == 2:
        return int(shape[1])
    array = np.asarray(labels)
    most = max(int(array.max()) if array.size else -1, int(topk.indices.max(initial=-1)))
    return most + 1
