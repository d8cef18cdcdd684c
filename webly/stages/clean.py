"""The ``clean`` stage: noisy labels found from the zoo's out-of-fold predictions, repaired, and
the zoo trained again on the repaired labels (`webly.clean.iterate.clean_iteratively`).

``RUN/clean/round-<r>/`` holds round r's zoo, `NoiseReport` and table row; round 0 is the zoo
stage's own zoo (``round-0/zoo`` links to ``RUN/zoo``: its members are found finished, not
trained again). The last round's members are what the ensemble stage combines.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from webly.clean.actions import ActionRules
from webly.clean.iterate import REPORT_DIR, ZOO_DIR, clean_iteratively
from webly.config import Recipe
from webly.stages.context import StageContext, StageResult, splits


def clean_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.clean
    return {"clean": section.model_dump(mode="json") if section else None}


def make_clean(ctx: StageContext) -> StageResult:
    """Clean ``clean.rounds`` times; record each round's figures and the last zoo's stores."""
    section = ctx.recipe.clean
    if section is None:
        return StageResult(key="not in the recipe")
    train, test = splits(ctx)
    folds_file = ctx.output("folds", "folds")
    assert folds_file is not None  # the folds stage records it
    first = ctx.folder / "round-0"
    first.mkdir(parents=True, exist_ok=True)
    link = first / ZOO_DIR
    if not link.exists():
        os.symlink(os.path.relpath(ctx.run / "zoo", first), link)
    result = clean_iteratively(
        ctx.recipe.zoo, train, test, ctx.folder, rounds=section.rounds, method=section.method,
        rules=ActionRules(**section.rules), folds=np.load(folds_file), options=section.options,
    )  # fmt: skip
    last = result.rows[-1]
    zoo_dir = f"{ctx.name}/round-{last.round}/{ZOO_DIR}"
    members = {
        m.member_id: f"{zoo_dir}/{m.member_id}/predictions"
        for m in ctx.recipe.zoo.members
        if (ctx.run / zoo_dir / m.member_id / "predictions" / "manifest.json").is_file()
    }
    first_row = result.rows[0]
    key = (
        f"{section.rounds} round(s): {last.dropped:,} rows dropped, {last.relabelled:,} "
        f"relabelled; noise estimate {first_row.noise_estimate:.3f} -> {last.noise_estimate:.3f}"
    )
    if last.test_metric is not None and first_row.test_metric is not None:
        key += f"; test {result.metric} {first_row.test_metric:.4f} -> {last.test_metric:.4f}"
    return StageResult(
        key=key,
        outputs={
            "members": members,
            "report": f"{ctx.name}/round-{last.round - 1}/{REPORT_DIR}",
        },
        summary={"metric": result.metric, "rounds": result.table()},
    )
