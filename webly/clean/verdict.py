"""What a detection method finds (`Detection`) and the verdict it becomes (`NoiseVerdict`).

A method returns a `Detection`: per row a score and a flag, for multi-label the suspect
(row, label) entries, and the estimated count of each (given, true) class pair. `build_verdict`
adds what every method shares: the predicted class of each row, the per-class noise rates,
the top confusions and, for up to `DENSE_TRANSITION_MAX` classes, the dense transition matrix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from webly.clean.problem import NoiseProblem
from webly.clean.probs import Entries, label_rows
from webly.core import Task

DENSE_TRANSITION_MAX = 1000  # classes up to which the verdict holds a dense (C, C) transition
MAX_CONFUSIONS = 100  # (given, true) pairs listed in `NoiseVerdict.confusions`

Confusion = tuple[int, int, float]


@dataclass(frozen=True, eq=False)
class Detection:
    """A method's findings, before the shared parts of the verdict are added.

    Attributes
    ----------
    row_score : (n_samples,) float in [0, 1], higher = more likely noisy
    is_noisy : (n_samples,) bool
    pairs : (n_classes, n_classes) csr_matrix of float
        Estimated row counts. Multi-class: ``pairs[i, j]`` rows given ``i`` whose true class is
        ``j`` (the diagonal holds the rows judged right; each row sums to the rows given ``i``).
        Multi-label: rows where label ``i`` is suspect spurious and ``j`` suspect missing.
    class_noise_rate : (n_classes,) float64
        Estimated share of each class's given labels that are wrong; 0 for unused classes.
    suspect_spurious, suspect_missing : (n_samples, n_classes) bool csr_matrix, or None
        Multi-label only: given labels judged wrong, and absent labels judged missing.
    suspect_prob : (n_samples, n_classes) float32 csr_matrix, or None
        Multi-label only: the predicted probability at each suspect entry.
    class_thresholds : (n_classes,) float64, or None
        Per-class thresholds of methods that have them (inf: the class has no labelled row).
    """

    row_score: np.ndarray
    is_noisy: np.ndarray
    pairs: sp.csr_matrix
    class_noise_rate: np.ndarray
    suspect_spurious: sp.csr_matrix | None = None
    suspect_missing: sp.csr_matrix | None = None
    suspect_prob: sp.csr_matrix | None = None
    class_thresholds: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class NoiseVerdict:
    """The result of `webly.clean.find_noisy_labels`.

    Attributes
    ----------
    method : str
        The detection method that made it.
    task : {"multiclass", "multilabel"}
    params : mapping
        The method's options as used, defaults filled in.
    labels : (n_samples, n_classes) float32 csr_matrix
        The judged labels, canonical 0/1.
    row_score : (n_samples,) float32 in [0, 1]
        Higher = more likely that the row's labels are wrong; comparable within one method.
    is_noisy : (n_samples,) bool
        Rows judged to carry a wrong (multi-label: or missing) label.
    predicted : (n_samples,) int32
        Top-1 class of the (averaged) predictions; -1 where a row has no class above 0.
    predicted_prob : (n_samples,) float32
        Its probability.
    class_noise_rate : (n_classes,) float64
        Estimated share of each class's given labels that are wrong (0 for unused classes).
    confusions : tuple of (given, true, estimated rows)
        The largest off-diagonal entries of the estimated (given, true) counts, largest first,
        at most `MAX_CONFUSIONS`. Multi-label: (suspect spurious, suspect missing) label pairs
        of the same rows.
    transition : (n_classes, n_classes) float64, or None
        ``transition[i, j]``: estimated share of the rows given ``i`` whose true class is ``j``
        (rows sum to 1 for used classes; multi-label: share of class ``i``'s labels that are
        suspect spurious in a row where ``j`` is suspect missing). None above
        `DENSE_TRANSITION_MAX` classes.
    class_thresholds : (n_classes,) float64, or None
        Per-class thresholds used (confident learning), else None.
    suspect_spurious, suspect_missing : (n_samples, n_classes) bool csr_matrix, or None
        Multi-label only: the per-(row, label) verdict.
    suspect_prob : (n_samples, n_classes) float32 csr_matrix, or None
        Multi-label only: predicted probability at each suspect entry.
    """

    method: str
    task: Task
    params: Mapping[str, Any]
    labels: sp.csr_matrix
    row_score: np.ndarray
    is_noisy: np.ndarray
    predicted: np.ndarray
    predicted_prob: np.ndarray
    class_noise_rate: np.ndarray
    confusions: tuple[Confusion, ...]
    transition: np.ndarray | None
    class_thresholds: np.ndarray | None = None
    suspect_spurious: sp.csr_matrix | None = None
    suspect_missing: sp.csr_matrix | None = None
    suspect_prob: sp.csr_matrix | None = field(default=None, repr=False)

    @property
    def n_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.labels.shape[1])

    @property
    def n_noisy(self) -> int:
        return int(self.is_noisy.sum())

    def noisy_rows(self) -> np.ndarray:
        """(n_noisy,) int64 flagged rows, most suspect first (ties by row)."""
        rows = np.flatnonzero(self.is_noisy)
        return rows[np.argsort(-self.row_score[rows], kind="stable")]


def multiclass_detection(
    problem: NoiseProblem,
    row_score: np.ndarray,
    is_noisy: np.ndarray,
    *,
    pairs: sp.csr_matrix | None = None,
    class_thresholds: np.ndarray | None = None,
) -> Detection:
    """A multi-class `Detection`; without ``pairs``, a flagged row counts as truly of its
    predicted class and every other row as truly of its given class."""
    given = problem.given
    if pairs is None:
        predicted, _ = problem.probs.top1()
        true = np.where(is_noisy & (predicted >= 0), predicted, given)
        pairs = _pair_counts(given, true, problem.n_classes)
    counts = problem.label_counts()
    rate = 1 - safe_divide(pairs.diagonal(), counts)
    rate[counts == 0] = 0.0
    return Detection(
        np.asarray(row_score, dtype=np.float32),
        np.asarray(is_noisy, dtype=bool),
        pairs,
        rate,
        class_thresholds=class_thresholds,
    )


def multilabel_detection(
    problem: NoiseProblem,
    label_prob: np.ndarray,
    spurious: np.ndarray,
    missing: Entries,
    row_score: np.ndarray,
    *,
    class_noise_rate: np.ndarray | None = None,
    class_thresholds: np.ndarray | None = None,
) -> Detection:
    """A multi-label `Detection` from flagged entries.

    Parameters
    ----------
    problem : NoiseProblem
    label_prob : (nnz,) float
        Predicted probability of each stored label (CSR order).
    spurious : (nnz,) bool
        Per stored label (CSR order): judged wrong.
    missing : Entries
        Absent (row, class) labels judged missing, with their predicted probability.
    row_score : (n_samples,) float in [0, 1]
    class_noise_rate : (n_classes,) float, optional
        Estimated rates; the share of each class's labels flagged spurious when None.
    """
    labels = problem.labels
    shape = labels.shape
    rows = label_rows(labels)
    m_rows, m_cols = missing.rows, missing.cols
    s_rows, s_cols = rows[spurious], labels.indices[spurious]
    spurious_csr = bool_csr(s_rows, s_cols, shape)
    missing_csr = bool_csr(m_rows, m_cols, shape)
    suspect_prob = sp.csr_matrix(
        (
            np.concatenate([label_prob[spurious], missing.prob]),
            (np.concatenate([s_rows, m_rows]), np.concatenate([s_cols, m_cols])),
        ),
        shape=shape,
        dtype=np.float32,
    )
    if class_noise_rate is None:
        counts = problem.label_counts()
        class_noise_rate = safe_divide(np.bincount(s_cols, minlength=shape[1]), counts)
    flagged = (np.diff(spurious_csr.indptr) + np.diff(missing_csr.indptr)) > 0
    pairs = sp.csr_matrix(spurious_csr.T.astype(np.float64) @ missing_csr.astype(np.float64))
    return Detection(
        np.asarray(row_score, dtype=np.float32),
        flagged,
        pairs,
        np.asarray(class_noise_rate, dtype=np.float64),
        spurious_csr,
        missing_csr,
        suspect_prob,
        class_thresholds,
    )


def build_verdict(
    method: str, params: Mapping[str, Any], problem: NoiseProblem, found: Detection
) -> NoiseVerdict:
    """Add the predicted classes, the confusions and the transition matrix to ``found``."""
    predicted, predicted_prob = problem.probs.top1()
    n_classes = problem.n_classes
    rows_given = (
        problem.label_counts().astype(np.float64)
        if problem.task.multilabel
        else np.asarray(found.pairs.sum(axis=1)).ravel()
    )
    transition = None
    if n_classes <= DENSE_TRANSITION_MAX:
        transition = safe_divide(found.pairs.toarray(), rows_given[:, None])
    return NoiseVerdict(
        method=method,
        task=problem.task,
        params=dict(params),
        labels=problem.labels,
        row_score=np.clip(found.row_score, 0, 1).astype(np.float32),
        is_noisy=found.is_noisy,
        predicted=predicted,
        predicted_prob=predicted_prob,
        class_noise_rate=found.class_noise_rate,
        confusions=top_confusions(found.pairs),
        transition=transition,
        class_thresholds=found.class_thresholds,
        suspect_spurious=found.suspect_spurious,
        suspect_missing=found.suspect_missing,
        suspect_prob=found.suspect_prob,
    )


def top_confusions(pairs: sp.csr_matrix, limit: int = MAX_CONFUSIONS) -> tuple[Confusion, ...]:
    """The ``limit`` largest off-diagonal entries of ``pairs`` as (given, true, count), largest
    first, ties by (given, true)."""
    coo = pairs.tocoo()
    off = (coo.row != coo.col) & (coo.data > 0)
    rows, cols, counts = coo.row[off], coo.col[off], coo.data[off]
    order = np.lexsort((cols, rows, -counts))[:limit]
    return tuple(
        (int(r), int(c), float(v))
        for r, c, v in zip(rows[order], cols[order], counts[order], strict=True)
    )


def _pair_counts(given: np.ndarray, true: np.ndarray, n_classes: int) -> sp.csr_matrix:
    ones = np.ones(given.size, dtype=np.float64)
    return sp.csr_matrix((ones, (given, true)), shape=(n_classes, n_classes))


def bool_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(rows.size, dtype=bool), (rows, cols)), shape=shape)


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
