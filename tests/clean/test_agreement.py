"""ensemble_agreement over three members, and how the other methods average members."""

from __future__ import annotations

import numpy as np

from tests.clean.conftest import Planted, member_probs, planted_multilabel
from webly.clean import find_noisy_labels
from webly.metrics.noise import detection_scores, noisy_entries


def test_three_members_vote_on_each_row() -> None:
    labels = np.array([0, 0, 1, 2])
    agree = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]])
    other = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    third = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])
    verdict = find_noisy_labels(labels, [agree, other, third], "ensemble_agreement")
    # members against each row: 0, 2, 1, 1 of 3 -> only row 1 has a majority against it
    np.testing.assert_array_equal(verdict.is_noisy, [False, True, False, False])
    share = np.array([0, 2, 1, 1]) / 3
    mean_p = np.array([0.8, 1.1 / 3, 1.8 / 3, 1.8 / 3])
    np.testing.assert_allclose(verdict.row_score, (share + 1 - mean_p) / 2, rtol=1e-6)
    # predictions are the members' average
    np.testing.assert_array_equal(verdict.predicted, [0, 1, 1, 2])
    any_against = find_noisy_labels(labels, [agree, other, third], "ensemble_agreement", vote=0.3)
    np.testing.assert_array_equal(any_against.is_noisy, [False, True, True, True])


def test_recovers_planted_noise_with_three_members(multiclass: Planted) -> None:
    members = [multiclass.probs] + [member_probs(multiclass.true, 10, seed) for seed in (7, 8)]
    verdict = find_noisy_labels(multiclass.given, members, "ensemble_agreement")
    scores = detection_scores(verdict.is_noisy, multiclass.given != multiclass.true)
    assert scores.precision > 0.9 and scores.recall > 0.9, scores
    assert verdict.params == {"vote": 0.5, "top_k": None}


def test_multilabel_members_vote_per_label() -> None:
    planted = planted_multilabel(n=1200, seed=3)
    rng = np.random.default_rng(4)
    true = planted.true.toarray()
    members = [planted.probs] + [
        1 / (1 + np.exp(-(rng.normal(0, 1, true.shape) + np.where(true, 3.0, -3.0))))
        for _ in range(2)
    ]
    verdict = find_noisy_labels(planted.given, members, "ensemble_agreement")
    spurious, missing = noisy_entries(planted.given, planted.true)
    assert verdict.suspect_spurious is not None and verdict.suspect_missing is not None
    found_spurious = detection_scores(verdict.suspect_spurious, spurious)
    found_missing = detection_scores(verdict.suspect_missing, missing)
    assert found_spurious.precision > 0.75 and found_spurious.recall > 0.9, found_spurious
    assert found_missing.precision > 0.6 and found_missing.recall > 0.6, found_missing
    # each member's top 4 instead of as many as the row's labels
    wide = find_noisy_labels(planted.given, members, "ensemble_agreement", top_k=4)
    assert wide.suspect_missing is not None
    assert detection_scores(wide.suspect_missing, missing).recall > 0.9


def test_other_methods_average_the_members(multiclass: Planted) -> None:
    members = [multiclass.probs, member_probs(multiclass.true, 10, 9)]
    averaged = find_noisy_labels(multiclass.given, members, "margin")
    direct = find_noisy_labels(multiclass.given, (members[0] + members[1]) / 2, "margin")
    np.testing.assert_array_equal(averaged.is_noisy, direct.is_noisy)
    np.testing.assert_allclose(averaged.row_score, direct.row_score, atol=1e-6)
