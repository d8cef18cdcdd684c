"""Tests of webly.metrics.ranking: GAP@k against the YouTube-8M starter semantics, and friends."""

from __future__ import annotations

import heapq
import random

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import average_precision_score

from webly.core import TopK, canonical_labels
from webly.errors import DataError
from webly.metrics import ranking
from webly.metrics.ranking import (
    gap_at_k,
    hit_at_1,
    hit_mask,
    mean_average_precision,
    per_class_average_precision,
    perr,
    top_k_accuracy,
)


def starter_gap(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """GAP as the YouTube-8M starter code defines it, written from its documented algorithm.

    Per row: the top-k (class, score, label) triplets chosen by a 1-d argpartition; the triplets
    grouped by class (class-major, rows in order); every (score, label) pushed onto a heap; the
    heap's list shuffled by random.seed(0)-style sampling; a stable descending sort by score;
    AP = sum of precision at each hit / all positives in the labels.
    """
    n_classes = scores.shape[1]
    k = min(k, n_classes)
    by_class: list[list[tuple[float, int]]] = [[] for _ in range(n_classes)]
    for row in range(scores.shape[0]):
        for c in np.argpartition(scores[row], -k)[-k:]:
            by_class[c].append((float(scores[row, c]), int(labels[row, c])))
    heap: list[tuple[float, int]] = []
    for pairs in by_class:
        for pair in pairs:
            heapq.heappush(heap, pair)
    total = int(labels.sum())
    if not heap or total == 0:
        return 0.0
    order = random.Random(0).sample(range(len(heap)), len(heap))
    shuffled = [heap[i] for i in order]
    ranked = sorted(range(len(shuffled)), key=lambda i: shuffled[i][0], reverse=True)
    ap, found = 0.0, 0
    for rank, i in enumerate(ranked, start=1):
        if shuffled[i][1] > 0:
            found += 1
            ap += found / rank / total
    return ap


def random_case(
    rng: np.random.Generator, n: int, c: int, decimals: int | None, empty_rows: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    scores = rng.random((n, c))
    if decimals is not None:
        scores = np.round(scores, decimals)
    labels = (rng.random((n, c)) < 3 / c).astype(np.int8)
    labels[rng.random(n) < empty_rows] = 0
    return scores, labels


@pytest.mark.parametrize("seed", range(40))
def test_gap_matches_starter_on_random_inputs_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 40)), int(rng.integers(1, 12))
    decimals = [None, 1, 2, 0][seed % 4]
    scores, labels = random_case(rng, n, c, decimals)
    for k in (1, 3, 20):
        expected = starter_gap(scores, labels, k)
        assert gap_at_k(scores, labels, k) == pytest.approx(expected, abs=1e-6)
        assert gap_at_k(scores, sp.csr_matrix(labels), k) == pytest.approx(expected, abs=1e-6)
        topk = TopK.from_dense(scores.astype(np.float32), k)
        expected32 = starter_gap(scores.astype(np.float32), labels, k)
        assert gap_at_k(topk, sp.csr_matrix(labels), k) == pytest.approx(expected32, abs=1e-6)


def test_gap_hand_computed_2x3() -> None:
    # k=2. Row 0 keeps classes 0 (0.9, hit) and 2 (0.6, hit); row 1 keeps 0 (0.8, miss) and
    # 1 (0.7, hit). Pool by score: H M H H; 3 positives in all.
    # GAP = (1/1 + 2/3 + 3/4) / 3 = 29/36.
    scores = np.array([[0.9, 0.2, 0.6], [0.8, 0.7, 0.1]])
    labels = np.array([[1, 0, 1], [0, 1, 0]])
    assert gap_at_k(scores, labels, k=2) == pytest.approx(29 / 36, abs=1e-12)
    # k=1: pool 0.9 H, 0.8 M; the positives outside the top-1 still count: (1/1) / 3.
    assert gap_at_k(scores, labels, k=1) == pytest.approx(1 / 3, abs=1e-12)


def test_gap_no_positives_is_zero_and_large_k_is_clipped() -> None:
    scores = np.array([[0.9, 0.2, 0.6], [0.8, 0.7, 0.1]])
    assert gap_at_k(scores, np.zeros((2, 3)), k=20) == 0.0
    labels = np.array([[1, 0, 0], [0, 0, 1]])
    assert gap_at_k(scores, labels, k=1000) == gap_at_k(scores, labels, k=3)


def test_gap_mixed_ties_replay_the_starter_order(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    replay = ranking._replay_starter_gap
    monkeypatch.setattr(ranking, "_replay_starter_gap", lambda *a: calls.append(1) or replay(*a))
    scores = np.array([[0.5, 0.5, 0.1], [0.5, 0.2, 0.5]])
    labels = np.array([[0, 1, 0], [1, 0, 0]])
    assert gap_at_k(scores, labels, k=2) == pytest.approx(starter_gap(scores, labels, 2), abs=1e-12)
    assert calls, "a block of tied hits and misses must take the exact replay"
    calls.clear()
    gap_at_k(np.array([[0.5, 0.5, 0.1]]), np.array([[1, 1, 0]]), k=2)  # tied hits only
    assert not calls


def test_gap_small_tie_spread_returns_the_midpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    scores, labels = random_case(rng, 30, 6, decimals=1)
    monkeypatch.setattr(ranking, "_TIE_TOLERANCE", 0.5)
    monkeypatch.setattr(ranking, "_replay_starter_gap", None)  # must not be reached
    pool_hits = hit_mask(np.argsort(-scores, axis=1)[:, :3], canonical_labels(labels, 30, 6))
    assert pool_hits.any()
    assert gap_at_k(scores, labels, k=3) == pytest.approx(starter_gap(scores, labels, 3), abs=0.25)


def test_gap_topk_with_padding_and_larger_k() -> None:
    rng = np.random.default_rng(1)
    scores, labels = random_case(rng, 50, 8, decimals=None)
    topk = TopK.from_dense(scores, 5)
    # the best 3 of a top-5 are the top-3
    assert gap_at_k(topk, labels, k=3) == pytest.approx(starter_gap(scores, labels, 3), abs=1e-6)
    # dropping a row's predictions (padding) removes them from the pool only
    indices, values = topk.indices.copy(), topk.scores.copy()
    indices[:10] = -1
    values[:10] = 0.0  # replaced by -inf
    padded = TopK(indices, values)
    assert np.isneginf(padded.scores[:10]).all()
    reduced = scores.copy()
    pool_scores = np.sort(reduced, axis=1)[:, -5:]
    hits = np.take_along_axis(labels, np.argsort(reduced, axis=1)[:, -5:], axis=1)[10:]
    order = np.argsort(-pool_scores[10:].ravel(), kind="stable")
    ranked = hits.ravel()[order]
    ranks = np.flatnonzero(ranked) + 1
    expected = np.sum(np.arange(1, ranks.size + 1) / ranks) / labels.sum()
    assert gap_at_k(padded, sp.csr_matrix(labels), k=5) == pytest.approx(expected, abs=1e-6)


def test_gap_never_builds_a_dense_label_matrix() -> None:
    n_classes = 10**9  # dense would be 10 GB a row
    topk = TopK(np.array([[5, 7], [999_999_999, -1]]), np.array([[0.9, 0.8], [0.7, 0.0]]))
    labels = sp.csr_matrix(([1, 1, 1], [7, 3, 999_999_999], [0, 2, 3]), shape=(2, n_classes))
    # pool: 0.9 M, 0.8 H, 0.7 H; 3 positives: (1/2 + 2/3) / 3
    assert gap_at_k(topk, labels, k=20) == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert hit_at_1(topk, labels) == 0.5


def test_hit_mask_matches_dense_lookup() -> None:
    rng = np.random.default_rng(2)
    labels = (rng.random((200, 30)) < rng.random((200, 1)) * 0.5).astype(np.int8)
    indices = np.argsort(rng.random((200, 30)), axis=1)[:, :7]
    indices[rng.random((200, 7)) < 0.1] = -1
    expected = np.where(indices >= 0, np.take_along_axis(labels, indices, axis=1), 0)
    got = hit_mask(indices, canonical_labels(sp.csr_matrix(labels), 200, 30))
    np.testing.assert_array_equal(got, expected.astype(bool))


def test_hit_at_1_top_k_accuracy_and_perr_hand_computed() -> None:
    scores = np.array([[0.9, 0.2, 0.6, 0.0], [0.8, 0.7, 0.1, 0.3], [0.1, 0.2, 0.3, 0.4]])
    labels = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    assert hit_at_1(scores, labels) == pytest.approx(1 / 3)  # only row 0; empty row counts
    assert top_k_accuracy(scores, labels, k=1) == pytest.approx(1 / 3)
    assert top_k_accuracy(scores, labels, k=2) == pytest.approx(2 / 3)
    # PERR: row 0 top-2 {0, 2} -> 2/2; row 1 top-2 {0, 1} -> 1/2; row 2 has no positives
    assert perr(scores, labels) == pytest.approx(0.75)
    topk = TopK.from_dense(scores, 1)  # row 0 top-1 is a hit, row 1's is not: 1/2 and 0/2
    assert perr(topk, sp.csr_matrix(labels)) == pytest.approx(0.25)
    assert perr(scores, np.zeros((3, 4))) == 0.0


def test_top_k_accuracy_multiclass_matches_sklearn() -> None:
    from sklearn.metrics import top_k_accuracy_score

    rng = np.random.default_rng(4)
    scores, y = rng.random((300, 9)), rng.integers(0, 9, 300)
    for k in (1, 3, 5):
        expected = top_k_accuracy_score(y, scores, k=k, labels=np.arange(9))
        assert top_k_accuracy(scores, y, k) == pytest.approx(expected)
        assert top_k_accuracy(TopK.from_dense(scores, 5), y, k) == pytest.approx(expected)


@pytest.mark.parametrize("decimals", [None, 1])
def test_per_class_ap_matches_sklearn_on_dense(decimals: int | None) -> None:
    rng = np.random.default_rng(5)
    scores, labels = random_case(rng, 120, 7, decimals, empty_rows=0.0)
    labels[:, 3] = 0  # a class without positives
    ap = per_class_average_precision(scores, sp.csr_matrix(labels))
    assert np.isnan(ap[3])
    for c in (0, 1, 2, 4, 5, 6):
        if labels[:, c].any():
            assert ap[c] == pytest.approx(average_precision_score(labels[:, c], scores[:, c]))
    assert mean_average_precision(scores, labels) == pytest.approx(np.nanmean(ap))
    assert mean_average_precision(scores, np.zeros_like(labels)) == 0.0


def test_per_class_ap_with_topk_ranks_only_rows_holding_the_class() -> None:
    # class 0 is in the top-1 of rows 0 (hit) and 1 (miss); row 2's positive for class 0 is
    # missing from the list: AP_0 = (1/1) / 2. Class 1: row 2 top-1 is class 1, a miss; its one
    # positive (row 1) is not listed: AP_1 = 0.
    topk = TopK(np.array([[0], [0], [1]]), np.array([[0.9], [0.8], [0.7]]))
    labels = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 0]]))
    np.testing.assert_allclose(per_class_average_precision(topk, labels), [0.5, 0.0])
    assert mean_average_precision(topk, labels) == pytest.approx(0.25)


def test_topk_from_dense_sorts_best_first_and_clips_k() -> None:
    topk = TopK.from_dense(np.array([[0.1, 0.7, 0.3], [0.5, 0.2, 0.9]]), k=10)
    np.testing.assert_array_equal(topk.indices, [[1, 2, 0], [2, 0, 1]])
    assert topk.scores.dtype == np.float32 and topk.indices.dtype == np.int32
    assert (topk.n_samples, topk.k) == (2, 3)


@pytest.mark.parametrize(
    ("indices", "scores", "message"),
    [
        (np.zeros((2, 3)), np.zeros((2, 2)), "same shape"),
        (np.zeros(3), np.zeros(3), r"\(n_samples, k\)"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "dtype float64; pass integer"),
        (np.zeros((2, 2), int), np.array([["a", "b"], ["c", "d"]]), "real-valued"),
        (np.array([[0, -2]]), np.zeros((1, 2)), "range over -2..0"),
        (np.array([[0, 1], [1, 0]]), np.array([[0.1, 0.2], [np.nan, 0.1]]), "NaN .*row 1"),
    ],
)
def test_topk_rejects_bad_arrays(indices: np.ndarray, scores: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        TopK(indices, scores)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros((2, 4)), r"shape \(2, 4\) but scores have 2 rows and 3 classes"),
        (sp.csr_matrix((3, 3)), r"shape \(3, 3\)"),
        (np.array([[0, 2, 0], [0, 0, 0]]), "hold 2 at row 0, class 1"),
        (sp.csr_matrix(np.array([[0, 0, 0], [0, 0.5, 0]])), "hold 0.5 at row 1, class 1"),
        (sp.csr_matrix(([1, 1], [2, 2], [0, 2, 2]), shape=(2, 3)), "hold 2 at row 0, class 2"),
        (np.array([0.0, 1.0]), "1-d labels have dtype float64"),
        (np.array([0, 3]), r"class ids 0..3 but there are 3 classes \(0..2\)"),
        (np.array([0, 1, 2]), "3 class ids but scores have 2 rows"),
    ],
)
def test_bad_labels_are_named(labels: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        gap_at_k(np.zeros((2, 3)), labels)  # type: ignore[arg-type]


def test_sparse_labels_with_explicit_zeros_are_accepted() -> None:
    labels = sp.csr_matrix(([1, 0], [0, 1], [0, 1, 2]), shape=(2, 3))
    csr = canonical_labels(labels, 2, 3)
    assert csr.nnz == 1 and labels.nnz == 2  # the input is not modified


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (np.zeros(3), r"shape \(3,\)"),
        (np.zeros((2, 0)), r"shape \(2, 0\)"),
        (np.array([["a"]]), "dtype <U1"),
        (np.array([[0.1, np.nan]]), "NaN .*row 0"),
        (np.zeros((0, 3)), "0 rows"),
    ],
)
def test_bad_scores_are_named(scores: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        hit_at_1(scores, np.zeros(scores.shape[:1], dtype=int))


@pytest.mark.parametrize("k", [0, -1, True, 2.0])
def test_bad_k_is_named(k: object) -> None:
    with pytest.raises(DataError, match="k must be a positive integer"):
        gap_at_k(np.zeros((1, 2)), np.array([0]), k=k)  # type: ignore[arg-type]


def test_topk_classes_beyond_the_labels_are_named() -> None:
    topk = TopK(np.array([[4]]), np.array([[0.3]]))
    with pytest.raises(DataError, match=r"class 4 but labels have 3 classes \(0..2\)"):
        gap_at_k(topk, np.zeros((1, 3)))
    with pytest.raises(DataError, match="n_classes=2"):
        per_class_average_precision(np.zeros((1, 3)), np.array([0]), n_classes=2)
    # with 1-d labels the class count is inferred from both inputs
    assert per_class_average_precision(topk, np.array([1])).shape == (5,)
