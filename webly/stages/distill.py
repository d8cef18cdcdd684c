"""The ``distill`` stage: the recipe's ``distill`` section run by `webly.distill.run.run_distill`
(students on the ensemble's soft labels, and the final model) into ``RUN/distill/``, on the
data, folds, trained zoo members (the clean stage's last round when it ran) and ensemble
entries of the run. ``webly distill`` makes the same call from its options."""

from __future__ import annotations

from typing import Any

import numpy as np

from webly.config import Recipe
from webly.data.store import Dataset
from webly.distill.run import run_distill
from webly.distill.teachers import DistillInputs
from webly.rundir import DataRecord, DistillRecord, EnsembleRecord, FoldsRecord
from webly.stages.context import StageContext, StageResult, splits
from webly.train.oof import zoo_settings


def distill_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.distill
    return {
        "distill": section.model_dump(mode="json") if section else None,
        "zoos": {name: zoo_settings(zoo) for name, zoo in recipe.student_zoos().items()},
    }


def make_distill(ctx: StageContext) -> StageResult:
    """Train the students (out-of-fold) and the final model (every row) of the recipe."""
    section = ctx.recipe.distill
    if section is None:
        return StageResult(key="not in the recipe")
    train, test = splits(ctx)
    ensemble = ctx.input(EnsembleRecord)  # None without the stage
    data = ctx.need(DataRecord)
    unlabeled = data.unlabeled if section.unlabeled is not None else None
    inputs = DistillInputs(
        train, test, np.load(ctx.need(FoldsRecord).folds), ctx.recipe.zoo,
        members=ctx.rundir.members(),
        entries=dict(ensemble.stores) if ensemble is not None else {},
        unlabeled=Dataset.open(unlabeled) if unlabeled is not None else None,
        valid=Dataset.open(data.valid) if data.valid is not None else None,
    )  # fmt: skip
    result = run_distill(section, inputs, ctx.folder, executor=ctx.executor)
    summary = result.summary
    return StageResult(
        key=result.key,
        record=DistillRecord(
            students=result.students,
            final=result.final,
            model=result.model,
            table=summary["students"],
            unlabeled_rows=summary["unlabeled_rows"],
            students_tried=summary.get("students_tried"),
            teacher=summary.get("teacher"),
            final_tried=summary.get("final_tried"),
            final_setting=summary.get("final_setting"),
            distilled=summary.get("distilled"),
        ),
        errors=result.errors,
    )
