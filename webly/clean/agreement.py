"""``ensemble_agreement``: how many zoo members' predictions contradict each given label.

Diverse members that agree with each other and not with a label are evidence that the label is
wrong. Multi-class: a member votes against a row when it ranks another class strictly above the
given label;
the row is flagged when more than ``vote`` of the members vote against it, and scored by
``(share against + 1 - mean p[given]) / 2``. Multi-label: a member votes for a class of a row
when the class is among the member's ``top_k`` classes of that row (default: as many as the row
has given labels, at least 1; ties at the cut all count); a given label with more than ``vote``
of the members against it is suspect spurious, an absent class with more than ``vote`` for it
suspect missing; entries are scored as rows are, a row by its largest entry score.
"""

from __future__ import annotations

import numpy as np

from webly.clean._registry import check_range, register_method
from webly.clean.problem import NoiseProblem
from webly.clean.probs import (
    Entries,
    Probs,
    find_codes,
    label_hits,
    label_probs,
    label_rows,
    probs_at,
    sorted_row_max,
)
from webly.clean.verdict import Detection, multiclass_detection, multilabel_detection
from webly.errors import ConfigError


@register_method("ensemble_agreement")
def ensemble_agreement(
    problem: NoiseProblem, *, vote: float = 0.5, top_k: int | None = None
) -> Detection:
    """Flag labels that more than ``vote`` (in [0, 1)) of the members contradict.

    Parameters
    ----------
    problem : NoiseProblem
        With at least 2 members.
    vote : float
        Share of members that must contradict a label (strictly more than it).
    top_k : int, optional
        Multi-label: classes of a row each member predicts; the row's label count if None.
    """
    n_members = len(problem.members)
    if n_members < 2:
        raise ConfigError(
            "ensemble_agreement got the oof of 1 member; pass a list of at least 2 members' "
            "predictions of the same rows"
        )
    check_range("vote", vote, 0.0, 1.0, closed=False)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k is {top_k!r}; pass an integer >= 1 or None")
    labels = problem.labels
    p_label = [label_probs(m, labels, label_hits(m, labels)) for m in problem.members]
    mean_p = np.mean(p_label, axis=0)  # (nnz,)
    if not problem.task.multilabel:
        against = [m.top1()[1] > p for m, p in zip(problem.members, p_label, strict=True)]
        share = np.mean(against, axis=0)
        return multiclass_detection(problem, (share + 1 - mean_p) / 2, share > vote)

    n_classes = np.int64(problem.n_classes)
    rows = label_rows(labels)
    counts = np.diff(labels.indptr)
    depth = np.maximum(counts, 1) if top_k is None else np.full(counts.size, top_k)
    codes, votes = np.unique(
        np.concatenate([_top_codes(m, depth) for m in problem.members]), return_counts=True
    )
    label_codes = rows.astype(np.int64) * n_classes + labels.indices
    at, hit = find_codes(codes, label_codes)
    share_against = 1 - np.where(hit, votes[at], 0) / n_members
    label_score = (share_against + 1 - mean_p) / 2

    absent = ~find_codes(label_codes, codes)[1]
    a_rows, a_cols = codes[absent] // n_classes, codes[absent] % n_classes
    share_for = votes[absent] / n_members
    a_prob = probs_at(problem.probs, a_rows, a_cols)
    absent_score = (share_for + a_prob) / 2
    flagged = share_for > vote
    row_score = np.maximum(
        sorted_row_max(rows, label_score, problem.n_samples),
        sorted_row_max(a_rows, absent_score, problem.n_samples),
    )
    missing = Entries(a_rows[flagged], a_cols[flagged], a_prob[flagged])
    return multilabel_detection(
        problem, mean_p.astype(np.float32), share_against > vote, missing, row_score
    )


def _top_codes(member: Probs, depth: np.ndarray) -> np.ndarray:
    """``row * n_classes + class`` of each row's ``depth[row]`` most probable listed classes
    (probability > 0; ties at the cut all included)."""
    values = member.values
    ranked = -np.sort(-values, axis=1)
    cut = ranked[np.arange(values.shape[0]), np.minimum(depth, values.shape[1]) - 1]
    rows, slots = np.nonzero((values >= cut[:, None]) & (values > 0))
    return rows.astype(np.int64) * member.n_classes + member.indices[rows, slots]
