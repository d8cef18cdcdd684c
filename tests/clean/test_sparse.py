"""Top-k sparse predictions give the verdict dense ones give, when the top k hold all the mass."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tests.clean.conftest import member_probs, planted_multiclass, planted_multilabel, sparse_rows
from webly.clean import NoiseVerdict, find_noisy_labels
from webly.core import TopK
from webly.errors import WeblyWarning

METHODS = ["confident_learning", "self_confidence", "margin", "disagree_low_conf"]


def _topk(dense: np.ndarray, k: int, rng: np.random.Generator, pad: int = 2) -> TopK:
    """The k best classes of each row, in shuffled order, plus ``pad`` padding slots."""
    top = TopK.from_dense(dense, k)
    order = rng.permuted(np.tile(np.arange(k), (dense.shape[0], 1)), axis=1)
    indices = np.take_along_axis(top.indices, order, axis=1)
    scores = np.take_along_axis(top.scores, order, axis=1)
    width = (dense.shape[0], pad)
    return TopK(
        np.hstack([indices, np.full(width, -1)]), np.hstack([scores, np.full(width, -np.inf)])
    )


def _assert_same(a: NoiseVerdict, b: NoiseVerdict) -> None:
    np.testing.assert_array_equal(a.is_noisy, b.is_noisy)
    np.testing.assert_allclose(a.row_score, b.row_score, atol=1e-6)
    np.testing.assert_array_equal(a.predicted, b.predicted)
    np.testing.assert_allclose(a.class_noise_rate, b.class_noise_rate, atol=1e-9)
    assert [c[:2] for c in a.confusions] == [c[:2] for c in b.confusions]
    np.testing.assert_allclose([c[2] for c in a.confusions], [c[2] for c in b.confusions])
    assert a.transition is not None and b.transition is not None
    np.testing.assert_allclose(a.transition, b.transition, atol=1e-9)
    for x, y in ((a.suspect_spurious, b.suspect_spurious), (a.suspect_missing, b.suspect_missing)):
        assert (x is None) == (y is None)
        if x is not None and y is not None:
            assert (x != y).nnz == 0
    if a.class_thresholds is not None and b.class_thresholds is not None:
        np.testing.assert_allclose(a.class_thresholds, b.class_thresholds, rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_multiclass_topk_matches_dense(method: str) -> None:
    planted = planted_multiclass(n=1500, n_classes=30, seed=5)
    rng = np.random.default_rng(0)
    # each row's mass on 4 classes: its given label, its true class and the next best
    keep = np.zeros(planted.probs.shape, dtype=bool)
    keep[np.arange(1500)[:, None], np.argsort(-planted.probs, axis=1)[:, :4]] = True
    keep[np.arange(1500), planted.given] = True
    keep[np.arange(1500), planted.true] = True
    dense = sparse_rows(planted.probs, keep).astype(np.float32)
    k = int(keep.sum(axis=1).max())
    sparse = find_noisy_labels(planted.given, _topk(dense, k, rng), method, n_classes=30)
    _assert_same(find_noisy_labels(planted.given, dense, method), sparse)
    assert sparse.n_noisy > 100


@pytest.mark.parametrize("method", [*METHODS, "ensemble_agreement"])
def test_multilabel_topk_matches_dense(method: str) -> None:
    planted = planted_multilabel(n=1200, n_classes=40, seed=6)
    rng = np.random.default_rng(1)
    given = planted.given.toarray() > 0
    members = [planted.probs, 1 / (1 + np.exp(-rng.normal(-3, 2, planted.probs.shape)))]
    dense, sparse = [], []
    for probs in members:
        keep = given | (planted.true.toarray() > 0)
        keep[np.arange(1200)[:, None], np.argsort(-probs, axis=1)[:, :6]] = True
        d = sparse_rows(probs, keep).astype(np.float32)
        dense.append(d)
        sparse.append(_topk(d, int(keep.sum(axis=1).max()), rng))
    oof_dense = dense if method == "ensemble_agreement" else dense[0]
    oof_sparse = sparse if method == "ensemble_agreement" else sparse[0]
    _assert_same(
        find_noisy_labels(planted.given, oof_dense, method),
        find_noisy_labels(planted.given, oof_sparse, method),
    )


def test_multiclass_ensemble_members_topk_matches_dense() -> None:
    planted = planted_multiclass(n=1000, n_classes=12, seed=8)
    rng = np.random.default_rng(2)
    members = [planted.probs, member_probs(planted.true, 12, 3), member_probs(planted.true, 12, 4)]
    dense = [sparse_rows(m, m >= np.sort(m, axis=1)[:, [-5]]).astype(np.float32) for m in members]
    sparse = [_topk(d, 5, rng) for d in dense]
    _assert_same(
        find_noisy_labels(planted.given, dense, "ensemble_agreement"),
        find_noisy_labels(planted.given, sparse, "ensemble_agreement"),
    )


def test_topk_input_needs_no_dense_matrix() -> None:
    n, n_classes, k = 20_000, 5_000, 5
    rng = np.random.default_rng(3)
    indices = (rng.integers(0, n_classes, n)[:, None] + np.arange(k) * 7) % n_classes
    scores = rng.dirichlet(np.ones(k), n).astype(np.float32)
    labels = sp.csr_matrix(
        (np.ones(n, np.float32), (np.arange(n), indices[:, 0])), shape=(n, n_classes)
    )
    with pytest.warns(WeblyWarning, match="classes have no labelled row"):
        verdict = find_noisy_labels(labels, TopK(indices, scores))
    assert verdict.transition is None  # above 1,000 classes: the top confusions only
    assert verdict.is_noisy.shape == (n,) and len(verdict.confusions) <= 100
