"""Group-wise selection and total-preserving rounding."""

from __future__ import annotations

import numpy as np

from webly.clean.quota import round_preserving_totals, top_per_group


def test_top_per_group_takes_the_largest_keys_of_each_group() -> None:
    group = np.array([1, 0, 1, 1, 0, 2])
    key = np.array([0.5, 0.1, 0.9, 0.5, 0.3, 0.7])
    chosen = top_per_group(group, key, np.array([5, 2, 1]))
    # group 0: all (quota above its size); group 1: 0.9 and the earlier 0.5; group 2: one
    np.testing.assert_array_equal(chosen, [True, True, True, False, True, True])
    assert not top_per_group(group, key, np.zeros(3, np.int64)).any()
    assert top_per_group(group[:0], key[:0], np.ones(3, np.int64)).size == 0


def test_rounding_keeps_each_rows_total() -> None:
    rows = np.array([0, 0, 0, 1, 1])
    values = np.array([0.4, 0.4, 0.2, 2.5, 0.5])
    rounded = round_preserving_totals(rows, values, 2)
    np.testing.assert_array_equal(rounded, [1, 0, 0, 3, 0])  # remainder ties: the earlier
    np.testing.assert_array_equal(np.bincount(rows, weights=rounded), [1, 3])
