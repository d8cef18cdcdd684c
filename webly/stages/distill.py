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
from webly.stages.context import StageContext, StageResult, splits
from webly.stages.ensemble import trained_members
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
    folds = ctx.output("folds", "folds")
    assert folds is not None  # the folds stage records it
    entries = ctx.inputs["ensemble"]["outputs"].get("stores", {})  # none without the stage
    unlabeled = ctx.output("data", "unlabeled") if section.unlabeled is not None else None
    inputs = DistillInputs(
        train, test, np.load(folds), ctx.recipe.zoo,
        members={name: ctx.run / path for name, path in trained_members(ctx).items()},
        entries={name: ctx.run / path for name, path in entries.items()},
        unlabeled=Dataset.open(unlabeled) if unlabeled is not None else None,
    )  # fmt: skip
    result = run_distill(section, inputs, ctx.folder, executor=ctx.executor)
    outputs: dict[str, Any] = {}
    if "students" in ctx.recipe.student_zoos():
        outputs["students"] = {n: str(p.relative_to(ctx.run)) for n, p in result.students.items()}
    if result.model is not None:
        outputs["final"] = {n: str(p.relative_to(ctx.run)) for n, p in result.final.items()}
        outputs["model"] = str(result.model.relative_to(ctx.run))
    return StageResult(
        key=result.key, outputs=outputs, summary=result.summary, errors=result.errors
    )
