"""Votes: majority first, ties broken by mean (vote) or geometric mean (vote_logits)
probability, scores computed by hand; multi-label, logits and misaligned members refused."""

from __future__ import annotations

import numpy as np
import pytest

from webly.core import TopK
from webly.ensemble.blend import Blend, fit_blend
from webly.ensemble.vote import FLOOR, vote, vote_logits
from webly.errors import ConfigError, DataError


def _members(rows: list[list[list[float]]]) -> list[TopK]:
    """One member per entry of ``rows[r]``: its probabilities of the classes 0, 1, 2, ..."""
    probs = np.array(rows, dtype=np.float32).transpose(1, 0, 2)  # (n_models, n, n_classes)
    return [TopK.from_dense(p, p.shape[1]) for p in probs]


def test_majority_then_mean_probability() -> None:
    # row 0: members vote 0, 0, 1 -> class 0 wins though class 1 has the higher mean
    # row 1: votes 0, 1, 2 tie -> by mean: 1 (.367), 2 (.27), 0 (.217)
    members = _members(
        [
            [[0.5, 0.45, 0.05], [0.5, 0.45, 0.05], [0.0, 1.0, 0.0]],
            [[0.5, 0.3, 0.2], [0.05, 0.5, 0.01], [0.1, 0.3, 0.6]],
        ]
    )
    voted = vote(members)
    assert voted.indices.tolist() == [[0, 1, 2], [1, 2, 0]]
    np.testing.assert_allclose(voted.scores[0], [(2 + 1 / 3) / 4, (1 + 1.9 / 3) / 4, 0.1 / 3 / 4])
    np.testing.assert_allclose(voted.scores[1], [(1 + 1.1 / 3) / 4, (1 + 0.81 / 3) / 4, 3.65 / 12])
    # geometric means of row 1: 1 (.356), 0 (.136), 2 (.106): classes 0 and 2 swap
    logits = vote_logits(members)
    assert logits.indices.tolist() == [[0, 1, 2], [1, 0, 2]]
    geometric = np.exp(np.log([0.3, 0.5, 0.3]).mean())
    assert logits.scores[1, 0] == pytest.approx((1 + geometric) / 4, rel=1e-5)
    assert vote(members, k=1).indices.tolist() == [[0], [1]]


def test_vote_ties_and_absent_classes() -> None:
    # two votes each for classes 3 and 5; class 5's mean probability is higher
    indices = np.array([[3, 5], [3, 5], [5, 3], [5, -1]])
    scores = np.array([[0.6, 0.4], [0.6, 0.1], [0.9, 0.3], [0.8, -np.inf]])
    members = [TopK(indices[m : m + 1], scores[m : m + 1]) for m in range(4)]
    voted = vote(members)
    assert voted.indices.tolist() == [[5, 3]]
    np.testing.assert_allclose(voted.scores[0], [(2 + 2.2 / 4) / 5, (2 + 1.5 / 4) / 5])
    # in the geometric mean, class 3 absent from member 3 counts FLOOR
    logits = vote_logits(members)
    geometric = np.exp(np.log([0.6, 0.6, 0.3, FLOOR]).mean())
    assert logits.indices.tolist() == [[5, 3]]
    assert logits.scores[0, 1] == pytest.approx((2 + geometric) / 5, rel=1e-4)


def test_vote_blend_methods() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, 200)
    members = []
    for _ in range(3):
        logits = rng.normal(0, 1, (200, 5)) + 1.5 * np.eye(5)[truth]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        members.append(TopK.from_dense(probs.astype(np.float32), 3))
    for method in ("vote", "vote_logits"):
        blend = fit_blend(method, members, truth, "multiclass", ["a", "b", "c"])
        assert blend.weights == pytest.approx((1 / 3,) * 3)
        assert blend.oof_metric is not None and blend.oof_metric > 0.6
    with pytest.raises(ConfigError, match="'vote' takes equal weights"):
        Blend("vote", ("a", "b"), (0.7, 0.3))


def test_vote_refuses_logits_and_misaligned_members() -> None:
    logits = TopK(np.array([[0, 1]]), np.array([[2.5, -1.0]]))
    with pytest.raises(DataError, match=r"member #0 holds scores -1..2.5; a vote needs prob"):
        vote([logits])
    short = TopK(np.array([[0]]), np.array([[0.5]]))
    two = TopK(np.array([[0], [1]]), np.array([[0.5], [0.5]]))
    with pytest.raises(DataError, match=r"members predict \[1, 2\] rows"):
        vote_logits([short, two])
