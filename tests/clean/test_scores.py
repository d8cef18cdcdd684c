"""Ranking methods: self_confidence, margin and disagree_low_conf, multi-class and multi-label."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tests.clean.conftest import Planted
from webly.clean import find_noisy_labels, list_methods
from webly.metrics.noise import detection_scores, noisy_entries

LABELS = np.array([0, 1, 2, 0])
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # agrees
        [0.6, 0.3, 0.1],  # given 1, top-1 is 0 at 0.6
        [0.45, 0.1, 0.45],  # given 2 ties with 0
        [0.4, 0.35, 0.25],  # given 0 is top-1 but below 0.5
    ]
)


def test_self_confidence_scores_one_minus_given_probability() -> None:
    verdict = find_noisy_labels(LABELS, PROBS, "self_confidence")
    np.testing.assert_allclose(verdict.row_score, [0.3, 0.7, 0.55, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(verdict.is_noisy, [False, True, True, True])
    strict = find_noisy_labels(LABELS, PROBS, "self_confidence", threshold=0.42)
    np.testing.assert_array_equal(strict.is_noisy, [False, True, False, True])
    assert strict.params == {"threshold": 0.42}


def test_margin_flags_rows_another_class_beats() -> None:
    verdict = find_noisy_labels(LABELS, PROBS, "margin")
    raw = np.array([0.2 - 0.7, 0.6 - 0.3, 0.45 - 0.45, 0.35 - 0.4])
    np.testing.assert_allclose(verdict.row_score, (raw + 1) / 2, rtol=1e-6)
    np.testing.assert_array_equal(verdict.is_noisy, [False, True, False, False])
    loose = find_noisy_labels(LABELS, PROBS, "margin", threshold=-0.1)
    np.testing.assert_array_equal(loose.is_noisy, [False, True, True, True])


def test_disagree_low_conf_needs_a_confident_other_top1() -> None:
    verdict = find_noisy_labels(LABELS, PROBS, "disagree_low_conf")
    np.testing.assert_array_equal(verdict.is_noisy, [False, True, False, False])
    np.testing.assert_allclose(verdict.row_score, [0.2, 0.6, 0.45, 0.35], rtol=1e-6)
    eager = find_noisy_labels(LABELS, PROBS, "disagree_low_conf", threshold=0.3)
    np.testing.assert_array_equal(eager.is_noisy, [False, True, False, False])  # row 2: tie


@pytest.mark.parametrize(
    ("method", "precision", "recall"),
    [("self_confidence", 0.5, 0.95), ("margin", 0.8, 0.95), ("disagree_low_conf", 0.95, 0.75)],
)
def test_ranking_methods_recover_planted_noise(
    multiclass: Planted, method: str, precision: float, recall: float
) -> None:
    verdict = find_noisy_labels(multiclass.given, multiclass.probs, method)
    noisy = multiclass.given != multiclass.true
    scores = detection_scores(verdict.is_noisy, noisy)
    assert scores.precision > precision and scores.recall > recall, scores
    # flipped rows score higher than clean ones
    assert verdict.row_score[noisy].mean() > verdict.row_score[~noisy].mean() + 0.3


def test_multilabel_binary_rule_per_entry() -> None:
    labels = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32))
    probs = np.array([[0.9, 0.2, 0.7, 0.1], [0.3, 0.1, 0.6, 0.55]])
    verdict = find_noisy_labels(labels, probs, "self_confidence")
    assert verdict.suspect_spurious is not None and verdict.suspect_missing is not None
    np.testing.assert_array_equal(verdict.suspect_spurious.toarray(), [[0, 1, 0, 0], [0] * 4])
    np.testing.assert_array_equal(verdict.suspect_missing.toarray(), [[0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(verdict.row_score, [0.8, 0.55], rtol=1e-6)
    assert verdict.suspect_prob is not None
    np.testing.assert_allclose(verdict.suspect_prob[0, 1], 0.2, rtol=1e-6)
    np.testing.assert_allclose(verdict.class_noise_rate, [0, 1, 0, 0])
    # margin ranks binary entries as self-confidence does
    by_margin = find_noisy_labels(labels, probs, "margin")
    np.testing.assert_allclose(by_margin.row_score, verdict.row_score)
    assert by_margin.suspect_missing is not None
    assert (by_margin.suspect_missing != verdict.suspect_missing).nnz == 0
    # (spurious 1, missing 2) share row 0
    assert verdict.confusions == ((1, 2, 1.0),)


def test_multilabel_disagree_flags_spurious_only_beside_a_confident_miss() -> None:
    labels = sp.csr_matrix(np.array([[1, 0, 0], [1, 0, 0]], dtype=np.float32))
    probs = np.array([[0.2, 0.8, 0.1], [0.2, 0.4, 0.1]])
    # one label a row would be inferred multi-class
    verdict = find_noisy_labels(labels, probs, "disagree_low_conf", task="multilabel")
    assert verdict.suspect_spurious is not None and verdict.suspect_missing is not None
    np.testing.assert_array_equal(verdict.suspect_spurious.toarray(), [[1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(verdict.suspect_missing.toarray(), [[0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(verdict.is_noisy, [True, False])


@pytest.mark.parametrize("method", ["self_confidence", "margin", "disagree_low_conf"])
def test_ranking_methods_find_missing_labels(multilabel: Planted, method: str) -> None:
    verdict = find_noisy_labels(multilabel.given, multilabel.probs, method)
    _, missing = noisy_entries(multilabel.given, multilabel.true)
    assert verdict.suspect_missing is not None
    scores = detection_scores(verdict.suspect_missing, missing)
    assert scores.precision > 0.7 and scores.recall > 0.9, scores


def test_registry_lists_every_method() -> None:
    assert list_methods() == [
        "cluster",
        "confident_learning",
        "disagree_low_conf",
        "ensemble_agreement",
        "margin",
        "self_confidence",
        "semantic",
    ]
