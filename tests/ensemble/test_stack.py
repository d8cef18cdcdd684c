"""The stacker: beats the mean blend where members are good on different classes, out-of-fold
by the fold model that did not see a row, deterministic, saved and loaded exactly, clear errors."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from rich.console import Console

from webly import progress
from webly.core import Task, TopK
from webly.ensemble.fit import fit_ensemble, load_entry
from webly.ensemble.members import Members, open_members
from webly.ensemble.stack import Stacker, StackerConfig, feature_names, fit_stacker
from webly.errors import ConfigError, DataError
from webly.metrics.evaluate import task_metric
from webly.predictions import Predictions, PredictionWriter, merge_topk

N_TRAIN, N_TEST, N_CLASSES, K = 900, 300, 12, 6
FAST = {"rounds": 40, "num_leaves": 7, "min_data_in_leaf": 20, "threads": 1, "top_n": K}


@dataclass
class Zoo:
    members: Members
    labels: sp.csr_matrix  # (N_TRAIN, N_CLASSES)
    test_labels: sp.csr_matrix  # (N_TEST, N_CLASSES)
    folds: np.ndarray  # (N_TRAIN,)


def _labels(rng: np.random.Generator, n: int, multiclass: bool) -> np.ndarray:
    """(n, N_CLASSES) 0/1; class c has prior 0.45 * 0.8**c (multi-class: one label a row)."""
    prior = 0.45 * 0.8 ** np.arange(N_CLASSES)
    if multiclass:
        y = np.zeros((n, N_CLASSES), dtype=np.int8)
        y[np.arange(n), rng.choice(N_CLASSES, size=n, p=prior / prior.sum())] = 1
        return y
    return (rng.random((n, N_CLASSES)) < prior).astype(np.int8)


def _member_scores(rng: np.random.Generator, y: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Sharp scores on the ``good`` classes, pure noise on the others."""
    signal = 1 / (1 + np.exp(-(2.0 * (2 * y - 1) + rng.normal(0, 1.0, y.shape))))
    return np.where(good, signal, rng.random(y.shape)).astype(np.float32)


def _zoo(folder: Path, multiclass: bool) -> Zoo:
    """Member ``a`` knows classes 0-5, ``b`` classes 6-11; their mean blend drowns each one's
    signal in the other's noise, which only a model of class id x member can undo. ``a`` is
    stored top-6, ``b`` dense (all 12 classes)."""
    rng = np.random.default_rng(0)
    y_train, y_test = _labels(rng, N_TRAIN, multiclass), _labels(rng, N_TEST, multiclass)
    first_half = np.arange(N_CLASSES) < N_CLASSES // 2
    paths = {}
    for name, good, k in (("a", first_half, K), ("b", ~first_half, N_CLASSES)):  # b: dense
        paths[name] = folder / name
        writer = PredictionWriter(
            paths[name], n_rows={"oof": N_TRAIN, "test": N_TEST}, n_classes=N_CLASSES,
            model={"name": name}, k=k,
        )  # fmt: skip
        writer.write("oof", np.arange(N_TRAIN), _member_scores(rng, y_train, good))
        writer.write("test", np.arange(N_TEST), _member_scores(rng, y_test, good))
        writer.commit()
    return Zoo(
        open_members(paths, ("oof", "test")),
        sp.csr_matrix(y_train),
        sp.csr_matrix(y_test),
        rng.integers(0, 3, size=N_TRAIN),
    )


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return _zoo(tmp_path_factory.mktemp("zoo"), multiclass=False)


@pytest.mark.parametrize("learner", ["lightgbm", "logistic"])
def test_stacker_beats_the_mean_blend(zoo: Zoo, learner: str) -> None:
    result = fit_stacker(
        zoo.members, zoo.labels, zoo.folds, "multilabel", StackerConfig(learner=learner, **FAST)
    )
    blend_oof = task_metric(merge_topk(zoo.members.topk("oof")), zoo.labels, "multilabel")
    blend_test = task_metric(merge_topk(zoo.members.topk("test")), zoo.test_labels, "multilabel")
    assert result.metric > blend_oof + 0.05
    assert result.test is not None
    assert task_metric(result.test, zoo.test_labels, "multilabel") > blend_test + 0.05
    assert result.feature_names == feature_names(["a", "b"])
    assert [f["fold"] for f in result.fold_metrics] == [0, 1, 2]
    assert sum(f["rows"] for f in result.fold_metrics) == N_TRAIN


def test_oof_rows_come_from_the_model_that_did_not_see_them(zoo: Zoo) -> None:
    result = fit_stacker(zoo.members, zoo.labels, zoo.folds, "multilabel", StackerConfig(**FAST))
    assert result.oof.n_samples == N_TRAIN and (result.oof.indices[:, 0] >= 0).all()
    for fold in range(3):
        rows = np.flatnonzero(zoo.folds == fold)
        alone = result.stacker.predict_topk(zoo.members.topk("oof", rows), fold=fold)
        assert np.array_equal(alone.indices, result.oof.indices[rows, : alone.k])
        assert np.array_equal(alone.scores, result.oof.scores[rows, : alone.k])
        other = result.stacker.predict_topk(zoo.members.topk("oof", rows), fold=(fold + 1) % 3)
        assert not np.array_equal(other.scores, alone.scores)
    # Every candidate pair of a fold's rows is counted in that fold and no other.
    assert sum(f["pairs"] for f in result.fold_metrics) == int((result.oof.indices >= 0).sum())


@pytest.mark.slow
def test_fits_are_deterministic_and_round_trip_through_disk(zoo: Zoo, tmp_path: Path) -> None:
    for learner in ("lightgbm", "logistic"):
        config = StackerConfig(learner=learner, **FAST)
        out = tmp_path / learner
        first = fit_stacker(zoo.members, zoo.labels, zoo.folds, "multilabel", config, out)
        second = fit_stacker(zoo.members, zoo.labels, zoo.folds, "multilabel", config)
        assert first.test is not None and second.test is not None
        for a, b in ((first.oof, second.oof), (first.test, second.test)):
            assert np.array_equal(a.indices, b.indices) and np.array_equal(a.scores, b.scores)
        assert first.path == out and not list(out.glob("*.pkl"))
        loaded = Stacker.load(out)
        assert loaded.folds == first.fold_metrics and loaded.config == config
        again = loaded.predict(zoo.members, "test")
        assert np.array_equal(again.indices, first.test.indices)
        assert np.array_equal(again.scores, first.test.scores)
    assert len(list((tmp_path / "lightgbm").glob("fold-*.txt"))) == 3


def test_multiclass_scores_sum_to_one_per_row(tmp_path: Path) -> None:
    zoo = _zoo(tmp_path, multiclass=True)
    result = fit_stacker(zoo.members, zoo.labels, zoo.folds, "multiclass", StackerConfig(**FAST))
    sums = np.where(result.oof.indices >= 0, result.oof.scores, 0).sum(axis=1)
    assert np.allclose(sums, 1, atol=1e-5)
    blend = task_metric(merge_topk(zoo.members.topk("oof")), zoo.labels, "multiclass")
    assert result.metric > blend + 0.05


def test_features_of_one_row_by_hand() -> None:
    # Member 0 ranks classes 4, 2, 7; member 1 ranks 2, 9 (k=3, one padding slot).
    topks = [
        TopK(np.array([[4, 2, 7]]), np.array([[0.9, 0.5, 0.1]])),
        TopK(np.array([[2, 9, -1]]), np.array([[0.8, 0.3, -np.inf]])),
    ]
    prior = np.linspace(0, 1, 10, dtype=np.float32)
    config = StackerConfig(top_n=2, blend_top=0)
    stacker = Stacker(config, "multilabel", ["m0", "m1"], [3, 3], prior, models=[])
    candidates, features = stacker.features(topks)
    assert candidates.tolist() == [[2, 4, 9]]  # top-2 of each member: {4, 2} | {2, 9}
    by_name = {name: features[:, j].tolist() for j, name in enumerate(stacker.feature_names)}
    assert by_name["class_id"] == [2, 4, 9]
    assert by_name["prior"] == pytest.approx([prior[2], prior[4], prior[9]])
    assert by_name["score_m0"] == pytest.approx([0.5, 0.9, 0.0])
    assert by_name["rank_m0"] == [2, 1, 4]  # 9 is absent from member 0: k + 1
    assert by_name["score_m1"] == pytest.approx([0.8, 0.0, 0.3])
    assert by_name["rank_m1"] == [1, 4, 2]
    assert by_name["mean"] == pytest.approx([0.65, 0.45, 0.15])
    assert by_name["std"] == pytest.approx([0.15, 0.45, 0.15])
    assert by_name["max"] == pytest.approx([0.8, 0.9, 0.3])
    assert by_name["n_present"] == [2, 1, 1]
    assert by_name["blend_rank"] == [1, 2, 3]
    assert by_name["row_top"] == pytest.approx([0.65] * 3)


@pytest.mark.parametrize("n_classes", [20, 40])  # fewer / more classes than members' entries
def test_blend_candidates_are_the_mean_blends_best(n_classes: int) -> None:
    rng = np.random.default_rng(3)
    topks = []
    for _ in range(3):
        indices = np.argsort(rng.random((50, n_classes)), axis=1)[:, :10].astype(np.int32)
        indices[::5, 7:] = -1  # some rows hold fewer predictions
        topks.append(TopK(indices, rng.random((50, 10)).astype(np.float32)))
    prior = np.zeros(n_classes, dtype=np.float32)
    config = StackerConfig(top_n=0, blend_top=8)
    stacker = Stacker(config, "multilabel", ["a", "b", "c"], [10] * 3, prior, models=[])
    candidates, _ = stacker.features(topks)
    merged = merge_topk(topks, k=8).indices
    expected = np.sort(np.where(merged < 0, n_classes, merged), axis=1)
    assert np.array_equal(np.where(candidates < 0, n_classes, candidates), expected)


def test_bad_inputs_fail_before_training(zoo: Zoo, tmp_path: Path) -> None:
    config = StackerConfig(**FAST)
    with pytest.raises(DataError, match=r"labels have shape \(899, 12\).*900 rows"):
        fit_stacker(zoo.members, zoo.labels[:-1], zoo.folds, "multilabel", config)
    with pytest.raises(DataError, match=r"folds .* shape \(10,\); pass \(900,\)"):
        fit_stacker(zoo.members, zoo.labels, zoo.folds[:10], "multilabel", config)
    with pytest.raises(DataError, match="at least 2 folds"):
        fit_stacker(zoo.members, zoo.labels, np.zeros(N_TRAIN, int), "multilabel", config)
    with pytest.raises(ConfigError, match=r"member.*resnet_av.*not in the prediction stores"):
        fit_stacker(
            zoo.members, zoo.labels, zoo.folds, "multilabel", StackerConfig(members=("resnet_av",))
        )
    with pytest.raises(ConfigError, match="task is 'ranking'; use multilabel or multiclass"):
        fit_stacker(zoo.members, zoo.labels, zoo.folds, "ranking", config)
    with pytest.raises(DataError, match=r"multiclass but row \d+ has"):
        fit_stacker(zoo.members, zoo.labels, zoo.folds, "multiclass", config)
    with pytest.raises(ConfigError, match="learner 'xgboost' is unknown"):
        StackerConfig(learner="xgboost")
    with pytest.raises(ConfigError, match="top_n=0, blend_top=0"):
        StackerConfig(top_n=0, blend_top=0)
    result = fit_stacker(
        zoo.members, zoo.labels, zoo.folds, "multilabel", StackerConfig(members=("a",), **FAST)
    )
    with pytest.raises(ConfigError, match=r"trained on member.*a, which the prediction stores"):
        result.stacker.predict(zoo.members.select(["b"]))
    with pytest.raises(DataError, match=r"2 member predictions given .* trained on 1"):
        result.stacker.predict_topk(zoo.members.topk("test"))
    with pytest.raises(DataError, match="not a saved stacker"):
        Stacker.load(tmp_path)


def test_blocks_with_fewer_candidates_than_the_widest_row() -> None:
    from webly.ensemble.stack import _TopKBuffer

    buffer = _TopKBuffer(keep=10, task=Task.MULTILABEL)
    buffer.put(np.array([[0, 1, 2], [3, -1, -1]]), np.array([0.1, 0.9, 0.5, 0.7], np.float32))
    buffer.put(np.array([[4, 5]]), np.array([0.2, 0.3], np.float32))
    top = buffer.topk()
    np.testing.assert_array_equal(top.indices, [[1, 2, 0], [3, -1, -1], [5, 4, -1]])
    np.testing.assert_allclose(top.scores[2, :2], [0.3, 0.2])
    assert np.isneginf(top.scores[2, 2])


def test_a_saved_entry_predicts_other_rows_as_it_predicted_the_test_split(
    zoo: Zoo, tmp_path: Path
) -> None:
    entries = fit_ensemble(
        zoo.members, zoo.labels, "multilabel", tmp_path, blends=("mean", "weighted"),
        blend_options={"weighted": {"n_trials": 20}}, stacker=StackerConfig(**FAST),
        folds=zoo.folds, k=N_CLASSES,
    )  # fmt: skip
    test = dict(zip(zoo.members.names, zoo.members.topk("test"), strict=True))
    for entry in entries:
        fitted = load_entry(entry.path)
        assert set(fitted.members) == {"a", "b"}
        again = fitted.predict([test[name] for name in fitted.members])
        stored = Predictions.open(entry.path).test
        expected = np.take_along_axis(stored.dense(), again.indices.astype(np.int64), axis=1)
        np.testing.assert_allclose(again.scores, expected, atol=1e-3, err_msg=entry.name)
    with pytest.raises(DataError, match="store of 'a', not of a blend or the stacker"):
        load_entry(zoo.members.stores[0].path)


def test_stacker_rounds_are_shown_fold_by_fold(zoo: Zoo) -> None:
    console = Console(file=io.StringIO(), width=120, record=True)  # not a terminal: lines
    with progress.run_display(console) as display:
        display.stage("ensemble", 4, 8)
        fit_stacker(zoo.members, zoo.labels, zoo.folds, "multilabel", StackerConfig(**FAST))
        config = StackerConfig(**FAST, learner="logistic")
        fit_stacker(zoo.members, zoo.labels, zoo.folds, "multilabel", config)
    lines = [line.strip() for line in console.export_text().splitlines()]
    for fold in (1, 2, 3):
        assert any(line.startswith(f"stacker fold {fold}/3: 40 rounds in ") for line in lines)
        assert any(line.startswith(f"stacker fold {fold}/3: 1 fit in ") for line in lines)
