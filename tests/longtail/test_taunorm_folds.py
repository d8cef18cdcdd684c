"""tau_sweep_folds (each fold model scores its held-out rows, the rows pooled), score_network and
resolve_metric, on the long-tailed toy problem."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.longtail.conftest import HEAD, TAIL, train_network
from webly.data import Dataset
from webly.errors import ConfigError, DataError
from webly.longtail import (
    lower_is_better,
    resolve_metric,
    score_network,
    tau_sweep,
    tau_sweep_folds,
)

TAUS = (0.0, 0.5, 1.0)


@pytest.fixture(scope="module")
def fold_models(
    long_tail: tuple[Dataset, Dataset], tmp_path_factory: pytest.TempPathFactory
) -> tuple[np.ndarray, list[Any]]:
    """Two folds of the training split and a logistic model trained on each one's other rows."""
    train, _ = long_tail
    folds = (np.arange(len(train)) % 2).astype(np.int8)
    work = tmp_path_factory.mktemp("folds")
    models = [
        train_network("logistic", train.subset(np.flatnonzero(folds != f)), work / str(f))
        for f in (0, 1)
    ]
    return folds, models


def test_fold_sweep_pools_the_held_out_rows(
    long_tail: tuple[Dataset, Dataset], fold_models: tuple[np.ndarray, list[Any]]
) -> None:
    train, _ = long_tail
    folds, models = fold_models
    pooled = tau_sweep_folds(
        models, train, folds, taus=TAUS, metric="accuracy", head=HEAD, tail=TAIL
    )
    assert [row.tau for row in pooled.rows] == list(TAUS) and pooled.metric == "accuracy"
    assert pooled.baseline.bands.n_classes == {"head": 2, "medium": 1, "tail": 1}
    held_out = [train.subset(np.flatnonzero(folds == f)) for f in (0, 1)]
    per_fold = [
        tau_sweep(model, rows, train.labels, taus=TAUS, metric="accuracy")
        for model, rows in zip(models, held_out, strict=True)
    ]
    # each row is scored by the model that did not see it: accuracy is a mean over rows, so the
    # pooled figure is the folds' row-weighted mean
    sizes = [len(rows) for rows in held_out]
    for i in range(len(TAUS)):
        figures = [s.rows[i].metric for s in per_fold]
        assert pooled.rows[i].metric == pytest.approx(np.average(figures, weights=sizes))
    trained = [score_network(m, rows, "accuracy") for m, rows in zip(models, held_out, strict=True)]
    assert pooled.baseline.metric == pytest.approx(np.average(trained, weights=sizes))


def test_one_fold_of_everything_is_the_plain_sweep(
    long_tail: tuple[Dataset, Dataset], fold_models: tuple[np.ndarray, list[Any]]
) -> None:
    valid = long_tail[1]
    model = fold_models[1][0]
    zeros = np.zeros(len(valid), dtype=np.int8)
    plain = tau_sweep(model, valid, valid.labels, taus=TAUS)
    folded = tau_sweep_folds([model], valid, zeros, taus=TAUS)
    assert [r.metric for r in folded.rows] == [r.metric for r in plain.rows]
    assert folded.best_tau == plain.best_tau and folded.metric == "mean_class_error"
    assert score_network(model, valid) == pytest.approx(plain.baseline.metric)


@pytest.mark.parametrize(
    ("folds", "match"),
    [
        (np.zeros(3, dtype=np.int8), r"folds of shape \(3,\)"),
        (np.full(486, 2, dtype=np.int8), "one of the 2 fold models"),
        (np.zeros(486, dtype=np.float32), "dtype float32"),
    ],
)
def test_fold_sweep_refuses_folds_that_do_not_fit(
    long_tail: tuple[Dataset, Dataset],
    fold_models: tuple[np.ndarray, list[Any]],
    folds: np.ndarray,
    match: str,
) -> None:
    with pytest.raises(DataError, match=match):
        tau_sweep_folds(fold_models[1], long_tail[0], folds)


def test_metric_names() -> None:
    assert resolve_metric("auto", "multilabel") == "gap@20"
    assert resolve_metric("auto", "multiclass") == "mean_class_error"
    assert resolve_metric("accuracy", "multiclass") == "accuracy"
    assert lower_is_better("mean_class_error") and not lower_is_better("gap@20")
    with pytest.raises(ConfigError, match="tau sweep metric is 'top5'; use auto"):
        resolve_metric("top5", "multiclass")
