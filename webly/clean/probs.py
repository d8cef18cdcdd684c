"""Out-of-fold probabilities as padded rows of (class, probability): the form every method reads.

A `Probs` holds, for each row, ``width`` candidate classes and their probabilities. Dense
(n_samples, n_classes) input keeps its array and gets a broadcast row of class ids (no copy);
a `TopK` keeps its (n_samples, k) class ids and gets probability 0 at its padding. A class a row
does not list has probability 0, so with top-k input every method's time and memory grow with
n_samples * k + nnz(labels) (times a log for sorts): nothing of size n_samples * n_classes is
built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from webly.metrics.ranking import hit_mask

_LOOKUP_BLOCK = 1 << 16  # queries compared at a time in `probs_at`: (block, width) bools


class Entries(NamedTuple):
    """Sparse (row, class) entries with a probability each: (m,) int64, (m,) int64, (m,) float."""

    rows: np.ndarray
    cols: np.ndarray
    prob: np.ndarray


@dataclass(frozen=True, eq=False)
class Probs:
    """Each row's candidate classes and their probabilities.

    Attributes
    ----------
    indices : (n_samples, width) int32
        Class ids, distinct within a row, -1 = padding; for dense input a read-only broadcast of
        ``arange(n_classes)``.
    values : (n_samples, width) float32
        Probability of each class in [0, 1]; 0 at padding.
    n_classes : int
    dense : bool
        True when ``indices`` is the broadcast ``arange(n_classes)`` of dense input.
    """

    indices: np.ndarray
    values: np.ndarray
    n_classes: int
    dense: bool

    @property
    def n_samples(self) -> int:
        return int(self.values.shape[0])

    def top1(self) -> tuple[np.ndarray, np.ndarray]:
        """(n_samples,) int32 best class (-1 where a row gives no class probability > 0) and
        (n_samples,) float32 its probability; ties go to the first listed class."""
        rows = np.arange(self.n_samples)
        slot = np.argmax(self.values, axis=1)
        prob = self.values[rows, slot]
        best = np.where(prob > 0, self.indices[rows, slot], -1).astype(np.int32)
        return best, prob


def dense_probs(values: np.ndarray) -> Probs:
    """Wrap checked (n_samples, n_classes) float32 probabilities."""
    n_samples, n_classes = values.shape
    indices = np.broadcast_to(np.arange(n_classes, dtype=np.int32), (n_samples, n_classes))
    return Probs(indices, values, int(n_classes), dense=True)


def label_hits(probs: Probs, labels: sp.csr_matrix) -> np.ndarray:
    """(n_samples, width) bool: True where a listed class is one of the row's given labels."""
    return hit_mask(probs.indices, labels)


def label_rows(labels: sp.csr_matrix) -> np.ndarray:
    """(nnz,) int32 row of each stored label, in CSR order."""
    return np.repeat(np.arange(labels.shape[0], dtype=np.int32), np.diff(labels.indptr))


def label_probs(probs: Probs, labels: sp.csr_matrix, hits: np.ndarray) -> np.ndarray:
    """(nnz,) float32 probability of each given label, in CSR order; 0 where it is not listed.

    Parameters
    ----------
    probs : Probs of (n_samples, width)
    labels : (n_samples, n_classes) canonical 0/1 csr_matrix (sorted indices)
    hits : (n_samples, width) bool, `label_hits` of the same two
    """
    out = np.zeros(labels.nnz, dtype=np.float32)
    rows, slots = np.nonzero(hits)
    if rows.size:
        n_classes = np.int64(labels.shape[1])
        label_codes = label_rows(labels).astype(np.int64) * n_classes + labels.indices
        hit_codes = rows.astype(np.int64) * n_classes + probs.indices[rows, slots]
        out[np.searchsorted(label_codes, hit_codes)] = probs.values[rows, slots]
    return out


def other_mask(probs: Probs, hits: np.ndarray) -> np.ndarray:
    """(n_samples, width) bool: listed classes that are not given labels, probability > 0."""
    return ~hits & (probs.values > 0)


def listed_entries(probs: Probs, mask: np.ndarray) -> Entries:
    """The (row, class, probability) of each listed entry where ``mask`` (n_samples, width)
    is True, row-major."""
    rows, slots = np.nonzero(mask)
    return Entries(rows, probs.indices[rows, slots].astype(np.int64), probs.values[rows, slots])


def probs_at(probs: Probs, rows: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(m,) float32 probability of ``classes[i]`` in row ``rows[i]`` (0 where not listed)."""
    if probs.dense:
        return np.asarray(probs.values[rows, classes], dtype=np.float32)
    out = np.zeros(rows.size, dtype=np.float32)
    for start in range(0, rows.size, _LOOKUP_BLOCK):
        block = slice(start, start + _LOOKUP_BLOCK)
        match = probs.indices[rows[block]] == classes[block, None]
        out[block] = np.where(match, probs.values[rows[block]], 0).sum(axis=1)
    return out


def sorted_row_max(rows: np.ndarray, values: np.ndarray, n_samples: int) -> np.ndarray:
    """(n_samples,) float64 largest value per row; 0 for a row without values.

    Parameters
    ----------
    rows : (m,) int, ascending
    values : (m,) float, >= 0
    n_samples : int
    """
    out = np.zeros(n_samples, dtype=np.float64)
    if rows.size:
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        out[rows[starts]] = np.maximum.reduceat(values, starts)
    return out


def find_codes(sorted_codes: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``codes`` is in ascending ``sorted_codes``: (m,) int64 positions (valid
    only where found) and (m,) bool found."""
    if sorted_codes.size == 0:
        return np.zeros(codes.size, dtype=np.int64), np.zeros(codes.size, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_codes, codes), sorted_codes.size - 1)
    return at, sorted_codes[at] == codes
