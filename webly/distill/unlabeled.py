"""Distillation on unlabeled rows: a teacher's predictions of rows nobody labeled, learned by
the students beside the labeled rows' soft labels.

A student copies its teacher's function only where it sees it: on the labeled rows alone (a few
thousand in a benchmark, a fraction of what a user holds) it falls well short of an ensemble's
accuracy. Rows without labels cost nothing to predict, and each is one more input on which the
student learns what the teacher says. The targets are the teacher's top-k probabilities (soft,
every row: distillation) or only the rows it is confident about (``threshold``: the Cdiscount
team's pseudo-labels, `webly.distill.pseudo`); they train through the trainer's pseudo-label
term (`webly.distill.pseudo.PseudoLabels`), weighted by epoch with `alpha_schedule`.
"""

from __future__ import annotations

import numpy as np

from webly.core import TopK, select_top_k
from webly.data.store import Dataset
from webly.distill.pseudo import PseudoLabels, select_pseudo_labels
from webly.distill.soft_labels import soft_targets
from webly.errors import DataError


def teach_unlabeled(
    teacher: TopK,
    data: Dataset,
    rows: np.ndarray,
    *,
    threshold: float | None = None,
    soft: bool = True,
    k: int | None = None,
    min_score: float = 1e-3,
    alpha: float = 1.0,
    t1: float = 0.0,
    t2: float = 0.0,
) -> PseudoLabels:
    """The teacher's predictions of unlabeled rows as the students' extra training rows.

    Parameters
    ----------
    teacher : TopK (n_rows, k_t) probabilities of ``data``'s ``rows``, in that order
    data : the unlabeled store (classes and task of the training data)
    rows : (n_rows,) int row positions in ``data``
    threshold : keep only the rows whose top-1 (multi-class) or any (multi-label)
        probability is ``>= threshold``; None keeps every row
    soft : the teacher's probabilities as targets (`soft_targets`: its top ``k`` above
        ``min_score``); False: the confident classes as 1 (needs ``threshold``)
    k, min_score : the teacher's classes kept per row
    alpha, t1, t2 : the loss weight schedule (`webly.distill.pseudo.alpha_schedule`)

    Returns
    -------
    PseudoLabels
        ``rows`` those kept, ``targets`` (n_kept, n_classes) float32 in [0, 1].
    """
    rows = np.asarray(rows, dtype=np.int64)
    if teacher.n_samples != rows.size:
        raise DataError(
            f"the teacher predicts {teacher.n_samples} rows but {rows.size} unlabeled rows were "
            "given; predict exactly the rows to teach"
        )
    indices, scores = select_top_k(teacher, k, sort=False)
    top = TopK(indices, scores)
    if threshold is None:
        if not soft:
            raise DataError("hard pseudo-labels (soft=False) need a threshold; give one")
        kept = np.arange(rows.size)
        targets = soft_targets(top, data.n_classes, data.task, min_score=min_score)
    else:
        kept, targets = select_pseudo_labels(top, data.task, threshold, data.n_classes, soft=soft)
    return PseudoLabels(data, rows[kept], targets, t1=t1, t2=t2, alpha_f=alpha)
