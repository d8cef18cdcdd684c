"""Soft labels: a teacher's out-of-fold predictions as the training targets of a student.

The YouTube-8M winners trained their students on the ensemble's out-of-fold predictions of the
training rows (each row scored by models that never saw it), mixed with the given labels by
the trainer's distillation loss ``lam * loss(labels) + (1 - lam) * loss(teacher)``. The targets
are kept sparse: a row's top-k classes of the teacher, the rest 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from webly.core import Task, TopK, select_top_k
from webly.ensemble.members import Members
from webly.errors import ConfigError, DataError
from webly.predictions import merge_topk


def soft_targets(
    teacher: TopK, n_classes: int, task: Task, *, k: int | None = None, min_score: float = 1e-3
) -> sp.csr_matrix:
    """A teacher's top-k predictions as (n_samples, n_classes) soft targets.

    Parameters
    ----------
    teacher : TopK (n_samples, k_t)
        Probabilities (per class for ``multilabel``, a distribution for ``multiclass``), e.g.
        a blend's or the stacker's out-of-fold predictions.
    n_classes : classes of the dataset
    task : ``"multilabel"`` or ``"multiclass"``
    k : classes kept per row (the teacher's k_t if None)
    min_score : scores below it are dropped (kept sparse: a multi-label teacher gives every
        class a small probability)

    Returns
    -------
    csr_matrix (n_samples, n_classes) float32
        Multi-label: the scores, clipped to [0, 1]. Multi-class: each row's kept scores
        divided by their sum, a distribution over the kept classes.
    """
    task = Task.parse(task)
    if not 0.0 <= min_score < 1.0:
        raise ConfigError(f"min_score is {min_score}; use a value in [0, 1)")
    indices, scores = select_top_k(teacher, k, sort=False)
    if indices.size and indices.max() >= n_classes:
        raise DataError(
            f"teacher predicts class {int(indices.max())} but the dataset has {n_classes} "
            "classes; use a teacher trained on this dataset"
        )
    finite = scores[np.isfinite(scores)]
    if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
        raise DataError(
            f"teacher scores range over {finite.min():.4g}..{finite.max():.4g}; soft targets "
            "need probabilities in [0, 1], not logits"
        )
    keep = (indices >= 0) & (scores >= min_score)
    values = np.clip(np.where(keep, scores, 0.0), 0.0, 1.0).astype(np.float32)
    if not task.multilabel:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    rows = np.broadcast_to(np.arange(indices.shape[0])[:, None], indices.shape)
    return sp.csr_matrix(
        (values[keep], (rows[keep], indices[keep])), shape=(indices.shape[0], n_classes)
    )


def sharpen(teacher: TopK, temperature: float, task: Task) -> TopK:
    """A teacher's probabilities at ``temperature``: below 1 sharper (surer classes surer),
    above 1 softer, 1 unchanged.

    Multi-label: each class's probability through its log-odds, ``sigmoid(logit(p) / T)``
    (probabilities clipped to [1e-6, 1 - 1e-6] first). Multi-class: ``p ** (1 / T)``, the
    softmax of ``log(p) / T`` up to the normalisation `soft_targets` applies to the kept
    classes. Padding (index -1) is left as it is.

    Parameters
    ----------
    teacher : TopK (n_samples, k_t) probabilities
    temperature : > 0
    task : the dataset's task
    """
    if temperature == 1.0:
        return teacher
    p = np.clip(teacher.scores.astype(np.float64), 1e-6, 1.0 - 1e-6)
    if Task.parse(task).multilabel:
        scores = 1.0 / (1.0 + np.exp(-(np.log(p) - np.log1p(-p)) / temperature))
    else:
        scores = np.exp(np.log(p) / temperature)
    scores = np.where(teacher.indices >= 0, scores, teacher.scores)
    return TopK(teacher.indices, scores.astype(teacher.scores.dtype))


def families(members: Members) -> dict[str, list[str]]:
    """Members grouped by model family (the registered model name), in member order.

    The 1st-place YouTube-8M team distilled each family (all their NetVLAD variants, all
    their DBoF variants, ...) from that family's own ensemble.
    """
    grouped: dict[str, list[str]] = {}
    for name, store in zip(members.names, members.stores, strict=True):
        grouped.setdefault(str(store.model.get("name", name)), []).append(name)
    return grouped


def family_teacher(members: Members, names: Sequence[str], split: str = "oof") -> TopK:
    """The plain mean of the named members' predictions of ``split``: one family's teacher."""
    chosen = members.select(names)
    return merge_topk(chosen.topk(split))
