"""Blends: rank scores by hand, weight search and Caruana selection find the good member and
beat the mean, selection with replacement repeats a member, the fitted blend round-trips as JSON
and applies to test rows of real prediction stores, and inputs that do not line up are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import webly.ensemble.blend as blend_module
from tests.ensemble.conftest import multilabel_members
from webly.core import TopK
from webly.ensemble.blend import (
    METHODS,
    Blend,
    OofScorer,
    fit_blend,
    greedy_selection,
    mean_blend,
    rank_mean_blend,
    rank_scores,
    search_weights,
)
from webly.ensemble.members import open_members
from webly.errors import ConfigError, DataError
from webly.metrics.evaluate import task_metric
from webly.metrics.ranking import gap_at_k
from webly.predictions import PredictionWriter, merge_topk


def _dense(topk: TopK, n_classes: int) -> np.ndarray:
    out = np.zeros((topk.n_samples, n_classes))
    r, c = np.nonzero(topk.indices >= 0)
    out[r, topk.indices[r, c]] = topk.scores[r, c]
    return out


def test_rank_mean_by_hand() -> None:
    first = TopK(np.array([[0, 1, 2], [4, 2, -1]]), np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0]]))
    second = TopK(np.array([[1, 3], [2, 0]]), np.array([[0.9, 0.1], [0.6, 0.7]]))
    # first, k=3: row 0 ranks 0, 1, 2 -> 1, 2/3, 1/3; row 1 ties share rank 0 -> 1, 1, padding
    np.testing.assert_allclose(
        _dense(rank_scores(first), 5), [[1, 2 / 3, 1 / 3, 0, 0], [0, 0, 1, 0, 1]], rtol=1e-6
    )
    # second, k=2 (row 1 unsorted): class 0 best -> 1, class 2 -> 1/2
    blended = rank_mean_blend([first, second], k=5)
    expected = [[1 / 2, 5 / 6, 1 / 6, 1 / 4, 0], [1 / 2, 0, 3 / 4, 0, 1 / 2]]
    np.testing.assert_allclose(_dense(blended, 5), expected, rtol=1e-6)
    assert rank_mean_blend([first, second]).indices[0].tolist() == [1, 0, 3]  # k = largest k_m
    weighted = rank_mean_blend([first, second], weights=[4, 1], k=1)
    assert weighted.indices[:, 0].tolist() == [0, 2]  # row 0: (4 * 1 + 0) / 5 > (4 * 2/3 + 1) / 5


def test_weight_search_finds_the_good_member_and_beats_the_mean() -> None:
    labels, members = multilabel_members([0.0, 4.0, 0.0, 0.2], seed=1)
    found = search_weights(members, labels, "multilabel", n_trials=40)
    assert found.weights[1] > 0.9 and found.weights.sum() == pytest.approx(1)
    assert found.metric > found.equal_metric + 0.05
    # the reported metrics are GAP@20 of the weighted and of the plain mean
    weighted = gap_at_k(mean_blend(members, found.weights, k=20), labels)
    assert found.metric == pytest.approx(weighted, abs=1e-5)
    assert found.equal_metric == pytest.approx(gap_at_k(mean_blend(members, k=20), labels))
    again = search_weights(members, labels, "multilabel", n_trials=40)
    np.testing.assert_array_equal(found.weights, again.weights)  # seeded


def test_greedy_selection_finds_the_good_member() -> None:
    labels, members = multilabel_members([0.0, 0.0, 4.0, 0.2], seed=2)
    chosen = greedy_selection(members, labels, "multilabel")
    assert chosen.picks[0] == 2 and chosen.weights[2] > 0.9
    assert chosen.metric > chosen.equal_metric + 0.05
    weighted = gap_at_k(mean_blend(members, chosen.weights, k=20), labels)
    assert chosen.metric == pytest.approx(weighted, abs=1e-5)


def _two_to_one() -> tuple[np.ndarray, list[TopK]]:
    """Two classes; member A alone is right on 60 of 100 rows, A + B on 70, 2A + B on 90."""
    # (P(correct class) by A, by B, rows): A right on X, Z; B on Y, W; A+B on X, Y, W; 2A+B on
    # X, Y, Z; A+2B on Y, W
    kinds = [(0.9, 0.2, 30), (0.4, 1.0, 30), (0.8, 0.1, 30), (0.3, 0.8, 10)]
    a = np.concatenate([np.full(n, pa) for pa, _, n in kinds])
    b = np.concatenate([np.full(n, pb) for _, pb, n in kinds])
    members = [TopK.from_dense(np.stack([p, 1 - p], axis=1).astype(np.float32), 2) for p in (a, b)]
    return np.zeros(100, dtype=np.int64), members


def test_caruana_with_replacement_picks_a_member_twice() -> None:
    labels, members = _two_to_one()
    chosen = greedy_selection(members, labels, "multiclass", patience=2)
    assert chosen.picks == (0, 1, 0)
    np.testing.assert_allclose(chosen.weights, [2 / 3, 1 / 3])
    assert chosen.metric == pytest.approx(0.9) and chosen.equal_metric == pytest.approx(0.7)
    assert greedy_selection(members, labels, "multiclass", max_steps=1).picks == (0, 1)
    # starting from both members
    assert greedy_selection(members, labels, "multiclass", init_best=2).picks[:3] == (0, 1, 0)


def test_scorer_without_alignment_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    labels, members = multilabel_members([1.0, 2.0, 0.5], seed=3)
    weights = [0.2, 0.5, 0.3]
    aligned = OofScorer(members, labels, "multilabel")
    monkeypatch.setattr(blend_module, "_ALIGNED_BYTES", 0)
    merged = OofScorer(members, labels, "multilabel")
    assert aligned.aligned and not merged.aligned
    # the same up to float32 rounding, which may swap near-equal scores
    expected = gap_at_k(merge_topk(members, weights, k=20), labels)
    assert aligned.weighted(weights) == pytest.approx(expected, abs=1e-5)
    assert merged.weighted(weights) == pytest.approx(expected, abs=1e-5)
    running = [merged.add(merged.add(merged.add(blend_module.Running(), 1), 1), 0)]
    running.append(aligned.add(aligned.add(aligned.add(blend_module.Running(), 1), 1), 0))
    # a running sum of TopKs keeps each row's best k classes: close, not always equal
    expected = gap_at_k(merge_topk(members, [1, 2, 0], k=20), labels)
    assert [s.score(r) for s, r in zip((merged, aligned), running, strict=True)] == pytest.approx(
        [expected, expected], abs=1e-3
    )
    sample = OofScorer(members, labels, "multilabel", rows=50, seed=4)
    assert sample.labels.shape == (50, 30)


def test_fit_blend_every_method_round_trips_as_json() -> None:
    labels, members = multilabel_members([0.5, 3.0, 1.0], seed=5)
    names = ["a", "b", "c"]
    for method in ("mean", "rank_mean", "weighted", "greedy"):
        blend = fit_blend(method, members, labels, "multilabel", names)
        assert blend.oof_metric == pytest.approx(gap_at_k(blend.apply(members), labels))
        loaded = Blend.from_json(json.loads(json.dumps(blend.to_json())))
        assert loaded == blend
    weighted = fit_blend("weighted", members, labels, "multilabel", names, n_trials=10, seed=1)
    mean = fit_blend("mean", members, labels, "multilabel", names)
    assert weighted.oof_metric is not None and mean.oof_metric is not None
    assert weighted.oof_metric > mean.oof_metric
    np.testing.assert_allclose(mean.weights, [1 / 3] * 3)


def test_fit_blend_and_blend_errors() -> None:
    labels, members = multilabel_members([0.5, 1.0], seed=6)
    with pytest.raises(ConfigError, match="unknown blend method 'best'; known: mean, rank_mean"):
        fit_blend("best", members, labels, "multilabel", ["a", "b"])
    assert set(METHODS) == {"mean", "rank_mean", "weighted", "greedy", "vote", "vote_logits"}
    with pytest.raises(ConfigError, match=r"takes options \['n_trials', 'seed', 'rows'\]"):
        fit_blend("weighted", members, labels, "multilabel", ["a", "b"], n_steps=3)
    with pytest.raises(ConfigError, match="takes options none, got \\['seed'\\]"):
        fit_blend("mean", members, labels, "multilabel", ["a", "b"], seed=3)
    with pytest.raises(ConfigError, match="task is 'ranking'"):
        fit_blend("mean", members, labels, "ranking", ["a", "b"])
    with pytest.raises(ConfigError, match="needs a multiclass task, got 'multilabel'"):
        fit_blend("vote", members, labels, "multilabel", ["a", "b"])
    blend = Blend("weighted", ("a", "b"), (3.0, 1.0))
    with pytest.raises(ConfigError, match="3 predictions given to a blend of 2 members"):
        blend.apply([*members, members[0]])
    with pytest.raises(ConfigError, match=r"weights \[1.0, -1.0\] given for 2 members"):
        Blend("weighted", ("a", "b"), (1.0, -1.0))
    with pytest.raises(ConfigError, match=r"weights \[1.0\] given for 2 members"):
        Blend("weighted", ("a", "b"), (1.0,))
    with pytest.raises(ConfigError, match="'mean' takes equal weights"):
        Blend("mean", ("a", "b"), (0.9, 0.1))
    with pytest.raises(ConfigError, match="a blend is a dict with keys"):
        Blend.from_json({"method": "mean", "names": ["a"]})
    with pytest.raises(ConfigError, match="weights"):
        mean_blend(members, weights=[1.0, 2.0, 3.0])


def test_members_and_labels_must_line_up() -> None:
    labels, members = multilabel_members([0.5, 1.0], seed=7)
    short = TopK(members[1].indices[:-1], members[1].scores[:-1])
    with pytest.raises(DataError, match=r"different row counts \(a: 300, b: 299\)"):
        fit_blend("mean", [members[0], short], labels, "multilabel", ["a", "b"])
    with pytest.raises(DataError, match="labels have 299 rows but the members predict 300"):
        search_weights(members, labels[:-1], "multilabel")
    with pytest.raises(
        DataError, match=r"member a predicts class \d+ but the labels have 20 classes"
    ):
        fit_blend("mean", [members[0], members[1]], labels[:, :20], "multilabel", ["a", "b"])
    with pytest.raises(ConfigError, match="init_best=3"):
        greedy_selection(members, labels, "multilabel", init_best=3)


def test_fitted_on_stores_and_applied_to_test(tmp_path: Path) -> None:
    labels, members = multilabel_members([0.3, 3.0, 1.0], n=400, seed=8)
    paths = {}
    for name, member in zip(("x", "y", "z"), members, strict=True):
        paths[name] = tmp_path / name
        with PredictionWriter(
            paths[name], n_rows={"oof": 300, "test": 100}, n_classes=30, model={}, k=10
        ) as writer:
            writer.write("oof", np.arange(300), TopK(member.indices[:300], member.scores[:300]))
            writer.write("test", np.arange(100), TopK(member.indices[300:], member.scores[300:]))
            writer.commit()
    stores = open_members(paths, ("oof", "test"))
    blend = fit_blend("greedy", stores.topk("oof"), labels[:300], "multilabel", stores.names)
    test = blend.apply(stores.topk("test"))
    mean_test = mean_blend(stores.topk("test"))
    assert task_metric(test, labels[300:], "multilabel") > task_metric(
        mean_test, labels[300:], "multilabel"
    )
