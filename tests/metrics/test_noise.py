"""Detection precision / recall / F1 against the truth of the generated benchmarks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from webly.data.noise import inject
from webly.errors import DataError
from webly.metrics.noise import detection_scores, noisy_entries, noisy_rows


def test_row_flags() -> None:
    scores = detection_scores(
        np.array([True, True, False, True, False]), np.array([True, False, False, True, True])
    )
    assert scores.n_predicted == 3 and scores.n_true == 3 and scores.n_correct == 2
    assert scores.precision == pytest.approx(2 / 3) and scores.recall == pytest.approx(2 / 3)
    assert scores.f1 == pytest.approx(2 / 3)
    precision, recall, f1, *_ = detection_scores([1, 0], [1, 1])
    assert (precision, recall, f1) == (1.0, 0.5, pytest.approx(2 / 3))


def test_nothing_flagged_or_nothing_noisy_scores_zero() -> None:
    assert detection_scores(np.zeros(4, bool), np.ones(4, bool))[:3] == (0.0, 0.0, 0.0)
    assert detection_scores(np.ones(4, bool), np.zeros(4, bool))[:3] == (0.0, 0.0, 0.0)


def test_label_entries_sparse_or_dense() -> None:
    pred = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]], dtype=bool))
    true = np.array([[1, 0, 0], [0, 1, 1]])
    scores = detection_scores(pred, true)
    assert (scores.n_predicted, scores.n_true, scores.n_correct) == (3, 3, 2)
    assert detection_scores(pred.toarray(), sp.csr_matrix(true)) == scores


def test_truth_from_clean_labels() -> None:
    given = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0]], dtype=np.float32))
    clean = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0]], dtype=np.float32))
    spurious, missing = noisy_entries(given, clean)
    np.testing.assert_array_equal(spurious.toarray(), [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(missing.toarray(), [[0, 0, 0], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(noisy_rows(given, clean), [True, True, False])
    # multi-class ids
    np.testing.assert_array_equal(noisy_rows(np.array([0, 2, 1]), np.array([0, 1, 1])), [0, 1, 0])
    np.testing.assert_array_equal(noisy_rows(np.array([0, 2]), np.eye(3)[[0, 1]]), [0, 1])


def test_truth_matches_injected_noise() -> None:
    clean = sp.csr_matrix((np.ones(500, np.float32), (np.arange(500), np.arange(500) % 7)))
    noisy = inject(clean, "symmetric", 0.2, seed=0)
    assert noisy_rows(noisy, clean).sum() == 100  # exactly round(rate * rows) rows changed


def test_shapes_must_match() -> None:
    with pytest.raises(DataError, match=r"is_noisy_pred has shape \(3,\) but is_noisy_true \(4,\)"):
        detection_scores(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(DataError, match=r"labels have shape \(2, 3\) but clean_labels \(2, 4\)"):
        noisy_entries(np.eye(3)[[0, 1]], np.eye(4)[[0, 1]])
    with pytest.raises(DataError, match=r"pass \(n_samples,\) row flags"):
        detection_scores(np.ones((2, 2, 2)), np.ones((2, 2, 2)))
