"""The ``ensemble`` stage: the recipe's ``ensemble`` section run by
`webly.ensemble.fit.run_ensemble` (the call ``webly ensemble`` makes too): the zoo's
blends and its LightGBM stacker, each a prediction store in ``RUN/ensemble/``. The teacher of the
distill stage is the entry with the best out-of-fold metric."""

from __future__ import annotations

from typing import Any

import numpy as np

from webly.config import Recipe
from webly.ensemble.fit import STACKER, run_ensemble
from webly.ensemble.members import Members, open_members
from webly.errors import DataError
from webly.rundir import EnsembleRecord, FoldsRecord
from webly.stages.context import StageContext, StageResult, scoring, splits

__all__ = ["STACKER", "ensemble_config", "make_ensemble", "stage_members"]


def ensemble_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.ensemble
    return {"ensemble": section.model_dump(mode="json") if section else None, "seed": recipe.seed}


def make_ensemble(ctx: StageContext) -> StageResult:
    """Fit every blend of the recipe and the stacker on the members' out-of-fold predictions
    and write each one's out-of-fold and test predictions with their figures."""
    section = ctx.recipe.ensemble
    if section is None:
        return StageResult(key="not in the recipe")
    train, test = splits(ctx)
    members = stage_members(ctx, section.members, with_test=test is not None)
    scored = scoring(ctx)
    entries = run_ensemble(
        section, members, train, ctx.folder, folds=np.load(ctx.need(FoldsRecord).folds),
        seed=ctx.recipe.seed, test_labels=scored.labels if scored.split == "test" else None,
        k=ctx.recipe.zoo.k,
    )  # fmt: skip
    if not entries:
        return StageResult(key="no blend and no stacker in the recipe")
    teacher = max(entries, key=lambda e: e.oof_metric)
    figure = teacher.test_metric if teacher.test_metric is not None else teacher.oof_metric
    metric = scored.data.task.metric().name
    on = "test" if teacher.test_metric is not None else "oof"
    made = {
        e.name: {
            "path": str(e.path.relative_to(ctx.run)), "oof_metric": e.oof_metric,
            "test_metric": e.test_metric, "seconds": e.seconds,
        }
        for e in entries
    }  # fmt: skip
    return StageResult(
        key=f"best: {teacher.name}, {metric} {figure:.4f} ({on})",
        record=EnsembleRecord(
            stores={e.name: e.path for e in entries}, teacher=teacher.name, entries=made,
            members=list(members.names),
        ),
    )  # fmt: skip


def stage_members(ctx: StageContext, names: list[str] | None, with_test: bool) -> Members:
    """The zoo members the run ends with (`RunDir.members`), or ``names`` of them, opened and
    checked."""
    trained = ctx.rundir.members()
    wanted = names if names is not None else list(trained)
    missing = [name for name in wanted if name not in trained]
    if missing:
        raise DataError(
            f"member(s) {', '.join(missing)} were not trained (failed or left out); fix the "
            "zoo or drop them from ensemble.members"
        )
    paths = {name: trained[name] for name in wanted}
    return open_members(paths, ("oof", "test") if with_test else ("oof",))
