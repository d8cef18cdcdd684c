"""Bad input: each a one-line error naming the argument, what was received and the fix."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from tests.clean.conftest import Planted
from webly.clean import find_noisy_labels
from webly.core import TopK
from webly.errors import ConfigError, DataError, WeblyError

LABELS = np.array([0, 1, 2, 1])
PROBS = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]])


def _raises(error: type[WeblyError], match: str, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(error, match=match) as caught:
        find_noisy_labels(*args, **kwargs)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("oof", "match"),
    [
        (PROBS[:3], r"oof has 3 rows but labels have 4; pass out-of-fold predictions"),
        (np.hstack([PROBS, np.zeros((4, 1))]), r"oof has 4 classes but labels have 3"),
        (TopK(np.zeros((5, 1), np.int32), np.ones((5, 1))), r"oof has 5 rows but labels have 4"),
        (TopK(np.full((4, 1), 3), np.ones((4, 1))), r"oof predicts class 3 but labels have 3"),
        ([PROBS, PROBS[:2]], r"oof\[1\] has 2 rows but labels have 4"),
        (PROBS[:, 0], r"oof has shape \(4,\) .*pass \(n_samples, n_classes\)"),
    ],
)
def test_predictions_must_match_the_labels(oof: Any, match: str) -> None:
    _raises(DataError, match, np.eye(3)[LABELS], oof)  # one-hot labels declare 3 classes
    _raises(DataError, match, LABELS, oof, n_classes=3)


@pytest.mark.parametrize(
    ("oof", "match"),
    [
        (PROBS * 2, r"oof holds 1.6 at row 0 \(outside \[0, 1\]\); pass probabilities"),
        (np.where(PROBS == 0.7, np.nan, PROBS), r"oof holds nan at row 1"),
        (TopK(np.tile([0, 1], (4, 1)), np.tile([0.9, -0.1], (4, 1))), r"oof holds -0.1"),
    ],
)
def test_probabilities_must_lie_in_the_unit_interval(oof: Any, match: str) -> None:
    _raises(DataError, match, LABELS, oof, "self_confidence")


def test_multiclass_confident_learning_needs_normalised_rows() -> None:
    unnormalised = PROBS.copy()
    unnormalised[2] = [0.1, 0.1, 0.5]
    _raises(DataError, r"oof row 2 sums to 0.7000 but multi-class confident_learning", LABELS,
            unnormalised)  # fmt: skip
    # the ranking methods accept it
    assert find_noisy_labels(LABELS, unnormalised, "self_confidence").n_samples == 4
    # top-k rows may sum to less than 1, never to more
    over = TopK(np.tile([0, 1], (4, 1)), np.tile([0.7, 0.4], (4, 1)))
    _raises(DataError, r"sums to 1.1000 .* sum to at most 1", LABELS, over)
    under = TopK(np.tile([0, 1], (4, 1)), np.tile([0.5, 0.3], (4, 1)))
    assert find_noisy_labels(LABELS, under, n_classes=3).n_classes == 3


def test_unknown_method_lists_the_known_ones() -> None:
    _raises(
        ConfigError,
        r"unknown noise-detection method 'kmeans'; known methods: cluster, confident_learning, "
        r"disagree_low_conf, ensemble_agreement, margin, self_confidence, semantic",
        LABELS,
        PROBS,
        "kmeans",
    )


@pytest.mark.parametrize(
    ("method", "options", "match"),
    [
        ("margin", {"prune": "both"}, r"method 'margin' takes no option 'prune'; it accepts: "),
        ("confident_learning", {"prune": "all"}, r"prune is 'all'; pass one of by_noise_rate"),
        ("confident_learning", {"min_class_rows": 0}, r"min_class_rows is 0; pass an integer"),
        ("self_confidence", {"threshold": 1.5}, r"threshold is 1.5; pass a number in \[0.0, 1.0\]"),
        ("margin", {"threshold": 1.0}, r"threshold is 1.0; pass a number in \[-1.0, 1.0\)"),
        ("disagree_low_conf", {"threshold": "high"}, r"threshold is 'high'"),
        ("ensemble_agreement", {"vote": 1.0}, r"vote is 1.0"),
        ("ensemble_agreement", {"top_k": 0}, r"top_k is 0; pass an integer >= 1 or None"),
    ],
)
def test_bad_options(method: str, options: dict[str, Any], match: str) -> None:
    _raises(ConfigError, match, LABELS, [PROBS, PROBS], method, **options)


def test_ensemble_agreement_needs_several_members() -> None:
    _raises(ConfigError, r"ensemble_agreement got the oof of 1 member", LABELS, PROBS,
            "ensemble_agreement")  # fmt: skip
    _raises(ConfigError, r"oof is an empty list", LABELS, [])


def test_task_must_fit_the_labels() -> None:
    two = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float32))
    _raises(DataError, r"task is multiclass but labels row 0 has 2 labels", two, PROBS,
            task="multiclass")  # fmt: skip
    _raises(ConfigError, r"task is 'binary'; use multilabel or multiclass", LABELS, PROBS,
            task="binary")  # fmt: skip
    assert find_noisy_labels(two, PROBS, "self_confidence").task == "multilabel"


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([0, 1, 3, 1]), r"labels use class ids 0..3 but there are 3 classes"),
        (np.zeros((0,), np.int64), r"labels have shape \(0,\)"),
        (np.array([[0, 2, 0]] * 4), r"labels must be 0/1 but hold 2"),
    ],
)
def test_bad_labels(labels: np.ndarray, match: str) -> None:
    _raises(DataError, match, labels, PROBS, "self_confidence")


def test_multilabel_labels_may_be_a_dense_matrix(multilabel: Planted) -> None:
    dense = multilabel.given.toarray()
    from_dense = find_noisy_labels(dense, multilabel.probs, "self_confidence")
    from_csr = find_noisy_labels(sp.csr_matrix(dense), multilabel.probs, "self_confidence")
    np.testing.assert_array_equal(from_dense.is_noisy, from_csr.is_noisy)
