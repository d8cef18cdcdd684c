"""`run_clean`: a recipe's ``clean`` section run, the one call behind the pipeline's ``clean``
stage and ``webly clean``.

The section's ``method``, ``rules``, ``options``, ``rounds`` and ``patience`` become a call of
`webly.clean.iterate.clean_iteratively`. Methods that judge rows by data rather than predictions
take it from the training store, as a section cannot write it: ``cluster`` its video-level
features, ``semantic`` its text column and class descriptions (`store_inputs`); inputs the
section's ``options`` give win.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from webly.clean._registry import method_entry
from webly.clean.actions import ActionRules
from webly.clean.iterate import IterationResult, clean_iteratively
from webly.data.store import Dataset
from webly.executor import Executor
from webly.train.zoo import Zoo

if TYPE_CHECKING:  # webly.config imports webly.clean to validate the section
    from webly.config import CleanConfig


def run_clean(
    section: CleanConfig,
    zoo: Zoo,
    train: Dataset,
    test: Dataset | None,
    out: str | Path,
    *,
    folds: np.ndarray | None = None,
    executor: Executor | None = None,
) -> IterationResult:
    """Clean ``train``'s labels as ``section`` says, the zoo retrained each round into ``out``
    (`clean_iteratively`: ``folds`` None is ``train.folds(zoo.folds, zoo.seed)``; ``executor``
    None trains here)."""
    return clean_iteratively(
        zoo, train, test, out, rounds=section.rounds, method=section.method,
        rules=ActionRules(**section.rules), folds=folds,
        options={**store_inputs(section.method, section.options, train), **section.options},
        executor=executor, patience=section.patience,
    )  # fmt: skip


def store_inputs(method: str, given: dict[str, Any], train: Dataset) -> dict[str, Any]:
    """The data inputs of ``method`` that ``given`` lacks, read from ``train``: ``features``
    ``(n_samples, d)`` float32, its video-level groups concatenated; ``texts`` ``(n_samples,)``
    (when the store has a text column); ``class_descriptions`` ``(n_classes,)`` str, the
    manifest's descriptions, else the class names."""
    wanted = method_entry(method).inputs - set(given)
    found: dict[str, Any] = {}
    if "features" in wanted:
        groups = [f.name for f in train.layout.features if f.level == "video"]
        found["features"] = train.features(np.arange(len(train)), groups)
    if "texts" in wanted and train.texts is not None:
        found["texts"] = train.texts
    if "class_descriptions" in wanted:
        found["class_descriptions"] = list(train.layout.class_descriptions or train.class_names)
    return found
