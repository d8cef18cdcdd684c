"""The ``zoo`` stage: every member of the recipe's zoo trained out-of-fold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from webly.config import Recipe
from webly.errors import DataError
from webly.predictions import Predictions
from webly.rundir import FoldsRecord, ZooRecord
from webly.stages.context import StageContext, StageResult, splits
from webly.train.oof import MODEL_DIR, STORE_DIR, MemberResult, fit_oof, zoo_settings


def zoo_config(recipe: Recipe) -> dict[str, Any]:
    return zoo_settings(recipe.zoo)  # holds the recipe's folds.n and seed


def make_zoo(ctx: StageContext) -> StageResult:
    """Every member out-of-fold on the folds artifact (`fit_oof`: finished members whose
    config is unchanged are kept). Folders of members no longer in the recipe are left on disk
    and not evaluated; each is named, as kept when it finished training, else as never
    finished (a member that failed or was stopped before its prediction store was made)."""
    train, test = splits(ctx)
    folds = np.load(ctx.need(FoldsRecord).folds)
    zoo = ctx.recipe.zoo
    result = fit_oof(zoo, train, test, ctx.folder, folds=folds, executor=ctx.executor)
    listed = {spec.member_id for spec in zoo.members}
    others = sorted(
        p.name
        for p in ctx.folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in listed
    )
    kept = [name for name in others if _trained(ctx.folder / name)]
    if kept:
        ctx.console.print(f"zoo: kept, not evaluated (no longer in the recipe): {', '.join(kept)}")
    for name in others:
        if name not in kept:
            ctx.console.print(
                f"zoo: {name} never finished training ({_saved_folds(ctx.folder / name)}); "
                "no longer in the recipe, its folder is left on disk",
                highlight=False,
            )
    done = [m for m in result.members if m.error is None]
    key = f"{len(done)} of {len(result.members)} members done"
    if result.failed:
        key += f", {len(result.failed)} failed"
    if done:
        best = max(done, key=_figure)
        on = "test" if best.test_metric is not None else "oof"
        key += f"; best {best.id}: {best.metric} {_figure(best):.4f} ({on})"
    return StageResult(
        key=key,
        record=ZooRecord(
            members={m.id: ctx.folder / m.id / STORE_DIR for m in done}, table=result.table()
        ),
        errors=tuple(f"member {m.id} failed: {m.error}" for m in result.failed),
    )


def _trained(folder: Path) -> bool:
    """Whether the member folder ``folder`` holds a finished prediction store."""
    try:
        Predictions.open(folder / STORE_DIR)
    except DataError:
        return False
    return True


def _saved_folds(folder: Path) -> str:
    """How many fold models of an unfinished member were saved, in words."""
    saved = sum((fold / MODEL_DIR).is_dir() for fold in folder.glob("fold-*"))
    return f"{saved} fold model{'s' if saved != 1 else ''} saved"


def _figure(member: MemberResult) -> float:
    """A trained member's metric: on the test split when it has labels, else out-of-fold."""
    figure = member.test_metric if member.test_metric is not None else member.oof_metric
    assert figure is not None  # a trained member has its out-of-fold figures
    return figure
