"""Group-wise selection: the best ``quota[g]`` entries of each group, and rounding to quotas.

Confident learning removes, per class or per (given, true) pair, an estimated number of rows:
the ones that rank highest. Both steps are one sort of the candidates, not a loop over groups.
"""

from __future__ import annotations

import numpy as np


def top_per_group(group: np.ndarray, key: np.ndarray, quota: np.ndarray) -> np.ndarray:
    """Mark, in each group, the ``quota[g]`` entries with the largest ``key``.

    Parameters
    ----------
    group : (m,) int
        Group of each entry, in 0..n_groups-1.
    key : (m,) float
        Ranking key, larger first; ties go to the earlier entry.
    quota : (n_groups,) int
        Entries to take from each group (>= 0; more than the group holds takes all).

    Returns
    -------
    (m,) bool
    """
    chosen = np.zeros(group.size, dtype=bool)
    if group.size == 0:
        return chosen
    order = np.lexsort((-np.asarray(key, dtype=np.float64), group))
    ordered = group[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.r_[starts, ordered.size])
    rank = np.arange(ordered.size) - np.repeat(starts, sizes)
    chosen[order] = rank < quota[ordered]
    return chosen


def round_preserving_totals(rows: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    """Round non-negative ``values`` to integers so that each row's sum is its rounded total.

    Largest-remainder rounding: every value is rounded down, then each row's shortfall goes,
    one each, to its values with the largest fractional parts (ties to the earlier entry).

    Parameters
    ----------
    rows : (m,) int
        Row of each value, in 0..n_rows-1.
    values : (m,) float, >= 0
    n_rows : int

    Returns
    -------
    (m,) int64
    """
    floors = np.floor(values)
    totals = np.bincount(rows, weights=values, minlength=n_rows)
    shortfall = np.rint(totals) - np.bincount(rows, weights=floors, minlength=n_rows)
    bump = top_per_group(rows, values - floors, np.maximum(shortfall, 0).astype(np.int64))
    return (floors + bump).astype(np.int64)
