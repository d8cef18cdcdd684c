"""Deterministic K-fold assignment: stratified on labels, group-aware, memory O(n_samples + nnz).

Multi-label rows are stratified on their rarest label (by frequency in the whole dataset), so
every class with at least ``n_folds`` rows is spread over the folds; rows without labels form one
more stratum. With ``groups`` (e.g. a product id shared by several images) the unit of assignment
is the group: all rows of a group land in one fold, stratified on the group's rarest label.
Every model of a zoo is trained on the same folds, so the assignment depends only on the labels,
the groups and ``seed``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from webly.errors import ConfigError


def rarest_label(labels: sp.csr_matrix) -> np.ndarray:
    """``(n_samples,)`` int64: each row's least frequent label, ``n_classes`` for an empty row.

    Ties between equally frequent labels go to the smaller class id.
    """
    labels = sp.csr_matrix(labels)
    n_rows, n_classes = labels.shape
    freq = np.bincount(labels.indices, minlength=n_classes).astype(np.int64)
    key = freq[labels.indices] * (n_classes + 1) + labels.indices
    out = np.full(n_rows, n_classes, dtype=np.int64)
    nonempty = np.flatnonzero(np.diff(labels.indptr) > 0)
    if nonempty.size:
        out[nonempty] = np.minimum.reduceat(key, labels.indptr[nonempty]) % (n_classes + 1)
    return out


def assign_folds(
    labels: sp.csr_matrix,
    n_folds: int = 5,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Assign each row to one of ``n_folds`` folds.

    Parameters
    ----------
    labels : (n_samples, n_classes) CSR matrix of the given labels.
    n_folds : number of folds, 2..127.
    seed : the only source of randomness (ordering within each stratum).
    groups : optional (n_samples,) array of group ids; rows sharing one share a fold.

    Returns
    -------
    (n_samples,) int8 array of fold numbers in ``[0, n_folds)``.
    """
    n_rows = labels.shape[0]
    if not 2 <= n_folds <= 127:
        raise ConfigError(f"n_folds is {n_folds}; use 2..127 (--folds)")
    if n_rows < n_folds:
        raise ConfigError(f"{n_rows} rows cannot be split into {n_folds} folds; use fewer folds")
    stratum = rarest_label(labels)
    if groups is None:
        unit_of_row = np.arange(n_rows)
        unit_stratum, unit_size = stratum, np.ones(n_rows, dtype=np.int64)
    else:
        _, unit_of_row = np.unique(np.asarray(groups), return_inverse=True)
        n_units = int(unit_of_row.max()) + 1
        freq = np.bincount(stratum, minlength=labels.shape[1] + 1)
        # A group's stratum is its rarest row stratum (empty rows rank last).
        key = np.where(stratum == labels.shape[1], np.iinfo(np.int64).max // 4, freq[stratum])
        unit_key = np.full(n_units, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(unit_key, unit_of_row, key * (labels.shape[1] + 1) + stratum)
        unit_stratum = unit_key % (labels.shape[1] + 1)
        unit_size = np.bincount(unit_of_row, minlength=n_units)

    rng = np.random.default_rng(seed)
    n_units = unit_stratum.size
    stratum_size = np.bincount(unit_stratum)
    # Rarest strata first so their few units are spread before the folds fill up; random order
    # within a stratum.
    order = np.lexsort((rng.permutation(n_units), unit_stratum, stratum_size[unit_stratum]))
    unit_fold = np.empty(n_units, dtype=np.int8)
    load = np.zeros(n_folds, dtype=np.int64)
    ordered_strata = unit_stratum[order]
    bounds = np.flatnonzero(np.diff(ordered_strata)) + 1
    for part in np.split(order, bounds):
        start = int(np.argmin(load))
        folds = (start + np.arange(part.size)) % n_folds
        unit_fold[part] = folds
        load += np.bincount(folds, weights=unit_size[part], minlength=n_folds).astype(np.int64)
    return unit_fold[unit_of_row]
