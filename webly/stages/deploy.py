"""The ``compress`` and ``export`` stages: what fits the budgets, and the deployable model.

``RUN/compress/`` holds ``frontier.json`` and ``choice.json`` (`run_compress`) and, when the
choice is the final network, that network's folder; ``RUN/export/model/`` the export of the
choice (`run_export`): the final network, compressed when the compress stage chose a compressed
form of it, a blend of members or the stacker. ``webly compress RUN`` and ``webly export RUN``
make the same calls on the same sections.
"""

from __future__ import annotations

from typing import Any

from webly.compress.choice import run_compress, run_export
from webly.config import Recipe
from webly.deploy.exported import shipped_bytes
from webly.rundir import CompressRecord, ExportRecord
from webly.sizes import format_size
from webly.stages.context import StageContext, StageResult, splits

CHOICE, MODEL = "choice", "model"


def compress_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.compress
    return {"compress": section.model_dump(mode="json") if section else None}


def make_compress(ctx: StageContext) -> StageResult:
    """Weigh the run's candidates against ``compress.max_size`` and write the choice."""
    section = ctx.recipe.compress
    if section is None:
        return StageResult(key="not in the recipe")
    result = run_compress(section, ctx.rundir, ctx.folder / CHOICE, overwrite=True)
    return StageResult(
        key=str(result).split(";")[0],
        record=CompressRecord(
            choice=ctx.folder / CHOICE,
            kind=result.chosen.kind,
            frontier=result.table(),
            scored_on=result.scored_on,
            reported_on=result.reported_on,
            max_bytes=result.max_bytes,
        ),
    )


def export_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.export
    return {"export": section.model_dump(mode="json") if section else None}


def export_model(ctx: StageContext) -> StageResult:
    """Export what the compress stage chose (without one, the best candidate within 1 GB), with
    its figures, the training store's layout and where it came from."""
    section = ctx.recipe.export
    if section is None:
        return StageResult(key="not in the recipe")
    train, _ = splits(ctx)
    compressed = ctx.input(CompressRecord)
    exported = run_export(
        section, ctx.rundir, ctx.folder / MODEL,
        choice=compressed.choice if compressed is not None else None, layout=train.layout,
        overwrite=True,
    )  # fmt: skip
    size = shipped_bytes(exported.folder)
    candidate = exported.info["run"]["candidate"]
    return StageResult(
        key=f"{candidate} exported: {format_size(size)} in {ctx.name}/{MODEL}",
        record=ExportRecord(
            model=ctx.folder / MODEL,
            files=exported.info["files"],
            metrics=exported.info["metrics"],
        ),
    )
