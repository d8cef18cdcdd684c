"""The ``clean`` stage: noisy labels found from the zoo's out-of-fold predictions, repaired, and
the zoo trained again on the repaired labels: the recipe's ``clean`` section run by
`webly.clean.run.run_clean`, the call ``webly clean`` makes too.

``RUN/clean/round-<r>/`` holds round r's zoo, `NoiseReport` and table row; round 0 is the zoo
stage's own zoo (``round-0/zoo`` links to ``RUN/zoo``: its members are found finished, not
trained again). The members of the round with the best validation metric (out-of-fold, against
the store's labels; round 0 when cleaning did not help) are what the ensemble stage combines.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from webly.clean.iterate import ZOO_DIR, round_folder
from webly.clean.run import run_clean
from webly.config import Recipe
from webly.data.store import MANIFEST
from webly.rundir import CleanRecord, FoldsRecord
from webly.stages.context import StageContext, StageResult, splits
from webly.train.oof import STORE_DIR


def clean_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.clean
    return {"clean": section.model_dump(mode="json") if section else None}


def make_clean(ctx: StageContext) -> StageResult:
    """Clean up to ``clean.rounds`` times; record each round's figures and the stores of the
    best round's zoo."""
    section = ctx.recipe.clean
    if section is None:
        return StageResult(key="not in the recipe")
    train, test = splits(ctx)
    folds = np.load(ctx.need(FoldsRecord).folds)
    first = round_folder(ctx.folder, 0)
    first.mkdir(parents=True, exist_ok=True)
    link = first / ZOO_DIR
    if not link.exists():
        os.symlink(os.path.relpath(ctx.rundir.folder("zoo"), first), link)
    result = run_clean(
        section, ctx.recipe.zoo, train, test, ctx.folder, folds=folds, executor=ctx.executor
    )
    best = result.rows[result.best]
    zoo_dir = round_folder(ctx.folder, best.round) / ZOO_DIR
    members = {
        m.member_id: zoo_dir / m.member_id / STORE_DIR
        for m in ctx.recipe.zoo.members
        if (zoo_dir / m.member_id / STORE_DIR / MANIFEST).is_file()
    }
    first_row = result.rows[0]
    key = (
        f"round {best.round} of {len(result.rows) - 1} kept (valid {result.metric} "
        f"{first_row.valid_metric:.4f} -> {best.valid_metric:.4f}): {best.dropped:,} rows "
        f"dropped, {best.relabelled:,} relabelled; noise estimate "
        f"{first_row.noise_estimate:.3f} -> {best.noise_estimate:.3f}"
    )
    if best.test_metric is not None and first_row.test_metric is not None:
        key += f"; test {result.metric} {first_row.test_metric:.4f} -> {best.test_metric:.4f}"
    return StageResult(
        key=key,
        record=CleanRecord(
            members=members,
            # the detection whose actions round ``best`` trained on (round 0: what was found)
            report=result.reports[max(best.round - 1, 0)],
            metric=result.metric,
            rounds=result.table(),
            best=result.best,
            reports=list(result.reports),
        ),
    )
