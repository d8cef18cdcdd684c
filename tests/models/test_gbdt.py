"""LightGBM model: task choice, learning, determinism, persistence, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from webly.core import Task
from webly.errors import ConfigError, DataError
from webly.models import create_model
from webly.models.gbdt import LgbmModel, lgbm

INPUT_DIMS = {"rgb": 6, "audio": 2}
FAST = {"n_estimators": 30, "num_leaves": 4, "min_child_samples": 5}


def features(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


def one_hot(classes: np.ndarray, n_classes: int) -> sp.csr_matrix:
    rows = np.arange(len(classes))
    return sp.csr_matrix((np.ones(len(classes)), (rows, classes)), shape=(len(classes), n_classes))


def multi_label(x: np.ndarray, n_classes: int) -> sp.csr_matrix:
    """Class ``c`` is present when feature ``c`` is positive."""
    return sp.csr_matrix((x[:, :n_classes] > 0).astype(np.float32))


def model(n_classes: int, **hparams: Any) -> LgbmModel:
    return create_model("lgbm", n_classes, INPUT_DIMS, **{**FAST, **hparams})


def test_single_label_rows_train_one_multiclass_booster() -> None:
    x = features(200)
    m = model(3).fit(x, one_hot(x[:, :3].argmax(1), 3))
    assert m.task is Task.MULTICLASS and len(m.boosters) == 1
    scores = m.predict(features(50, seed=1))
    assert scores.shape == (50, 3) and scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(1), 1.0, rtol=1e-5)


def test_multi_label_rows_train_one_booster_per_class() -> None:
    x = features(200)
    labels = sp.hstack([multi_label(x, 3), sp.csr_matrix((200, 1))]).tocsr()  # class 3: never
    m = model(4).fit(x, labels)
    assert m.task is Task.MULTILABEL
    assert [b is not None for b in m.boosters] == [True, True, True, False]
    scores = m.predict(features(50, seed=1))
    assert scores.shape == (50, 4)
    assert (scores[:, 3] == 0).all() and ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_learns_a_separable_problem(task: str) -> None:
    x, test = features(400), features(200, seed=1)
    if task == "multiclass":
        m = model(3).fit(x, one_hot(np.digitize(x[:, 0], [-0.5, 0.5]), 3))
        accuracy = (m.predict(test).argmax(1) == np.digitize(test[:, 0], [-0.5, 0.5])).mean()
    else:
        m = model(3).fit(x, multi_label(x, 3))
        accuracy = ((m.predict(test) > 0.5) == (test[:, :3] > 0)).mean()
    assert accuracy > 0.9


def test_too_many_classes_for_one_vs_rest() -> None:
    x = features(30)
    with pytest.raises(ConfigError, match="max_ovr_classes=4; use a neural model"):
        model(5, max_ovr_classes=4).fit(x, multi_label(x, 5))


def test_training_is_deterministic() -> None:
    x, labels = features(200), multi_label(features(200), 2)
    first = model(2, feature_fraction=0.5).fit(x, labels).predict(x)
    second = model(2, feature_fraction=0.5).fit(x, labels).predict(x)
    assert np.array_equal(first, second)


def test_validation_stops_training_early() -> None:
    rng = np.random.default_rng(0)
    x, x_valid = features(200), features(100, seed=1)
    noise = one_hot(rng.integers(0, 2, 200), 2), one_hot(rng.integers(0, 2, 100), 2)
    m = model(2, n_estimators=200, early_stopping_rounds=3)
    m.fit(x, noise[0], x_valid, noise[1])
    assert m.boosters[0] is not None and m.boosters[0].best_iteration < 50


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_save_load_round_trip(task: str, tmp_path: Path) -> None:
    x = features(100)
    labels = one_hot(x[:, :3].argmax(1), 3) if task == "multiclass" else multi_label(x, 3)
    labels = sp.hstack([labels, sp.csr_matrix((100, 1))]).tocsr()  # an empty class
    m = model(4).fit(x, labels)
    m.save(tmp_path)
    loaded = LgbmModel.load(tmp_path)
    assert loaded.task == m.task and loaded.hparams == m.hparams
    assert np.array_equal(loaded.predict(x), m.predict(x))


def test_bad_input_is_refused(tmp_path: Path) -> None:
    x = features(20)
    labels = one_hot(np.zeros(20, dtype=int), 3)
    with pytest.raises(ConfigError, match="not fitted"):
        model(3).predict(x)
    with pytest.raises(DataError, match=r"shape \(20, 5\) .* sum to 8 columns"):
        model(3).fit(x[:, :5], labels)
    with pytest.raises(ConfigError, match="pass both or none"):
        model(3).fit(x, labels, x_valid=x)
    two_labels = sp.csr_matrix(np.array([[1, 1, 0]] * 20))
    with pytest.raises(DataError, match="validation row 0 has 2 labels"):
        model(3).fit(x, labels, x, two_labels)
    with pytest.raises(DataError, match="not a saved lgbm model"):
        LgbmModel.load(tmp_path)


@pytest.mark.parametrize(
    ("hparams", "message"),
    [
        ({"n_classes": 1}, "n_classes=1"),
        ({"num_leaves": 1}, "num_leaves is 1; use an integer >= 2"),
        ({"n_estimators": 0}, "n_estimators is 0"),
        ({"feature_fraction": 1.5}, r"feature_fraction in \(0, 1\]"),
        ({"learning_rate": 0.0}, "learning_rate > 0"),
    ],
)
def test_bad_hyper_parameters_are_refused(hparams: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        lgbm(**{"n_classes": 3, "input_dims": INPUT_DIMS, **hparams})
