"""The ``distill`` stage: students trained on the ensemble's soft labels, and the final model.

``RUN/distill/students/<id>/`` are zoo members (`fit_oof`, out-of-fold and test predictions)
trained with the teacher's out-of-fold predictions as soft targets; ``RUN/distill/final/<id>/``
is one model trained on every training row (`fit_full`), taught by the mean of the students'
out-of-fold predictions (the second round: a small ensemble of students distilled into one
model) or, without students, by the teacher. Its ``model/`` folder is what compress and
export take.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from webly.config import Recipe
from webly.data.store import Dataset
from webly.distill.soft_labels import families, family_teacher, soft_targets
from webly.ensemble.budget import format_size, parse_size
from webly.errors import ConfigError, DataError
from webly.metrics.ranking import TopK
from webly.predictions import Predictions, merge_topk
from webly.stages.context import StageContext, StageResult, splits
from webly.stages.ensemble import stage_members
from webly.train.oof import MemberResult, ZooResult, fit_full, fit_oof
from webly.train.zoo import Zoo, plan_zoo


def distill_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.distill
    return {
        "distill": section.model_dump(mode="json") if section else None,
        "zoos": {name: zoo.model_dump(mode="json") for name, zoo in recipe.student_zoos().items()},
    }


def make_distill(ctx: StageContext) -> StageResult:
    """Train the students (out-of-fold) and the final model (every row) on soft labels."""
    section = ctx.recipe.distill
    if section is None:
        return StageResult(key="not in the recipe")
    train, test = splits(ctx)
    zoos = ctx.recipe.student_zoos()
    if section.max_size is not None:
        for where, zoo in zoos.items():
            _check_size(zoo, train, parse_size(section.max_size), where)
    folds = np.load(ctx.run / ctx.inputs["folds"]["outputs"]["folds"])

    def targets(teacher: TopK) -> sp.csr_matrix:
        return soft_targets(
            teacher, train.n_classes, train.task, k=section.k, min_score=section.min_score
        )

    outputs: dict[str, Any] = {}
    results: list[MemberResult] = []
    students: ZooResult | None = None
    if "students" in zoos:
        taught = _teachers(ctx, zoos["students"], with_test=test is not None)
        parts = [
            fit_oof(
                zoo,
                train,
                test,
                ctx.folder / "students",
                folds,
                targets(teacher),
                executor=ctx.executor,
            )
            for zoo, teacher in taught
        ]
        students = ZooResult([m for part in parts for m in part.members])
        results += students.members
        outputs["students"] = {
            m.id: f"{ctx.name}/students/{m.id}/predictions"
            for m in students.members
            if m.error is None
        }
    if "final" in zoos:
        if students is not None and outputs["students"]:
            stores = [Predictions.open(ctx.run / p) for p in outputs["students"].values()]
            teacher = merge_topk([store.oof.topk() for store in stores])
        else:
            (_, teacher), *_ = _teachers(ctx, zoos["final"], with_test=test is not None)
        final = fit_full(
            zoos["final"], train, test, ctx.folder / "final", targets(teacher),
            executor=ctx.executor,
        )  # fmt: skip
        results += final.members
        (member,) = final.members
        if member.error is None:
            outputs["final"] = {member.id: f"{ctx.name}/final/{member.id}/predictions"}
            outputs["model"] = f"{ctx.name}/final/{member.id}/full/model"
    errors = [f"student {m.id} failed: {m.error}" for m in results if m.error is not None]
    done = [m for m in results if m.error is None]
    key = f"{len(done)} of {len(results)} students done"
    if "final" in outputs:
        (final_id,) = outputs["final"]
        figure = next(m.test_metric for m in results if m.id == final_id)
        if figure is not None:
            key += f"; final {final_id}: {results[-1].metric} {figure:.4f} (test)"
    return StageResult(
        key=key,
        outputs=outputs,
        summary={"students": ZooResult(results).table()},
        errors=tuple(errors),
    )


def _check_size(zoo: Zoo, train: Dataset, max_bytes: int, where: str) -> None:
    """Refuse a student whose float32 weights exceed ``max_bytes`` (built, not trained)."""
    for member in plan_zoo(zoo, train):
        model = member.build(train.n_classes, 0)
        size = 4 * sum(p.numel() for p in model.parameters())
        if size > max_bytes:
            raise ConfigError(
                f"distill.{where}: {member.id} has {format_size(size)} of float32 weights, above "
                f"distill.max_size {format_size(max_bytes)}; shrink its hparams or raise max_size"
            )


def _teachers(ctx: StageContext, zoo: Zoo, with_test: bool) -> list[tuple[Zoo, TopK]]:
    """The students of ``zoo`` split by teacher: one (zoo, out-of-fold teacher) pair, or one
    per model family when ``distill.family``."""
    section = ctx.recipe.distill
    assert section is not None
    if not section.family:
        stores = ctx.inputs["ensemble"]["outputs"]["stores"]
        name = ctx.inputs["ensemble"]["outputs"]["teacher"] if section.teacher == "best" else None
        store = Predictions.open(ctx.run / stores[name or section.teacher])
        return [(zoo, store.oof.topk())]
    members = stage_members(ctx, None, with_test)
    grouped = families(members)
    pairs = []
    for family in dict.fromkeys(m.name for m in zoo.members):
        if family not in grouped:
            raise DataError(
                f"distill.family: no {family} member of the zoo was trained, so its students "
                "have no teacher; fix the zoo or set family: false"
            )
        chosen = zoo.model_copy(update={"members": [m for m in zoo.members if m.name == family]})
        pairs.append((chosen, family_teacher(members, grouped[family])))
    return pairs
