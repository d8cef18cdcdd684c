"""The ``longtail`` stage: the recipe's ``longtail`` section run by
`webly.longtail.run.run_longtail` (the final distilled network's classifier re-balanced for
the long tail, chosen on held-out rows) into ``RUN/longtail/``, on the distill stage's final
network and students and the run's data and folds. ``webly longtail`` makes the same call from
its options.

Its record (`webly.rundir.LongtailRecord`) holds ``model`` and ``final`` (id -> store) as the
distill stage's does, and `webly.rundir.RunDir.final` (compress, export) deploys the adjusted
network in place of distill's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from webly.config import Recipe
from webly.longtail.run import LongtailInputs, run_longtail
from webly.rundir import DistillRecord, FoldsRecord, LongtailRecord
from webly.stages.context import StageContext, StageResult, splits


def longtail_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.longtail
    if section is None:
        return {"longtail": None}
    config: dict[str, Any] = {"longtail": section.model_dump(mode="json")}
    if section.method == "crt":  # the classifier's initialisation and training order
        config["seed"] = recipe.seed
    return config


def make_longtail(ctx: StageContext) -> StageResult:
    """Re-balance the final network's classifier; write it and its test predictions."""
    section = ctx.recipe.longtail
    if section is None:
        return StageResult(key="not in the recipe")
    distill = ctx.input(DistillRecord)
    if distill is None or distill.model is None:
        message = "longtail: the distill stage made no final model to adjust; see its errors"
        return StageResult(key=message, errors=(message,))
    ((final, store),) = distill.final.items()
    train, test = splits(ctx)
    assert test is not None  # distill.final trains only with a test split to predict
    inputs = LongtailInputs(
        final, distill.model, store, train, test, np.load(ctx.need(FoldsRecord).folds),
        students=distill.students,
    )  # fmt: skip
    result = run_longtail(section, inputs, ctx.folder)
    summary = result.summary
    return StageResult(
        key=result.key,
        record=LongtailRecord(
            model=result.model,
            final=result.final,
            method=summary["method"],
            final_id=final,
            chosen=summary["chosen"],
            tau=summary["tau"],
            metric=summary["metric"],
            chosen_on=summary["chosen_on"],
            sweep=summary["sweep"],
            bands=summary["bands"],
            bands_on=summary["bands_on"],
            test=summary["test"],
        ),
    )
