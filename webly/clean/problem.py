"""Check labels and out-of-fold predictions against each other and bring them into one form.

Every detection method receives a `NoiseProblem`: canonical 0/1 CSR labels, the task, each
member's `Probs` and their average. All input errors are raised here, each in one line naming
the argument, what was received and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import scipy.sparse as sp

from webly.clean.probs import Probs, dense_probs
from webly.core import LabelsLike, Task, TopK, canonical_labels
from webly.errors import ConfigError, DataError

OofLike: TypeAlias = np.ndarray | TopK
ROW_SUM_TOLERANCE = 1e-3
_BLOCK_ROWS = 1 << 16  # rows averaged at a time


@dataclass(frozen=True, eq=False)
class NoiseProblem:
    """What a detection method judges.

    Attributes
    ----------
    labels : (n_samples, n_classes) csr_matrix
        Canonical 0/1 given labels (sorted indices, no explicit zeros); one per row when
        ``task`` is multi-class.
    task : {"multiclass", "multilabel"}
    probs : Probs
        The members' probabilities averaged (a class a member does not list counts as 0).
    members : tuple of Probs
        Each member's probabilities; one entry when a single oof was given.
    """

    labels: sp.csr_matrix
    task: Task
    probs: Probs
    members: tuple[Probs, ...]

    @property
    def n_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.labels.shape[1])

    @property
    def given(self) -> np.ndarray:
        """(n_samples,) int32 given class of each row (multi-class: one label a row)."""
        return np.asarray(self.labels.indices, dtype=np.int32)

    def label_counts(self) -> np.ndarray:
        """(n_classes,) int64 rows given each class."""
        return np.bincount(self.labels.indices, minlength=self.n_classes).astype(np.int64)


def build_problem(
    labels: LabelsLike,
    oof: OofLike | Sequence[OofLike],
    task: Task | None = None,
    n_classes: int | None = None,
) -> NoiseProblem:
    """Validate ``labels`` and ``oof`` and return the `NoiseProblem` they make.

    Parameters
    ----------
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    oof : (n_samples, n_classes) float probabilities, a TopK, or a sequence of either
        (several members' predictions of the same rows)
    task : {"multiclass", "multilabel"}, optional
        Inferred when None: 1-d labels are multi-class, a matrix is multi-class when every row
        has exactly one label.
    n_classes : int, optional
        Class count for 1-d labels with TopK predictions (else the largest id seen + 1).
    """
    chosen = None if task is None else Task.parse(task)
    members_in: list[OofLike] = [oof] if isinstance(oof, np.ndarray | TopK) else list(oof)
    if not members_in:
        raise ConfigError("oof is an empty list; pass one member's predictions or several")
    if not sp.issparse(labels):
        labels = np.asarray(labels)
    n_samples = _label_rows(labels)
    classes = _class_count(labels, members_in, n_classes)
    csr = canonical_labels(labels, n_samples, classes).astype(np.float32)
    resolved = _resolve_task(csr, chosen, np.ndim(labels) == 1 and not sp.issparse(labels))
    many = len(members_in) > 1
    members = tuple(
        _as_probs(m, n_samples, classes, f"oof[{i}]" if many else "oof")
        for i, m in enumerate(members_in)
    )
    return NoiseProblem(csr, resolved, _average(members), members)


def require_normalized(problem: NoiseProblem, method: str) -> None:
    """Refuse multi-class probabilities whose rows do not sum to 1 (+-1e-3); top-k rows may sum
    to less (the rest lies outside the top k) but not to more."""
    probs = problem.probs
    sums = probs.values.sum(axis=1, dtype=np.float64)
    bad = (np.abs(sums - 1) > ROW_SUM_TOLERANCE) if probs.dense else sums > 1 + ROW_SUM_TOLERANCE
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        need = "sum to 1" if probs.dense else "sum to at most 1"
        raise DataError(
            f"oof row {row} sums to {sums[row]:.4f} but multi-class {method} needs rows that "
            f"{need} (+-{ROW_SUM_TOLERANCE}); pass softmax probabilities"
        )


def _label_rows(labels: LabelsLike) -> int:
    shape = labels.shape
    if len(shape) not in (1, 2) or shape[0] == 0:
        raise DataError(
            f"labels have shape {tuple(shape)}; pass (n_samples, n_classes) 0/1 labels or "
            "(n_samples,) class ids, at least one row"
        )
    return int(shape[0])


def _class_count(labels: LabelsLike, members: list[OofLike], n_classes: int | None) -> int:
    if len(labels.shape) == 2:
        return int(labels.shape[1])
    if n_classes is not None:
        return int(n_classes)
    dense = [m for m in members if not isinstance(m, TopK)]
    if dense:
        return int(np.shape(dense[0])[-1])
    ids = np.asarray(labels)
    most = max(int(m.indices.max(initial=-1)) for m in members if isinstance(m, TopK))
    return max(int(ids.max(initial=-1)), most) + 1


def _resolve_task(labels: sp.csr_matrix, task: Task | None, one_d: bool) -> Task:
    counts = np.diff(labels.indptr)
    if task is None:
        return Task.MULTICLASS if one_d or bool((counts == 1).all()) else Task.MULTILABEL
    if not task.multilabel and not (counts == 1).all():
        row = int(np.flatnonzero(counts != 1)[0])
        raise DataError(
            f"task is multiclass but labels row {row} has {counts[row]} labels; pass one label "
            "a row, or task='multilabel'"
        )
    return task


def _as_probs(oof: OofLike, n_samples: int, n_classes: int, name: str) -> Probs:
    if isinstance(oof, TopK):
        if oof.n_samples != n_samples:
            raise DataError(_rows_message(name, oof.n_samples, n_samples))
        most = int(oof.indices.max(initial=-1))
        if most >= n_classes:
            raise DataError(
                f"{name} predicts class {most} but labels have {n_classes} classes "
                f"(0..{n_classes - 1}); pass predictions of the labels' classes"
            )
        padded = oof.indices < 0
        values = np.where(padded, np.float32(0), oof.scores) if padded.any() else oof.scores
        _check_unit_range(name, values)
        return Probs(oof.indices, values, n_classes, dense=False)
    array = np.asarray(oof)
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise DataError(
            f"{name} has shape {array.shape} and dtype {array.dtype}; pass (n_samples, "
            "n_classes) float probabilities or a TopK"
        )
    if array.shape[0] != n_samples:
        raise DataError(_rows_message(name, array.shape[0], n_samples))
    if array.shape[1] != n_classes:
        raise DataError(
            f"{name} has {array.shape[1]} classes but labels have {n_classes}; pass "
            "predictions of the labels' classes, in the same order"
        )
    values = array.astype(np.float32, copy=False)
    _check_unit_range(name, values)
    return dense_probs(values)


def _rows_message(name: str, got: int, n_samples: int) -> str:
    return (
        f"{name} has {got} rows but labels have {n_samples}; pass out-of-fold predictions of "
        "the labelled rows, in the same order"
    )


def _check_unit_range(name: str, values: np.ndarray) -> None:
    if values.size == 0 or (values.min() >= 0 and values.max() <= 1):  # False with NaN
        return
    bad = ~((values >= 0) & (values <= 1))
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise DataError(
            f"{name} holds {values[row, col]:.4g} at row {row} (outside [0, 1]); pass "
            "probabilities (apply softmax or sigmoid to scores)"
        )


def _average(members: tuple[Probs, ...]) -> Probs:
    """The members' mean probabilities, exact: a class a member does not list counts as 0."""
    if len(members) == 1:
        return members[0]
    if all(m.dense for m in members):
        total = np.zeros(members[0].values.shape, dtype=np.float64)
        for m in members:
            total += m.values
        return dense_probs((total / len(members)).astype(np.float32))
    blocks = [
        _average_rows([m.indices[rows] for m in members], [m.values[rows] for m in members])
        for rows in (
            slice(start, start + _BLOCK_ROWS)
            for start in range(0, members[0].n_samples, _BLOCK_ROWS)
        )
    ]
    width = max(b[0].shape[1] for b in blocks)
    indices = np.full((members[0].n_samples, width), -1, dtype=np.int32)
    values = np.zeros(indices.shape, dtype=np.float32)
    start = 0
    for block_indices, block_values in blocks:
        rows = slice(start, start + block_indices.shape[0])
        indices[rows, : block_indices.shape[1]] = block_indices
        values[rows, : block_values.shape[1]] = block_values
        start = rows.stop
    return Probs(indices, values, members[0].n_classes, dense=False)


def _average_rows(
    indices: list[np.ndarray], values: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean over members of a block of rows: (B, w) int32 distinct class ids, left-aligned, -1
    padded, and (B, w) float32 their mean probabilities; w = the most distinct ids of a row.

    Each entry is packed as ``class << 32 | float32 bits`` so one int64 sort per row brings a
    row's entries of the same class together (padding, class -1, sorts first).
    """
    ids = np.concatenate(indices, axis=1).astype(np.int64)
    bits = np.concatenate(values, axis=1).astype(np.float32).view(np.uint32)
    packed = np.sort((ids << 32) | bits, axis=1)  # (B, W)
    ids = packed >> 32
    probs = (packed & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
    n_rows, width = ids.shape
    first = np.ones(ids.shape, dtype=bool)
    first[:, 1:] = ids[:, 1:] != ids[:, :-1]
    starts = np.flatnonzero(first)  # runs of one class within a row, row-major
    sums = np.add.reduceat(probs.ravel(), starts, dtype=np.float64) / len(indices)
    keep = ids.ravel()[starts] >= 0
    starts, sums = starts[keep], sums[keep]
    rows = starts // width
    row_first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if rows.size else rows
    slot = np.arange(starts.size) - np.repeat(row_first, np.diff(np.r_[row_first, rows.size]))
    out_width = int(slot.max(initial=-1)) + 1
    out_ids = np.full((n_rows, out_width), -1, dtype=np.int32)
    out_probs = np.zeros((n_rows, out_width), dtype=np.float32)
    out_ids[rows, slot] = ids.ravel()[starts]
    out_probs[rows, slot] = sums
    return out_ids, out_probs
