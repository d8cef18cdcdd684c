"""Pseudo-labels: a model's confident predictions on unlabeled rows, trained on beside the labels.

The Cdiscount write-up (Pan & Sun, after Lee 2013) fine-tunes on the labeled rows and on
pseudo-labeled test rows with the loss

    L = 1/n sum_i D(y_i, f(x_i)) + alpha(t) * 1/n' sum_j D(y'_j, f(x'_j))

where ``alpha(t)`` is 0 before epoch ``T1`` (the model first learns from the labels alone), rises
linearly to ``alpha_f`` at ``T2`` and stays there (`alpha_schedule`). `select_pseudo_labels` keeps
the confident rows of a prediction; `PseudoLabels` hands them to `webly.train.loop.fit`, which
adds the second term to every batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from webly.core import Task, TopK
from webly.data.store import Dataset
from webly.distill.soft_labels import soft_targets
from webly.errors import ConfigError, DataError


def alpha_schedule(epoch: float, t1: float, t2: float, alpha_f: float) -> float:
    """Weight of the pseudo-label loss at ``epoch``.

    ``0`` for ``epoch < t1``; ``alpha_f * (epoch - t1) / (t2 - t1)`` for ``t1 <= epoch < t2``;
    ``alpha_f`` from ``t2`` on (with ``t1 == t2``, a step at ``t1``). `webly.train.loop.fit`
    calls it with the 1-based number of the epoch being trained, so ``t1=2, t2=4, alpha_f=1``
    gives epochs 1..5 the weights 0, 0, 0.5, 1, 1.

    The write-up prints the middle piece as ``(t - T1) / (T2 - T1)``, which reaches 1, not
    ``alpha_f``, at ``T2``; this is Lee's (2013) original, continuous at both ends.
    """
    _check_schedule(t1, t2, alpha_f)
    if epoch < t1:
        return 0.0
    if epoch >= t2:
        return float(alpha_f)
    return float(alpha_f * (epoch - t1) / (t2 - t1))


def select_pseudo_labels(
    scores: TopK,
    task: Task,
    threshold: float,
    n_classes: int,
    *,
    soft: bool = False,
) -> tuple[np.ndarray, sp.csr_matrix]:
    """The rows a model is confident about, with their pseudo-labels.

    Parameters
    ----------
    scores : TopK (n_samples, k) probabilities of the unlabeled rows (e.g. a model's or an
        ensemble's test predictions)
    task : ``"multiclass"``: a row is kept when its top-1 probability is ``>= threshold``;
        ``"multilabel"``: when any of its classes is
    threshold : float in (0, 1]
    n_classes : classes of the dataset
    soft : False: hard targets, the top-1 class one-hot (multi-class) or 1 at every class
        ``>= threshold`` (multi-label); True: the row's stored probabilities as soft targets
        (multi-class renormalised over its top k; see `webly.distill.soft_labels.soft_targets`)

    Returns
    -------
    rows : (n_kept,) int64 positions of the kept rows in ``scores``, ascending
    targets : csr_matrix (n_kept, n_classes) float32 in [0, 1]
    """
    task = Task.parse(task)
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"pseudo-label threshold is {threshold}; use a value in (0, 1]")
    indices, values = scores.indices, scores.scores
    if indices.size and indices.max() >= n_classes:
        raise DataError(
            f"scores predict class {int(indices.max())} but the dataset has {n_classes} classes; "
            "use predictions of this dataset"
        )
    present = indices >= 0
    if present.any() and (values[present].min() < 0 or values[present].max() > 1):
        raise DataError("pseudo-label scores leave [0, 1]; pass probabilities, not logits")
    masked = np.where(present, values, -np.inf)  # (n_samples, k)
    if not task.multilabel and scores.k:
        confident = np.zeros_like(present)
        confident[np.arange(scores.n_samples), np.argmax(masked, axis=1)] = True
        confident &= masked >= threshold
    else:
        confident = masked >= threshold
    rows = np.flatnonzero(confident.any(axis=1)).astype(np.int64)
    if soft:
        kept = TopK(indices[rows], values[rows])
        return rows, soft_targets(kept, n_classes, task, min_score=0.0)
    hit = confident[rows]
    counts = hit.sum(axis=1)
    targets = sp.csr_matrix(
        (np.ones(int(counts.sum()), np.float32), indices[rows][hit], np.r_[0, np.cumsum(counts)]),
        shape=(rows.size, n_classes),
    )
    targets.sort_indices()
    return rows, targets


@dataclass(frozen=True, eq=False)
class PseudoLabels:
    """Pseudo-labeled rows of an unlabeled dataset, for `webly.train.loop.fit`.

    Attributes
    ----------
    dataset : the unlabeled store (same classes and feature groups as the training data); only
        ``rows`` of it are read, nothing is copied
    rows : (n_pseudo,) int64 row positions in ``dataset``
    targets : csr_matrix (n_pseudo, n_classes) float32 in [0, 1], the targets of ``rows``
    t1, t2, alpha_f : the `alpha_schedule` of the pseudo-label loss weight (epochs, 1-based)
    """

    dataset: Dataset
    rows: np.ndarray
    targets: sp.csr_matrix
    t1: float
    t2: float
    alpha_f: float

    def __post_init__(self) -> None:
        _check_schedule(self.t1, self.t2, self.alpha_f)
        rows = np.asarray(self.rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise DataError(f"pseudo-label rows are {rows.dtype} {rows.shape}; pass (n,) ints")
        n = len(self.dataset)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise DataError(
                f"pseudo-label rows range over {rows.min()}..{rows.max()}; the unlabeled "
                f"dataset has rows 0..{n - 1}"
            )
        targets = sp.csr_matrix(self.targets, dtype=np.float32)
        if targets.shape != (rows.size, self.dataset.n_classes):
            raise DataError(
                f"pseudo-label targets are {targets.shape}; they must be ({rows.size}, "
                f"{self.dataset.n_classes}), one row per pseudo-labeled row"
            )
        if targets.nnz and (targets.data.min() < 0 or targets.data.max() > 1):
            raise DataError("pseudo-label targets leave [0, 1]; pass probabilities or 0/1")
        object.__setattr__(self, "rows", rows.astype(np.int64))
        object.__setattr__(self, "targets", targets)

    def weight(self, epoch: float) -> float:
        """The loss weight at ``epoch`` (1-based): `alpha_schedule`."""
        return alpha_schedule(epoch, self.t1, self.t2, self.alpha_f)

    def settings(self) -> dict[str, Any]:
        """What the training result depends on, JSON-able: the schedule, the unlabeled
        dataset's size and a SHA-256 of the rows and targets."""
        digest = hashlib.sha256()
        for part in (self.rows, self.targets.indptr, self.targets.indices, self.targets.data):
            digest.update(np.ascontiguousarray(part).tobytes())
        return {
            "t1": self.t1,
            "t2": self.t2,
            "alpha_f": self.alpha_f,
            "dataset_rows": len(self.dataset),
            "rows": int(self.rows.size),
            "sha256": digest.hexdigest(),
        }


def _check_schedule(t1: float, t2: float, alpha_f: float) -> None:
    if not (0 <= t1 <= t2 and alpha_f >= 0):
        raise ConfigError(
            f"pseudo-label schedule t1={t1}, t2={t2}, alpha_f={alpha_f}; use 0 <= t1 <= t2 and "
            "alpha_f >= 0 (e.g. t1=2, t2=5, alpha_f=1)"
        )
