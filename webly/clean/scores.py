"""Ranking methods: how little the predictions believe each given label.

- ``self_confidence``: score ``1 - p[given]``; noisy when ``p[given] < threshold``.
- ``margin``: ``max_{j != given} p[j] - p[given]`` in [-1, 1], scored as (margin + 1) / 2;
  noisy when the margin exceeds ``threshold`` (default 0: another class is more probable).
- ``disagree_low_conf`` (AliProducts): noisy when the top-1 class is not the given label (a
  tie with it does not count) and its probability is at least ``threshold``; scored by the
  best probability of a class that is not given.

Multi-label, each (row, class) is a binary label: a given label ``j`` with probability ``p``
is suspect spurious, an absent one suspect missing, by the same rule on the binary problem
(its self-confidence is ``p`` if given else ``1 - p``; its margin ``1 - 2p`` if given else
``2p - 1``, so ``margin`` ranks entries as ``self_confidence`` does). ``disagree_low_conf``
flags absent classes with ``p >= threshold`` as missing and, in those rows, the given labels
with ``p < threshold`` as spurious. A row's score is the largest of its entries' scores.
"""

from __future__ import annotations

import numpy as np

from webly.clean._registry import check_range, register_method
from webly.clean.problem import NoiseProblem
from webly.clean.probs import (
    label_hits,
    label_probs,
    label_rows,
    listed_entries,
    other_mask,
    sorted_row_max,
)
from webly.clean.verdict import Detection, multiclass_detection, multilabel_detection


@register_method("self_confidence")
def self_confidence(problem: NoiseProblem, *, threshold: float = 0.5) -> Detection:
    """Flag labels whose predicted probability is below ``threshold`` (in [0, 1])."""
    check_range("threshold", threshold, 0.0, 1.0)
    return _binary_rule(problem, spurious_below=threshold, missing_above=1 - threshold)


@register_method("margin")
def margin(problem: NoiseProblem, *, threshold: float = 0.0) -> Detection:
    """Flag labels whose margin (best other probability minus the label's) exceeds
    ``threshold`` (in [-1, 1))."""
    check_range("threshold", threshold, -1.0, 1.0, closed=False)
    if problem.task.multilabel:
        return _binary_rule(
            problem, spurious_below=(1 - threshold) / 2, missing_above=(1 + threshold) / 2
        )
    probs, labels = problem.probs, problem.labels
    hits = label_hits(probs, labels)
    p_given = label_probs(probs, labels, hits)
    raw = np.where(hits, 0, probs.values).max(axis=1) - p_given
    return multiclass_detection(problem, (raw + 1) / 2, raw > threshold)


@register_method("disagree_low_conf")
def disagree_low_conf(problem: NoiseProblem, *, threshold: float = 0.5) -> Detection:
    """Flag rows whose top-1 class is not given and has probability >= ``threshold``."""
    check_range("threshold", threshold, 0.0, 1.0)
    probs, labels = problem.probs, problem.labels
    hits = label_hits(probs, labels)
    others = np.where(other_mask(probs, hits), probs.values, 0)
    best_other = others.max(axis=1)
    p_label = label_probs(probs, labels, hits)
    if not problem.task.multilabel:
        _, top_prob = probs.top1()
        noisy = (top_prob > p_label) & (top_prob >= threshold)
        return multiclass_detection(problem, best_other, noisy)
    missing: np.ndarray = others >= max(threshold, np.finfo(np.float32).tiny)
    confident_elsewhere = np.count_nonzero(missing, axis=1) > 0
    spurious = (p_label < threshold) & confident_elsewhere[label_rows(labels)]
    return multilabel_detection(
        problem, p_label, spurious, listed_entries(probs, missing), best_other
    )


def _binary_rule(
    problem: NoiseProblem, *, spurious_below: float, missing_above: float
) -> Detection:
    """Self-confidence rule: a given label is suspect when ``p < spurious_below``, an absent
    one (multi-label) when ``p > missing_above``."""
    probs, labels = problem.probs, problem.labels
    hits = label_hits(probs, labels)
    p_label = label_probs(probs, labels, hits)
    if not problem.task.multilabel:
        return multiclass_detection(problem, 1 - p_label, p_label < spurious_below)
    others = np.where(other_mask(probs, hits), probs.values, 0)
    row_score = np.maximum(
        sorted_row_max(label_rows(labels), 1 - p_label, problem.n_samples), others.max(axis=1)
    )
    missing = listed_entries(probs, others > missing_above)
    return multilabel_detection(problem, p_label, p_label < spurious_below, missing, row_score)
