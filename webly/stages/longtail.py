"""The ``longtail`` stage: the recipe's ``longtail`` section run by
`webly.longtail.run.run_longtail` (the final distilled network's classifier re-balanced for
the long tail, chosen on held-out rows) into ``RUN/longtail/``, on the distill stage's final
network and students and the run's data and folds. ``webly longtail`` makes the same call from
its options.

Its outputs ``model`` and ``final`` (id -> store) are the distill stage's keys, so
`webly.compress.run.run_final` (compress, export) deploys the adjusted network in place of
distill's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from webly.config import Recipe
from webly.longtail.run import LongtailInputs, run_longtail
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
    distill = ctx.inputs["distill"]["outputs"]
    if "model" not in distill:
        message = "longtail: the distill stage made no final model to adjust; see its errors"
        return StageResult(key=message, errors=(message,))
    ((final, store),) = distill["final"].items()
    train, test = splits(ctx)
    assert test is not None  # distill.final trains only with a test split to predict
    folds = ctx.output("folds", "folds")
    assert folds is not None  # the folds stage records it
    inputs = LongtailInputs(
        final, ctx.run / distill["model"], ctx.run / store, train, test, np.load(folds),
        students={name: ctx.run / path for name, path in distill.get("students", {}).items()},
    )  # fmt: skip
    result = run_longtail(section, inputs, ctx.folder)
    return StageResult(
        key=result.key,
        outputs={
            "model": str(result.model.relative_to(ctx.run)),
            "final": {n: str(p.relative_to(ctx.run)) for n, p in result.final.items()},
        },
        summary=result.summary,
    )
