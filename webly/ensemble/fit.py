"""`fit_ensemble`: every blend and the stacker fitted on a zoo's out-of-fold predictions, each
written as a prediction store; `run_ensemble`: a recipe's ``ensemble`` section fitted so, the one
call behind the pipeline's ``ensemble`` stage and ``webly ensemble``.

The output folder::

    OUT/blend-<method>/        prediction store: oof and test; the fitted weights under
                               ``model.blend`` (`webly.ensemble.blend.Blend.to_json`)
    OUT/stacker/predictions/   prediction store of the stacker: oof (by the fold model that
                               did not see the row) and test (the fold models' mean)
    OUT/stacker/model/         the stacker's fold models (`webly.ensemble.stack.Stacker`)

A blend's weights are fitted on the out-of-fold rows it is then scored on, so its out-of-fold
figure is a little optimistic; the stacker's is not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from webly.core import GAP_K, Task, TopK
from webly.data.store import Dataset
from webly.ensemble.blend import METHODS, Blend, fit_blend
from webly.ensemble.members import Members
from webly.ensemble.stack import Stacker, StackerConfig, fit_stacker
from webly.errors import ConfigError, DataError
from webly.metrics.evaluate import task_metric
from webly.predictions import Predictions, write_predictions

if TYPE_CHECKING:  # webly.config imports webly.ensemble to validate the section
    from webly.config import EnsembleConfig

STACKER = "stacker"
BLEND = "blend"
ENTRIES = (BLEND, STACKER)  # the model names of the stores `load_entry` re-applies


@dataclass(frozen=True)
class EnsembleEntry:
    """One fitted blend or the stacker: its store, out-of-fold metric (GAP@20 or accuracy
    against the training labels), test metric (None without test labels) and fit seconds."""

    name: str
    path: Path
    oof_metric: float
    test_metric: float | None
    seconds: float


def run_ensemble(
    section: EnsembleConfig,
    members: Members,
    train: Dataset,
    out: str | Path,
    *,
    folds: np.ndarray,
    seed: int,
    test_labels: sp.csr_matrix | None = None,
    k: int = 100,
) -> list[EnsembleEntry]:
    """`fit_ensemble` of ``section``'s blends (with its ``blend_options``) and stacker (its
    fields, seeded with ``seed``; none when null) on ``members`` (the section's ``members``,
    opened), against ``train``'s labels, trained K-fold on ``folds``."""
    stacker = StackerConfig(**section.stacker, seed=seed) if section.stacker is not None else None
    return fit_ensemble(
        members, train.labels, train.task, out, blends=section.blends,
        blend_options=section.blend_options, stacker=stacker, folds=folds,
        test_labels=test_labels, k=k,
    )  # fmt: skip


def fit_ensemble(
    members: Members,
    labels: sp.csr_matrix,
    task: Task,
    out: str | Path,
    *,
    blends: Sequence[str] = ("mean", "weighted", "greedy"),
    blend_options: Mapping[str, Mapping[str, Any]] | None = None,
    stacker: StackerConfig | None = None,
    folds: np.ndarray | None = None,
    test_labels: sp.csr_matrix | None = None,
    k: int = 100,
) -> list[EnsembleEntry]:
    """Fit ``blends`` (`webly.ensemble.blend.fit_blend`) and the ``stacker`` (when given;
    trained K-fold on ``folds``) on the members' out-of-fold predictions against ``labels``.

    Parameters
    ----------
    members : zoo members with ``oof`` (and ``test``, to predict it) splits
    labels : (n_train, n_classes) training labels of the rows of the ``oof`` split
    task : ``multilabel`` or ``multiclass``
    out : folder of the entries' stores (see the module docstring); replaced entry by entry
    blend_options : per method, options of its fitting function (e.g. ``n_trials``)
    folds : (n_train,) fold of every training row; required with ``stacker``
    test_labels : (n_test, n_classes) labels the test predictions are scored on, optional
    k : predictions kept per row in the stores

    Returns
    -------
    list of EnsembleEntry, in the order fitted (blends, then the stacker)
    """
    unknown = [method for method in blends if method not in METHODS]
    if unknown:  # before anything is fitted or written
        raise ConfigError(f"unknown blend method {unknown[0]!r}; known: {', '.join(METHODS)}")
    if stacker is not None and folds is None:
        raise ConfigError("the stacker needs the training rows' folds; pass folds")
    out = Path(out)
    with_test = "test" in members.stores[0].splits
    oof = members.topk("oof")
    test = members.topk("test") if with_test else None
    entries = []
    for method in blends:
        started = time.perf_counter()
        options = dict((blend_options or {}).get(method, {}))
        blend = fit_blend(method, oof, labels, task, members.names, **options)
        predictions = {"oof": blend.apply(oof)}
        if test is not None:
            predictions["test"] = blend.apply(test)
        model = {"name": BLEND, "id": method, "blend": blend.to_json()}
        entries.append(
            _write(method, out / f"blend-{method}", predictions, model, labels, task,
                   test_labels, k, started)
        )  # fmt: skip
    if stacker is not None and folds is not None:
        started = time.perf_counter()
        result = fit_stacker(
            members, labels, folds, task, stacker, out_dir=out / STACKER / "model", overwrite=True
        )
        predictions = {"oof": result.oof} | ({"test": result.test} if result.test else {})
        model = {"name": STACKER, "id": STACKER, "members": members.names}
        entries.append(
            _write(STACKER, out / STACKER / "predictions", predictions, model, labels, task,
                   test_labels, k, started)
        )  # fmt: skip
    return entries


@dataclass(frozen=True)
class FittedEntry:
    """A saved blend or stacker, ready to predict other rows: ``members`` (the member names
    it reads, in order) and ``predict`` (one TopK per member, in that order -> its TopK)."""

    members: tuple[str, ...]
    predict: Callable[[Sequence[TopK]], TopK]


def load_entry(store: str | Path) -> FittedEntry:
    """The fitted model behind an entry's prediction store (``OUT/blend-<method>`` or
    ``OUT/stacker/predictions``, see the module docstring)."""
    store = Path(store)
    model = Predictions.open(store).model
    if model.get("name") == STACKER:
        stacker = Stacker.load(store.parent / "model")
        return FittedEntry(tuple(stacker.members), stacker.predict_topk)
    if model.get("name") == BLEND:
        blend = Blend.from_json(model["blend"])
        return FittedEntry(blend.names, blend.apply)
    raise DataError(
        f"{store} is the store of {model.get('name')!r}, not of a blend or the stacker; pass an "
        "ensemble entry's store"
    )


def _write(
    name: str,
    path: Path,
    predictions: dict[str, TopK],
    model: dict[str, Any],
    labels: sp.csr_matrix,
    task: Task,
    test_labels: sp.csr_matrix | None,
    k: int,
    started: float,
) -> EnsembleEntry:
    """Score one entry and write its store (figures under ``fold_metrics``)."""
    oof_metric = task_metric(predictions["oof"], labels, task, GAP_K)
    metrics: dict[str, Any] = {"oof": {"metric": oof_metric, "loss": None}}
    test_metric = None
    if "test" in predictions and test_labels is not None:
        test_metric = task_metric(predictions["test"], test_labels, task, GAP_K)
        metrics["test"] = {"metric": test_metric, "loss": None}
    seconds = time.perf_counter() - started
    metrics["fit"] = {"seconds": seconds}
    n_classes = labels.shape[1]
    write_predictions(
        path, predictions, n_classes=n_classes, model=model, k=k, fold_metrics=metrics,
        overwrite=True,
    )  # fmt: skip
    return EnsembleEntry(name, path, oof_metric, test_metric, seconds)
