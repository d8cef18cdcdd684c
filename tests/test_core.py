"""webly.core: the task and its figures, TopK's home, canonical labels, the Model protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

import webly
from webly.core import (
    GAP_K,
    Model,
    Task,
    TopK,
    canonical_labels,
    select_top_k,
)
from webly.errors import ConfigError, DataError
from webly.metrics.evaluate import loss_sum, task_metric
from webly.models import create_model
from webly.models.gbdt import LgbmModel
from webly.models.network import Network
from webly.train.fold_model import NetworkModel, TreeModel


def test_task_metric_and_loss() -> None:
    multilabel, multiclass = Task.MULTILABEL.metric(), Task.MULTICLASS.metric()
    assert (multilabel.name, multilabel.key, multilabel.higher_is_better) == (
        f"GAP@{GAP_K}", f"gap@{GAP_K}", True,
    )  # fmt: skip
    assert (multiclass.name, multiclass.key, multiclass.higher_is_better) == (
        "accuracy", "accuracy", True,
    )  # fmt: skip
    assert Task.MULTILABEL.metric(5).name == "GAP@5"
    assert (Task.MULTILABEL.loss.name, Task.MULTILABEL.loss.key) == ("BCE", "bce")
    assert (Task.MULTICLASS.loss.name, Task.MULTICLASS.loss.key) == ("log-loss", "log-loss")
    assert not Task.MULTICLASS.loss.higher_is_better


def test_task_metric_and_loss_functions_follow_the_task() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    labels = sp.csr_matrix(np.eye(2))
    assert task_metric(probs, labels, Task.MULTICLASS) == 1.0
    assert task_metric(probs, labels, Task.MULTILABEL) == pytest.approx(1.0)
    assert loss_sum(probs, labels, Task.MULTICLASS) == pytest.approx(-np.log([0.9, 0.8]).sum())


def test_task_reads_from_strings_and_json() -> None:
    assert Task("multilabel") is Task.MULTILABEL
    assert Task.parse("multiclass") is Task.MULTICLASS
    assert Task.MULTICLASS == "multiclass" and f"{Task.MULTICLASS}" == "multiclass"
    assert json.loads(json.dumps({"task": Task.MULTILABEL})) == {"task": "multilabel"}
    assert Task.MULTILABEL.multilabel and not Task.MULTICLASS.multilabel
    with pytest.raises(ConfigError, match=r"^task is 'binary'; use multilabel or multiclass$"):
        Task.parse("binary")


def test_topk_lives_in_core() -> None:
    assert TopK.__module__ == "webly.core" and webly.TopK is TopK
    top = TopK.from_dense(np.array([[0.1, 0.7, 0.2]]), k=2)
    assert top.indices.tolist() == [[1, 2]]
    assert select_top_k(top, 1, sort=True)[0].tolist() == [[1]]


def test_canonical_labels_forms_agree() -> None:
    ids = canonical_labels(np.array([2, 0]))
    dense = canonical_labels(np.array([[0, 0, 1], [1, 0, 0]]))
    sparse = canonical_labels(sp.coo_matrix(([1, 1], ([0, 1], [2, 0])), shape=(2, 3)))
    for labels in (ids, dense, sparse):
        assert labels.shape == (2, 3) and labels.has_canonical_format
        assert labels.toarray().tolist() == [[0, 0, 1], [1, 0, 0]]
    assert canonical_labels(np.array([1]), n_classes=4).shape == (1, 4)


@pytest.mark.parametrize(
    ("labels", "options", "message"),
    [
        (np.array([[0, 2]]), {}, "labels must be 0/1 but hold 2 at row 0, class 1"),
        (np.array([0.0, 1.0]), {}, "1-d labels have dtype float64"),
        (np.array([0, 5]), {"n_classes": 3}, "class ids 0..5 but there are 3 classes"),
        (np.eye(3), {"n_classes": 4}, "labels have 3 classes but n_classes is 4"),
        (np.eye(3), {"n_samples": 4}, r"labels have shape \(3, 3\)"),
        (np.zeros(0, np.int64), {}, "labels are empty"),
        (np.zeros((1, 1, 1)), {}, r"labels have shape \(1, 1, 1\)"),
    ],
)
def test_canonical_labels_errors_are_one_line(
    labels: np.ndarray, options: dict[str, int], message: str
) -> None:
    with pytest.raises(DataError, match=message) as info:
        canonical_labels(labels, **options)
    assert "\n" not in str(info.value)


def test_both_adapters_satisfy_the_model_protocol() -> None:
    network = create_model("mlp", 3, {"x": 4}, hidden=[8])
    trees = create_model("lgbm", 3, {"x": 4}, n_estimators=2)
    assert isinstance(network, Network) and isinstance(trees, LgbmModel)
    adapters = [NetworkModel(network, ["x"], 64), TreeModel(trees, ["x"], 64)]
    for adapter in adapters:
        assert isinstance(adapter, Model)
    assert [(a.trains_with_epochs, a.takes_frames) for a in adapters] == [
        (True, False), (False, False),
    ]  # fmt: skip
