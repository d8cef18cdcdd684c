"""oversample_top and balanced_subset: counts, determinism, preference for top-ranked rows,
multi-label, and feeding the rows to a store view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tests.longtail.conftest import write_store
from webly.errors import ConfigError, DataError
from webly.longtail import balanced_subset, oversample_top

# class 0: rows 0..19, class 1: rows 20..29, class 2: rows 30..32, class 3: none
IDS = np.array([0] * 20 + [1] * 10 + [2] * 3)
SCORES = np.random.default_rng(0).permutation(IDS.size) / IDS.size  # distinct confidences


def _class_totals(extra: np.ndarray) -> np.ndarray:
    return np.bincount(IDS, minlength=4) + np.bincount(IDS[extra], minlength=4)


def test_small_classes_reach_the_target() -> None:
    extra = oversample_top(IDS, SCORES, target=15)
    assert extra.dtype == np.int64
    np.testing.assert_array_equal(_class_totals(extra), [20, 15, 15, 0])


def test_max_factor_caps_growth() -> None:
    extra = oversample_top(IDS, SCORES, target=15, max_factor=2.0)
    np.testing.assert_array_equal(_class_totals(extra), [20, 15, 6, 0])


def test_only_top_ranked_rows_are_repeated() -> None:
    extra = oversample_top(IDS, SCORES, target=13, top_fraction=0.5)
    class1 = np.arange(20, 30)
    best5 = class1[np.argsort(-SCORES[class1])[:5]]
    repeated = extra[IDS[extra] == 1]
    assert repeated.size == 3 and set(repeated) <= set(best5)
    assert np.unique(repeated).size == 3  # a partial round repeats each pool row at most once
    # class 2 (3 rows, pool of 2) needs 10 more: 5 full rounds over its best two rows
    class2 = np.arange(30, 33)
    best2 = class2[np.argsort(-SCORES[class2])[:2]]
    counts = np.bincount(extra[IDS[extra] == 2], minlength=IDS.size)
    assert counts[best2].tolist() == [5, 5] and counts.sum() == 10


def test_same_seed_same_rows_other_seed_may_differ() -> None:
    a = oversample_top(IDS, SCORES, target=13, seed=1)
    b = oversample_top(IDS, SCORES, target=13, seed=1)
    np.testing.assert_array_equal(a, b)
    others = [oversample_top(IDS, SCORES, target=13, seed=s) for s in range(2, 12)]
    assert any(not np.array_equal(a, o) for o in others)


def test_per_class_scores_and_multilabel() -> None:
    labels = sp.csr_matrix(np.array([[1, 1], [1, 0], [1, 0], [0, 1], [1, 0]]))
    scores = np.array([[0.9, 0.1], [0.5, 0.0], [0.4, 0.0], [0.0, 0.8], [0.3, 0.0]])
    extra = oversample_top(labels, scores, target=3, top_fraction=0.5)
    np.testing.assert_array_equal(extra, [3])  # class 1's best row by its own score


def test_extra_rows_feed_a_store_view(tmp_path: Path) -> None:
    x = np.arange(IDS.size, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    ds = write_store(tmp_path / "s", [[int(c)] for c in IDS], x, "multiclass")
    extra = oversample_top(ds.labels, SCORES, target=15)
    rows = np.concatenate([np.arange(len(ds)), extra])
    view = ds.subset(rows)  # repeated rows are allowed
    assert len(view) == rows.size
    np.testing.assert_array_equal(view.features(np.arange(len(view)), ("x",))[:, 0], rows)
    np.testing.assert_array_equal(view.labels.indices, IDS[rows])


def test_balanced_subset_takes_top_n_per_class() -> None:
    rows = balanced_subset(IDS, SCORES, per_class=4)
    assert rows.dtype == np.int64 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(np.bincount(IDS[rows], minlength=4), [4, 4, 3, 0])
    for c in (0, 1):
        members = np.flatnonzero(np.equal(IDS, c))
        best = members[np.argsort(-SCORES[members])[:4]]
        assert set(rows[IDS[rows] == c]) == set(best)


def test_balanced_subset_multilabel_has_no_duplicates() -> None:
    labels = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 0, 0]]))
    rows = balanced_subset(labels, np.array([0.9, 0.8, 0.1, 0.2, 0.5]), per_class=2)
    np.testing.assert_array_equal(rows, [0, 1, 2, 3])  # row 0 is top of classes 0 and 1
    assert np.all(np.asarray(labels[rows].sum(axis=0)).ravel() >= 2)


def test_balanced_subset_ties_go_to_the_lower_row() -> None:
    np.testing.assert_array_equal(
        balanced_subset(IDS, np.zeros(IDS.size), per_class=2), [0, 1, 20, 21, 30, 31]
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"target": 0}, ConfigError, "target is 0"),
        ({"target": 2.5}, ConfigError, "target is 2.5"),
        ({"target": 5, "top_fraction": 0.0}, ConfigError, "top_fraction is 0.0"),
        ({"target": 5, "max_factor": 0.5}, ConfigError, "max_factor is 0.5"),
        ({"target": 5, "scores": np.ones(5)}, DataError, r"scores have shape \(5,\)"),
        ({"target": 5, "scores": np.full(IDS.size, np.nan)}, DataError, "scores hold nan"),
        ({"target": 5, "scores": np.array(["a"] * IDS.size)}, DataError, "dtype <U1"),
    ],
)
def test_oversample_errors_one_line(kwargs: dict, error: type, match: str) -> None:
    kwargs = {"scores": SCORES, **kwargs}
    with pytest.raises(error, match=match) as info:
        oversample_top(IDS, **kwargs)
    assert "\n" not in str(info.value)


def test_balanced_subset_errors_one_line() -> None:
    with pytest.raises(ConfigError, match="per_class is 0") as info:
        balanced_subset(IDS, SCORES, per_class=0)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match=r"scores have shape \(33, 5\)"):
        balanced_subset(IDS, np.ones((IDS.size, 5)))
    with pytest.raises(DataError, match="labels have shape"):
        balanced_subset(np.zeros((2, 2, 2)), SCORES)
