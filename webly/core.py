"""webly's shared vocabulary: the task with its metric and loss, labels in their one canonical
form, top-k predictions, and the `Model` protocol every first-level model is trained, saved,
loaded and scored through.

Every package below the CLI speaks in these types instead of strings: a `Task` knows the
headline metric and the loss its models are scored with, so no caller derives ``"GAP@20"`` or
``"accuracy"`` from a task string itself; `canonical_labels` is the one place label matrices,
multi-hot arrays and class ids become `Labels`; `Model` lets the trainer treat a network and
LightGBM alike. This module sits at the bottom of the package graph: it imports only
`webly.errors` at run time (`webly.data.store` for annotations only). The functions computing
a task's figures live in `webly.metrics.evaluate` (``task_metric``, ``loss_sum``) and
`webly.train.losses`; the `Model` adapters in `webly.train.fold_model`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeAlias, runtime_checkable

import numpy as np
import scipy.sparse as sp

from webly.errors import ConfigError, DataError

if TYPE_CHECKING:  # annotations only: webly.data.store itself imports this module
    from webly.data.store import Dataset

LabelsLike: TypeAlias = np.ndarray | sp.spmatrix | sp.sparray
"""Labels as callers give them: (n_samples, n_classes) sparse or dense 0/1 (multi-label, 1 =
positive), or (n_samples,) integer class ids (multi-class)."""
Labels: TypeAlias = sp.csr_matrix
"""Canonical labels (`canonical_labels`): (n_samples, n_classes) CSR, sorted indices, no
duplicates or explicit zeros, data 1 (int8, or the dtype of a sparse input)."""

GAP_K = 20
"""k of the headline GAP@k (the YouTube-8M competition's k)."""


@dataclass(frozen=True)
class Figure:
    """One figure a task is scored by.

    Attributes
    ----------
    name : as tables, reports and ``results.json`` show it (``"GAP@20"``, ``"BCE"``)
    key : as members' results and prediction stores record it (``"gap@20"``, ``"bce"``)
    higher_is_better : whether a larger value is a better model
    """

    name: str
    key: str
    higher_is_better: bool


class Task(StrEnum):
    """What a row's labels are: any number of classes (multi-label) or exactly one (multi-class).

    A `StrEnum`, so ``Task("multilabel") is Task.MULTILABEL``, a member compares equal to its
    string, and JSON written with the plain strings reads back unchanged.
    """

    MULTILABEL = "multilabel"
    MULTICLASS = "multiclass"

    @classmethod
    def parse(cls, value: str) -> Task:
        """``value`` as a Task; a one-line `ConfigError` naming the choices when it is none."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"task is {value!r}; use multilabel or multiclass") from None

    @property
    def multilabel(self) -> bool:
        """True for multi-label data (sigmoid per class), False for multi-class (softmax)."""
        return self is Task.MULTILABEL

    def metric(self, k: int = GAP_K) -> Figure:
        """The headline metric: GAP@k of the top-k ranking (multi-label) or top-1 accuracy
        (multi-class; ``k`` unused); higher is better. `webly.metrics.evaluate.task_metric`
        computes it."""
        if self.multilabel:
            return Figure(name=f"GAP@{k}", key=f"gap@{k}", higher_is_better=True)
        return Figure(name="accuracy", key="accuracy", higher_is_better=True)

    @property
    def loss(self) -> Figure:
        """The training loss: per-class sigmoid BCE (multi-label) or softmax log-loss
        (multi-class); lower is better. `webly.metrics.evaluate.loss_sum` computes it."""
        if self.multilabel:
            return Figure(name="BCE", key="bce", higher_is_better=False)
        return Figure(name="log-loss", key="log-loss", higher_is_better=False)


@runtime_checkable
class Model(Protocol):
    """A first-level model of the zoo, a network or gradient-boosted trees alike: what
    `webly.train.oof` builds, trains, saves, loads and scores a fold with, never asking which
    kind it is. Adapters: `webly.train.fold_model.NetworkModel` and ``TreeModel``.
    """

    @property
    def takes_frames(self) -> bool:
        """Whether it reads frame sequences ``(B, T, D)`` rather than one vector a row."""
        ...

    @property
    def trains_with_epochs(self) -> bool:
        """Whether it trains by epochs (checkpoints, a time limit, soft targets, graded sample
        weights, pseudo-labels); trees do not."""
        ...

    def fit(
        self,
        train: Dataset,
        valid: Dataset | None,
        workdir: Path,
        *,
        labels: sp.csr_matrix | None = None,
        valid_labels: sp.csr_matrix | None = None,
        targets: sp.csr_matrix | None = None,
        sample_weight: Any = None,
        pseudo: Any = None,
        time_limit: float | None = None,
    ) -> np.ndarray | None:
        """Train on ``train`` (validated on ``valid``), leaving resumable state in ``workdir``.

        ``labels`` / ``valid_labels``: (n, n_classes) in [0, 1] in place of the stores' own;
        ``targets``: a teacher's soft targets; ``sample_weight``: (n,) weights or a schedule;
        ``pseudo``: pseudo-labeled rows; ``time_limit``: seconds. Returns the rows of ``train``
        it held out for validation (ascending), or None.
        """
        ...

    def predict_proba(self, data: Dataset) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(rows (B,) int, probabilities (B, n_classes) float32)`` blocks of ``data``, in
        row order."""
        ...

    def save(self, folder: Path) -> None:
        """Write the model (and how it was trained) into ``folder``, no pickle."""
        ...

    @classmethod
    def load(cls, folder: Path, groups: Sequence[str], batch_size: int) -> Self:
        """The model `save` wrote into ``folder``, fed ``groups``, scoring ``batch_size`` rows a
        block."""
        ...


@dataclass(frozen=True, eq=False)
class TopK:
    """Each row's k best classes and their scores, best first or in any order.

    Attributes
    ----------
    indices : (n_samples, k) int32
        Class ids in 0..n_classes-1, distinct within a row; -1 pads a row that has fewer than k
        predictions.
    scores : (n_samples, k) float32
        Score of each class; -inf at padding (any other value there is replaced by -inf).
    """

    indices: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        indices = np.asarray(self.indices)
        scores = np.asarray(self.scores)
        if indices.ndim != 2 or indices.shape != scores.shape:
            raise DataError(
                f"TopK indices have shape {indices.shape} and scores {scores.shape}; both must "
                "be (n_samples, k) with the same shape"
            )
        if not np.issubdtype(indices.dtype, np.integer):
            raise DataError(
                f"TopK indices have dtype {indices.dtype}; pass integer class ids (-1 = padding)"
            )
        if scores.dtype.kind not in "fiu":
            raise DataError(f"TopK scores have dtype {scores.dtype}; pass real-valued scores")
        if indices.size and (indices.min() < -1 or indices.max() > np.iinfo(np.int32).max):
            raise DataError(
                f"TopK indices range over {indices.min()}..{indices.max()}; class ids must be "
                ">= 0, with -1 only as padding"
            )
        scores = scores.astype(np.float32, copy=False)
        if np.isnan(scores).any():
            row = int(np.flatnonzero(np.isnan(scores).any(axis=1))[0])
            raise DataError(f"TopK scores hold NaN (first in row {row}); replace NaN scores")
        padding = indices < 0
        if padding.any() and not np.isneginf(scores[padding]).all():
            scores = np.where(padding, np.float32(-np.inf), scores)
        object.__setattr__(self, "indices", np.ascontiguousarray(indices, dtype=np.int32))
        object.__setattr__(self, "scores", np.ascontiguousarray(scores))

    @property
    def n_samples(self) -> int:
        """Number of rows."""
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        """Number of prediction slots per row (padding included)."""
        return int(self.indices.shape[1])

    @classmethod
    def from_dense(cls, scores: np.ndarray, k: int) -> TopK:
        """Keep each row's `k` highest scores, sorted best first.

        Parameters
        ----------
        scores : (n_samples, n_classes) float
            Dense scores; cast to float32.
        k : int
            Predictions to keep per row; clipped to n_classes.

        Returns
        -------
        TopK
            (n_samples, min(k, n_classes)), selected as ``np.argpartition`` selects them (so
            ties at the k-th place are cut as the YouTube-8M starter code cuts them).
        """
        indices, values = _select_dense(dense_scores(scores), check_k(k), sort=True)
        return cls(indices, values)


def select_top_k(
    scores: np.ndarray | TopK, k: int | None, *, sort: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top-k (all if k is None) of validated scores.

    Returns
    -------
    indices : (n_samples, k') int, -1 = padding
    scores : (n_samples, k') float, best first if `sort` (ties by ascending class, for dense
        ``scores``)
    """
    if isinstance(scores, TopK):
        return _select_topk(scores, k, sort=sort)
    return _select_dense(scores, scores.shape[1] if k is None else k, sort=sort)


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise DataError(f"k must be a positive integer, got {k!r}; pass e.g. k=20")
    return int(k)


def dense_scores(scores: np.ndarray) -> np.ndarray:
    """Validate dense scores: (n_samples, n_classes) real, at least one class, no NaN."""
    array = np.asarray(scores)
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError(
            f"scores have shape {array.shape}; pass (n_samples, n_classes) dense scores or a TopK"
        )
    if not np.issubdtype(array.dtype, np.floating):
        if not np.issubdtype(array.dtype, np.integer) and array.dtype != bool:
            raise DataError(f"scores have dtype {array.dtype}; pass real-valued scores")
        array = array.astype(np.float64)
    nan_rows = np.isnan(array).any(axis=1)
    if nan_rows.any():
        raise DataError(
            f"scores hold NaN (first in row {int(np.flatnonzero(nan_rows)[0])}); replace NaN scores"
        )
    return array


def _select_dense(dense: np.ndarray, k: int, *, sort: bool) -> tuple[np.ndarray, np.ndarray]:
    """(n_samples, min(k, n_classes)) indices and scores of each row's top-k, as argpartition."""
    k = min(k, dense.shape[1])
    indices = np.argpartition(dense, -k, axis=1)[:, -k:]
    values = np.take_along_axis(dense, indices, axis=1)
    if sort:  # ties by ascending class: one order whatever argpartition left
        order = np.lexsort((indices, -values))
        indices = np.take_along_axis(indices, order, axis=1)
        values = np.take_along_axis(values, order, axis=1)
    return indices, values


def _select_topk(topk: TopK, k: int | None, *, sort: bool) -> tuple[np.ndarray, np.ndarray]:
    """Best min(k, topk.k) entries per row of a TopK; padding ranks below every score."""
    indices, values = topk.indices, topk.scores
    keep = topk.k if k is None else min(k, topk.k)
    if keep == topk.k and not sort:
        return indices, values
    key = values.astype(np.float64)
    key[np.isneginf(key)] = -np.finfo(np.float64).max
    key[indices < 0] = -np.inf
    if keep < topk.k:
        chosen = np.argpartition(key, -keep, axis=1)[:, -keep:]
        key = np.take_along_axis(key, chosen, axis=1)
        indices = np.take_along_axis(indices, chosen, axis=1)
        values = np.take_along_axis(values, chosen, axis=1)
    if sort:
        order = np.argsort(-key, axis=1, kind="stable")
        indices = np.take_along_axis(indices, order, axis=1)
        values = np.take_along_axis(values, order, axis=1)
    return indices, values


def canonical_labels(
    labels: LabelsLike, n_samples: int | None = None, n_classes: int | None = None
) -> Labels:
    """Validate ``labels`` and return them as canonical `Labels`.

    Parameters
    ----------
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    n_samples, n_classes : int, optional
        Shape the labels must have; by default their own (1-d ids: the largest id + 1 classes).

    Returns
    -------
    scipy.sparse.csr_matrix
        (n_samples, n_classes) with sorted indices, no duplicates, no explicit zeros, data 1;
        int8, but a sparse input keeps its dtype (no copy when already canonical).
    """
    shape = tuple(labels.shape) if sp.issparse(labels) else np.shape(labels)
    if len(shape) not in (1, 2):
        raise DataError(
            f"labels have shape {shape}; pass a (n_samples, n_classes) 0/1 matrix or "
            "(n_samples,) class ids"
        )
    if len(shape) == 2 and n_samples is None and n_classes not in (None, shape[1]):
        raise DataError(
            f"labels have {shape[1]} classes but n_classes is {n_classes}; pass labels of the "
            "same dataset"
        )
    n_samples = int(shape[0]) if n_samples is None else n_samples
    if sp.issparse(labels):
        _check_label_shape(shape, n_samples, n_classes if n_classes is not None else shape[1])
        csr = sp.csr_matrix(labels)
        if not csr.has_canonical_format:
            csr = csr.copy()
            csr.sum_duplicates()
        if (csr.data == 0).any():
            csr = csr.copy()
            csr.eliminate_zeros()
        bad = np.flatnonzero(csr.data != 1)
        if bad.size:
            row = int(np.searchsorted(csr.indptr, bad[0], side="right") - 1)
            raise DataError(
                f"labels must be 0/1 but hold {csr.data[bad[0]]} at row {row}, class "
                f"{csr.indices[bad[0]]} (duplicates are summed); pass binary labels"
            )
        return csr
    array = np.asarray(labels)
    if array.ndim == 1:
        if array.shape[0] != n_samples:
            raise DataError(
                f"labels hold {array.shape[0]} class ids but scores have {n_samples} rows; "
                "pass one label per row"
            )
        if not np.issubdtype(array.dtype, np.integer):
            raise DataError(
                f"1-d labels have dtype {array.dtype}; pass integer class ids, or a "
                "(n_samples, n_classes) 0/1 matrix"
            )
        if n_classes is None:
            if array.size == 0:
                raise DataError("labels are empty; pass at least one labelled row")
            n_classes = int(array.max()) + 1
        if array.size and (array.min() < 0 or array.max() >= n_classes):
            raise DataError(
                f"labels use class ids {array.min()}..{array.max()} but there are {n_classes} "
                f"classes (0..{n_classes - 1}); check the class count"
            )
        ones = np.ones(n_samples, dtype=np.int8)
        return sp.csr_matrix(
            (ones, array.astype(np.int32), np.arange(n_samples + 1)), shape=(n_samples, n_classes)
        )
    _check_label_shape(array.shape, n_samples, n_classes if n_classes is not None else shape[1])
    bad_mask = (array != 0) & (array != 1)
    if bad_mask.any():
        row, col = (int(i[0]) for i in np.nonzero(bad_mask))
        raise DataError(
            f"labels must be 0/1 but hold {array[row, col]} at row {row}, class {col}; "
            "pass binary labels"
        )
    return sp.csr_matrix(array != 0, dtype=np.int8)


def _check_label_shape(shape: tuple[int, ...], n_samples: int, n_classes: int) -> None:
    if tuple(shape) != (n_samples, n_classes):
        raise DataError(
            f"labels have shape {tuple(shape)} but scores have {n_samples} rows and "
            f"{n_classes} classes; pass (n_samples, n_classes) labels aligned with the scores"
        )
