"""Group aggregation: belief-based outlier dropping by hand, mean against numpy, block edges."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from webly.core import TopK
from webly.ensemble import aggregate
from webly.ensemble.aggregate import aggregate_groups, group_index, group_labels
from webly.errors import ConfigError, DataError


def _dense(topk: TopK, n_classes: int) -> np.ndarray:
    out = np.zeros((topk.n_samples, n_classes))
    rows, slots = np.nonzero(topk.indices >= 0)
    out[rows, topk.indices[rows, slots]] = topk.scores[rows, slots]
    return out


def _random_case(seed: int, n_groups: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of 1–7 rows a group, the groups' rows shuffled, string ids."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 8, size=n_groups)
    groups = np.repeat([f"p{g}" for g in rng.permutation(n_groups)], sizes)
    probs = rng.dirichlet(np.full(n_classes, 0.3), size=groups.size).astype(np.float32)
    order = rng.permutation(groups.size)
    return probs[order], groups[order]


def _numpy_mean(probs: np.ndarray, groups: np.ndarray) -> tuple[list[str], np.ndarray]:
    ids = list(dict.fromkeys(groups.tolist()))
    return ids, np.stack([probs[groups == g].mean(axis=0) for g in ids])


def test_belief_drops_the_outlier_image() -> None:
    # Three photos of the product agree on class 0; the fourth shows something of class 1.
    probs = np.array([[0.5, 0.3, 0.2]] * 3 + [[0.0, 1.0, 0.0]], dtype=np.float32)
    groups = np.array(["p"] * 4)
    _, mean = aggregate_groups(probs, groups, "mean")
    _, belief = aggregate_groups(probs, groups, "belief")
    assert mean.indices[0].tolist() == [1, 0, 2]
    np.testing.assert_allclose(mean.scores[0], [0.475, 0.375, 0.15], rtol=1e-6)
    # Each class: the odd photo is outside the others' zero-width interval and is dropped;
    # each agreeing photo lies within 1.96 std of the other three (std > 0 with the odd one).
    assert belief.indices[0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(belief.scores[0], [0.5, 0.3, 0.2], rtol=1e-6)


def test_belief_leave_one_out_interval_by_hand() -> None:
    # class 0 = [0, .6, 1]: row 0 vs others {.6, 1}: mean .8, sample std .283, 1.96 std = .554
    # < .8, dropped; row 1 vs {0, 1}: |.6 - .5| < 1.386, kept; row 2 vs {0, .6}: mean .3,
    # 1.96 std = .832 >= .7, kept: (.6 + 1) / 2 = .8. class 1 = [1, .4, 0]: row 0 vs {.4, 0}:
    # |1 - .2| > .554, dropped; rows 1 and 2 kept: (.4 + 0) / 2 = .2.
    probs = np.array([[0.0, 1.0], [0.6, 0.4], [1.0, 0.0]], dtype=np.float32)
    _, belief = aggregate_groups(probs, np.zeros(3, dtype=np.int64), "belief")
    np.testing.assert_allclose(_dense(belief, 2)[0], [0.8, 0.2], rtol=1e-6)
    # a narrower interval also drops row 2 of each class: |1 - .3| and |0 - .7| > 1.5 * .424
    _, narrow = aggregate_groups(probs, np.zeros(3, dtype=np.int64), "belief", z=1.5)
    np.testing.assert_allclose(_dense(narrow, 2)[0], [0.6, 0.4], rtol=1e-6)


def test_absent_classes_count_zero_and_a_lone_proposal_is_dropped() -> None:
    # Top-2 of three rows; class 3 is proposed by row 2 only: vs the others' {0, 0} it is
    # dropped, and the two zeros are kept (0 lies within the interval of {0, .9}).
    topk = TopK(np.array([[0, 1], [0, 1], [3, 0]]), np.array([[0.6, 0.3], [0.7, 0.2], [0.9, 0.1]]))
    _, mean = aggregate_groups(topk, np.zeros(3, dtype=np.int64), "mean", k=4)
    _, belief = aggregate_groups(topk, np.zeros(3, dtype=np.int64), "belief", k=4)
    np.testing.assert_allclose(_dense(mean, 4)[0], [1.4 / 3, 0.5 / 3, 0, 0.3], rtol=1e-6)
    assert _dense(belief, 4)[0, 3] == 0.0
    assert belief.indices[0, 0] == 0 and (belief.indices[0] >= 0).sum() == 3


@pytest.mark.parametrize("k", [None, 3])
def test_mean_equals_numpy_over_shuffled_groups(k: int | None) -> None:
    probs, groups = _random_case(0, 60, 8)
    ids, expected = _numpy_mean(probs, groups)
    got_ids, got = aggregate_groups(probs, groups, "mean", k=k)
    assert got_ids.tolist() == ids  # order of first appearance
    dense = _dense(got, 8)
    if k is None:
        np.testing.assert_allclose(dense, expected, rtol=1e-5, atol=1e-7)
    else:
        top = np.sort(expected, axis=1)[:, ::-1][:, :k]
        np.testing.assert_allclose(got.scores, top, rtol=1e-5, atol=1e-7)
        assert np.all(np.diff(got.scores, axis=1) <= 0)  # best first


def test_sparse_input_counts_missing_classes_as_zero() -> None:
    probs, groups = _random_case(1, 40, 12)
    topk = TopK.from_dense(probs, 4)
    _, expected = _numpy_mean(_dense(topk, 12), groups)
    _, got = aggregate_groups(topk, groups, "mean", k=12)
    np.testing.assert_allclose(_dense(got, 12), expected, rtol=1e-5, atol=1e-7)


def test_groups_of_one_and_two_rows() -> None:
    probs, groups = _random_case(2, 50, 6)
    small = np.isin(groups, [g for g in set(groups) if (groups == g).sum() <= 2])
    probs, groups = probs[small], groups[small]
    ids, mean = aggregate_groups(probs, groups, "mean")
    _, belief = aggregate_groups(probs, groups, "belief")
    np.testing.assert_allclose(_dense(belief, 6), _dense(mean, 6), rtol=1e-6)
    _, first = aggregate_groups(probs, groups, "first")
    first_rows = [int(np.flatnonzero(groups == g)[0]) for g in ids]
    np.testing.assert_allclose(_dense(first, 6), probs[first_rows], rtol=1e-6)
    single = [g for g in ids if (groups == g).sum() == 1]
    assert single  # groups of 1 are their row
    for g in single:
        at = ids.tolist().index(g)
        np.testing.assert_allclose(_dense(belief, 6)[at], probs[groups == g][0], rtol=1e-6)


def test_blocks_split_at_group_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    probs, groups = _random_case(3, 80, 7)
    groups[:40] = "big"  # one group wider than a block
    reference = {m: aggregate_groups(probs, groups, m) for m in ("mean", "belief")}
    monkeypatch.setattr(aggregate, "BLOCK_ROWS", 9)
    for method, (ids, whole) in reference.items():
        got_ids, blocked = aggregate_groups(probs, groups, method)  # type: ignore[arg-type]
        assert got_ids.tolist() == ids.tolist()
        np.testing.assert_array_equal(blocked.indices, whole.indices)
        np.testing.assert_array_equal(blocked.scores, whole.scores)


def test_group_labels_union_or_first_row() -> None:
    labels = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]))
    groups = np.array([7, 3, 7, 3])
    union = group_labels(labels, groups, "multilabel")
    assert union.toarray().tolist() == [[1, 0, 1], [1, 1, 0]]
    first = group_labels(labels, groups, "multiclass")
    assert first.toarray().tolist() == [[1, 0, 0], [0, 1, 0]]
    assert aggregate_groups(np.eye(3)[[0, 1, 2, 0]], groups)[0].tolist() == [7, 3]
    ids, group_of = group_index(groups)
    assert ids.tolist() == [7, 3] and group_of.tolist() == [0, 1, 0, 1]


def test_errors_name_the_problem() -> None:
    probs = np.full((3, 2), 0.5)
    with pytest.raises(ConfigError, match="method 'median' is unknown"):
        aggregate_groups(probs, np.zeros(3), "median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="z is 0"):
        aggregate_groups(probs, np.zeros(3), "belief", z=0)
    with pytest.raises(ConfigError, match="k is 0"):
        aggregate_groups(probs, np.zeros(3), k=0)
    with pytest.raises(DataError, match=r"groups have shape \(2,\); pass one group id per row"):
        aggregate_groups(probs, np.zeros(2))
    with pytest.raises(ConfigError, match="no group ids given"):
        aggregate_groups(probs, None)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="rows have no group id"):
        aggregate_groups(probs, np.array(["a", None, "b"], dtype=object))
    with pytest.raises(DataError, match="not all of one type"):
        aggregate_groups(probs, np.array(["a", 1, "b"], dtype=object))
    with pytest.raises(DataError, match="scores have shape"):
        aggregate_groups(np.ones(3), np.zeros(3))
    with pytest.raises(ConfigError, match="task is 'binary'"):
        group_labels(sp.csr_matrix(probs), np.zeros(3), "binary")  # type: ignore[arg-type]


def test_no_rows_gives_no_groups() -> None:
    ids, out = aggregate_groups(TopK(np.zeros((0, 3), np.int32), np.zeros((0, 3))), np.array([]))
    assert ids.size == 0 and out.indices.shape == (0, 3)
