"""The ``compress`` and ``export`` stages: what fits the size budget, and the deployable model.

``RUN/compress/`` holds ``frontier.json`` and ``choice.json`` (`choose_under_budget`) and, when
the choice is the final network, that network's folder; ``RUN/export/model/`` the ONNX export
of the final network, compressed when the compress stage chose a compressed form of it.
"""

from __future__ import annotations

from typing import Any

from webly.compress.budget import choose_under_budget
from webly.compress.export import export_onnx
from webly.compress.options import PredictOptions
from webly.compress.run import run_final
from webly.config import Recipe
from webly.stages.context import StageContext, StageResult, splits
from webly.train.loop import TrainConfig

CHOICE, MODEL = "choice", "model"


def compress_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.compress
    return {"compress": section.model_dump(mode="json") if section else None}


def make_compress(ctx: StageContext) -> StageResult:
    """Weigh the run's candidates against ``compress.max_size`` and write the choice."""
    section = ctx.recipe.compress
    if section is None:
        return StageResult(key="not in the recipe")
    result = choose_under_budget(
        ctx.run, section.max_size, ctx.folder / CHOICE, methods=tuple(section.methods),
        min_elements=section.min_elements, overwrite=True,
    )  # fmt: skip
    chosen = result.chosen
    outputs: dict[str, Any] = {"choice": f"{ctx.name}/{CHOICE}", "kind": chosen.kind}
    if chosen.kind == "final":
        outputs["network"] = f"{ctx.name}/{CHOICE}"
        outputs["metrics"] = {result.metric: chosen.metric}
    return StageResult(
        key=str(result).split(";")[0],
        outputs=outputs,
        summary={"frontier": result.table(), "scored_on": result.scored_on},
    )


def export_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.export
    return {"export": section.model_dump(mode="json") if section else None}


def export_model(ctx: StageContext) -> StageResult:
    """Export the final network (its compressed form when compress chose it) with its figures,
    the training store's layout and where it came from."""
    section = ctx.recipe.export
    if section is None:
        return StageResult(key="not in the recipe")
    final = run_final(ctx.run)
    compressed = ctx.inputs["compress"]["outputs"].get("network")
    folder = ctx.run / compressed if compressed else final.folder
    metrics = ctx.inputs["compress"]["outputs"].get("metrics") if compressed else final.metrics
    train, _ = splits(ctx)
    spec = (ctx.recipe.distill.final if ctx.recipe.distill is not None else None) or {}
    settings = {**ctx.recipe.zoo.train, **(spec.get("train") or {})}
    exported = export_onnx(
        folder, ctx.folder / MODEL, layout=train.layout, metrics=metrics,
        predict_options=PredictOptions(**section.predict), opset=section.opset, overwrite=True,
        max_frames=settings.get("max_frames", TrainConfig.max_frames),
        run={
            "folder": str(ctx.run.resolve()), "final": final.id, "final_stage": final.stage,
            "model_folder": str(folder.resolve()), "metrics_on": final.measured_on,
        },
    )  # fmt: skip
    size = sum(entry["bytes"] for entry in exported.info["files"].values())
    form = "compressed " if compressed else ""
    return StageResult(
        key=f"{form}{final.id} exported: {size / 1e6:.2f} MB in {ctx.name}/{MODEL}",
        outputs={"model": f"{ctx.name}/{MODEL}"},
        summary={"files": exported.info["files"], "metrics": metrics},
    )
