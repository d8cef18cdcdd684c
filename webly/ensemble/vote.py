"""Majority votes over members' multi-class predictions.

Each member's top-1 class is one vote. A class's score is lexicographic in (votes, tie-break):

    score = (votes + t) / (n_models + 1)

where ``t`` in [0, 1] is the class's mean probability over the members (`vote`) or its
geometric mean probability, ``exp(mean_m log p_m)`` (`vote_logits`: averaging log-probabilities
ranks a row's classes as averaging the members' logits does, since a log-softmax is the logits
less a per-row constant). As ``t <= 1`` and ``t = 1`` only for a class every member gives
probability 1 (so every member votes for it), more votes always rank first; ``t`` orders classes
with equal votes, among them the unvoted rest. Scores lie in [0, 1].

A class outside a member's top k counts as probability 0 in the mean; in the geometric mean it
counts as ``FLOOR`` (1e-7, the clip of `webly.metrics.evaluate.loss_sum`), as does any smaller
probability. Members' scores must be probabilities in [0, 1]; blend logits with a mean instead.
Votes make sense for one label per row only: `require_multiclass` refuses multi-label tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from webly.core import Task, TopK, select_top_k
from webly.errors import ConfigError, DataError
from webly.predictions import merge_topk

FLOOR = 1e-7
_BLOCK_ROWS = 1 << 13  # rows voted at a time: a block holds (rows, sum of members' k) arrays


def require_multiclass(task: Task, method: str) -> None:
    """Refuse a vote on multi-label predictions, naming ``method``."""
    if task.multilabel:
        raise ConfigError(
            f"blend method {method!r} votes with each member's top-1 class and needs a "
            f"multiclass task, got '{task}'; use 'mean', 'weighted' or 'greedy'"
        )


def vote(preds: Sequence[TopK], k: int | None = None) -> TopK:
    """Majority vote of the members' top-1 classes, ties broken by mean probability.

    Parameters
    ----------
    preds : sequence of TopK, each (n_samples, k_m)
        Members' probabilities of the same rows.
    k : int, optional
        Classes kept per row; the largest k_m if None.

    Returns
    -------
    TopK
        (n_samples, k), best first; scores as in the module docstring.
    """
    return _vote(preds, k, _identity, _identity)


def vote_logits(preds: Sequence[TopK], k: int | None = None) -> TopK:
    """Majority vote of the members' top-1 classes, ties broken by mean log-probability.

    As `vote`, with the geometric mean probability (floored at ``FLOOR``) as the tie-break.
    """
    return _vote(preds, k, _log_ratio, _geometric_mean)


def _vote(
    preds: Sequence[TopK],
    k: int | None,
    transform: Callable[[np.ndarray], np.ndarray],
    finish: Callable[[np.ndarray], np.ndarray],
) -> TopK:
    """Votes plus a tie-break ``finish(mean over members of transform(p))`` in [0, 1].

    ``transform`` maps probabilities to values that are 0 where a class is absent, so
    `merge_topk` averages them over the union of the members' classes.
    """
    if not preds:
        raise ConfigError("no predictions given; a vote needs at least one member")
    for m, p in enumerate(preds):
        _check_probabilities(m, p)
    keep = max(p.k for p in preds) if k is None else k
    if keep < 1:
        raise ConfigError(f"k is {keep}; it must be >= 1")
    rows = [p.n_samples for p in preds]
    if len(set(rows)) > 1:
        raise DataError(f"members predict {rows} rows; a vote needs members of the same rows")
    n, width = rows[0], sum(p.k for p in preds)
    out_indices = np.full((n, keep), -1, dtype=np.int32)
    out_scores = np.full((n, keep), -np.inf, dtype=np.float32)
    for start in range(0, n, _BLOCK_ROWS):
        block = slice(start, start + _BLOCK_ROWS)
        parts = [TopK(p.indices[block], p.scores[block]) for p in preds]
        union = merge_topk([TopK(p.indices, transform(p.scores)) for p in parts], k=width)
        key = finish(union.scores).astype(np.float64)  # (B, width), float64 keeps the order
        for p in parts:
            top1 = select_top_k(p, 1)[0][:, 0]  # (B,) -1 for a row without predictions
            key += (union.indices == top1[:, None]) & (top1[:, None] >= 0)
        key[union.indices < 0] = -np.inf
        order = np.argsort(-key, axis=1, kind="stable")[:, :keep]
        taken = min(keep, width)
        out_indices[block, :taken] = np.take_along_axis(union.indices, order, axis=1)
        out_scores[block, :taken] = np.take_along_axis(key, order, axis=1) / (len(preds) + 1)
    return TopK(out_indices, out_scores)


def _check_probabilities(m: int, p: TopK) -> None:
    listed = p.scores[p.indices >= 0]
    if listed.size and (listed.min() < 0 or listed.max() > 1):
        raise DataError(
            f"member #{m} holds scores {listed.min():.4g}..{listed.max():.4g}; a vote needs "
            "probabilities in [0, 1], blend logits with 'mean' instead"
        )


def _identity(values: np.ndarray) -> np.ndarray:
    return values


def _log_ratio(probs: np.ndarray) -> np.ndarray:
    """log(max(p, FLOOR) / FLOOR) >= 0: log-probability above the floor an absent class gets."""
    return np.log(np.maximum(probs, np.float32(FLOOR)) / np.float32(FLOOR))


def _geometric_mean(mean_log_ratio: np.ndarray) -> np.ndarray:
    """exp(mean log max(p, FLOOR)) from the mean of `_log_ratio` (padding's -inf gives 0)."""
    return np.minimum(np.float32(FLOOR) * np.exp(mean_log_ratio), np.float32(1))
