"""Confident learning: hand-computed counts, planted-noise recovery, multi-label, small classes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import webly.clean.confident as confident_module
from tests.clean.conftest import Planted, planted_multiclass
from webly.clean import find_noisy_labels
from webly.clean.confident import calibrate, confident_joint
from webly.clean.problem import build_problem
from webly.errors import WeblyWarning
from webly.metrics.noise import detection_scores, noisy_entries

# Nine rows, three classes: row 2 (given 0) looks like class 1, row 8 (given 2) like class 0.
GIVEN = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],
        [0.80, 0.10, 0.10],
        [0.10, 0.80, 0.10],
        [0.10, 0.70, 0.20],
        [0.05, 0.90, 0.05],
        [0.20, 0.60, 0.20],
        [0.10, 0.10, 0.80],
        [0.05, 0.05, 0.90],
        [0.70, 0.10, 0.20],
    ]
)


def test_counts_match_a_hand_computed_example() -> None:
    # thresholds: mean p_j over the rows given j
    t = np.array([(0.9 + 0.8 + 0.1) / 3, (0.7 + 0.9 + 0.6) / 3, (0.8 + 0.9 + 0.2) / 3])
    # confident class: row 2 -> 1 (0.8 >= 0.733), rows 3 and 5 none (0.7, 0.6 < 0.733),
    # row 8 -> 0 (0.7 >= 0.6)
    joint = np.array([[2, 1, 0], [0, 1, 0], [1, 0, 2]])
    # calibration scales each row to its 3 labelled rows: class 1's row 1 -> 3
    q = np.array([[2, 1, 0], [0, 3, 0], [1, 0, 2]])
    problem = build_problem(GIVEN, PROBS)
    counts = problem.label_counts()
    np.testing.assert_array_equal(confident_joint(problem.probs, GIVEN, t).toarray(), joint)
    np.testing.assert_allclose(calibrate(sp.csr_matrix(joint), counts).toarray(), q)

    for prune in ("by_noise_rate", "by_class", "both"):
        verdict = find_noisy_labels(GIVEN, PROBS, prune=prune)
        np.testing.assert_array_equal(np.flatnonzero(verdict.is_noisy), [2, 8])
    np.testing.assert_allclose(verdict.class_thresholds, t)
    np.testing.assert_allclose(verdict.class_noise_rate, [1 / 3, 0, 1 / 3])
    assert verdict.confusions == ((0, 1, 1.0), (2, 0, 1.0))
    assert verdict.transition is not None
    np.testing.assert_allclose(verdict.transition, q / 3)
    np.testing.assert_allclose(verdict.row_score[[2, 8]], [0.9, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(verdict.noisy_rows(), [2, 8])
    np.testing.assert_array_equal(verdict.predicted, PROBS.argmax(axis=1))


def test_a_pair_quota_reaching_a_row_the_model_agrees_with_goes_unused() -> None:
    # Class 0: rows 3 and 4 are confidently class 2; rows 2 and 5, beaten by class 1 but below
    # its threshold, are confident in nothing, so calibration scales class 0's counts by 6/4:
    # Q[0] = [3, 0, 3]. By margin p_2 - p_0 the pair (0, 2) ranks rows 4, 3, then row 1, whose
    # given label is still its top class: it is left unflagged and row 5 (margin -0.2) does not
    # take its place. By class (quota 6 - 3) the beaten rows rank first: 4, 3, 5.
    given = np.array([0] * 6 + [1] * 3 + [2] * 3)
    probs = np.array(
        [
            [0.90, 0.05, 0.05],
            [0.50, 0.05, 0.45],
            [0.35, 0.55, 0.10],
            [0.10, 0.05, 0.85],
            [0.05, 0.05, 0.90],
            [0.30, 0.60, 0.10],
            [0.10, 0.85, 0.05],
            [0.05, 0.90, 0.05],
            [0.10, 0.80, 0.10],
            [0.05, 0.05, 0.90],
            [0.10, 0.10, 0.80],
            [0.05, 0.15, 0.80],
        ]
    )
    flagged = {
        prune: np.flatnonzero(find_noisy_labels(given, probs, prune=prune).is_noisy).tolist()
        for prune in ("by_noise_rate", "by_class", "both")
    }
    assert flagged == {"by_noise_rate": [3, 4], "by_class": [3, 4, 5], "both": [3, 4]}


@pytest.mark.parametrize("prune", ["by_noise_rate", "by_class", "both"])
def test_recovers_planted_noise(multiclass: Planted, prune: str) -> None:
    verdict = find_noisy_labels(multiclass.given, multiclass.probs, prune=prune)
    scores = detection_scores(verdict.is_noisy, multiclass.given != multiclass.true)
    assert scores.precision > 0.9 and scores.recall > 0.85, scores
    true_rate = np.bincount(multiclass.given[multiclass.given != multiclass.true], minlength=10)
    true_rate = true_rate / np.bincount(multiclass.given, minlength=10)
    np.testing.assert_allclose(verdict.class_noise_rate, true_rate, atol=0.06)


def test_pairs_found_by_table_or_by_search_agree(
    multiclass: Planted, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = find_noisy_labels(multiclass.given, multiclass.probs, prune="by_noise_rate")
    monkeypatch.setattr(confident_module, "_DENSE_PAIRS", 0)  # as for a very large class space
    search = find_noisy_labels(multiclass.given, multiclass.probs, prune="by_noise_rate")
    assert table.is_noisy.sum() > 0
    np.testing.assert_array_equal(table.is_noisy, search.is_noisy)


def test_both_is_the_intersection(multiclass: Planted) -> None:
    flags = {
        p: find_noisy_labels(multiclass.given, multiclass.probs, prune=p).is_noisy
        for p in ("by_noise_rate", "by_class", "both")
    }
    np.testing.assert_array_equal(flags["both"], flags["by_noise_rate"] & flags["by_class"])


def test_transition_points_from_given_to_true_class() -> None:
    planted = planted_multiclass(n=3000, n_classes=6, rate=0.25, seed=1, pair=True)
    verdict = find_noisy_labels(planted.given, planted.probs)
    # pair noise: a row of true class t was given t + 1, so the top confusions are (t + 1, t)
    top = {(g, t) for g, t, _ in verdict.confusions[:6]}
    assert top == {((t + 1) % 6, t) for t in range(6)}
    assert verdict.transition is not None
    np.testing.assert_allclose(verdict.transition.sum(axis=1), 1)
    assert (np.diag(verdict.transition) > 0.6).all()


def test_multilabel_finds_spurious_and_missing_labels(multilabel: Planted) -> None:
    verdict = find_noisy_labels(multilabel.given, multilabel.probs)
    assert verdict.task == "multilabel"
    assert verdict.suspect_spurious is not None and verdict.suspect_missing is not None
    spurious, missing = noisy_entries(multilabel.given, multilabel.true)
    found_spurious = detection_scores(verdict.suspect_spurious, spurious)
    found_missing = detection_scores(verdict.suspect_missing, missing)
    assert found_spurious.precision > 0.9 and found_spurious.recall > 0.6, found_spurious
    assert found_missing.precision > 0.8 and found_missing.recall > 0.9, found_missing
    # a spurious suspect is a given label, a missing one is not
    given = sp.csr_matrix(multilabel.given, dtype=bool)
    assert verdict.suspect_spurious.multiply(given).nnz == verdict.suspect_spurious.nnz
    assert verdict.suspect_missing.multiply(given).nnz == 0
    flagged_rows = (verdict.suspect_spurious + verdict.suspect_missing).getnnz(axis=1) > 0
    np.testing.assert_array_equal(verdict.is_noisy, flagged_rows)
    assert verdict.class_thresholds is not None and verdict.class_thresholds.shape == (15,)


def test_a_class_without_rows_warns_and_is_never_pruned(multiclass: Planted) -> None:
    given, probs = multiclass.given.copy(), multiclass.probs
    given[given == 3] = 4  # class 3 has no labelled row now
    with pytest.warns(WeblyWarning, match=r"1 classes .* \(classes 3\)") as caught:
        verdict = find_noisy_labels(given, probs)
    assert "\n" not in str(caught[0].message)
    assert verdict.class_thresholds is not None and np.isinf(verdict.class_thresholds[3])
    assert verdict.class_noise_rate[3] == 0

    with pytest.warns(WeblyWarning, match="min_class_rows=100000"):
        frozen = find_noisy_labels(given, probs, min_class_rows=100_000)
    assert not frozen.is_noisy.any()
