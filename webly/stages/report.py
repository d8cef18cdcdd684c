"""The ``report`` stage, the last one and always on: ``RUN/report/report.html``, the run's
figures in one static page (`webly.report.build_report`), built from the manifests of every
earlier stage and the artifacts they point at."""

from __future__ import annotations

from typing import Any

from webly.config import Recipe
from webly.report import build_report
from webly.rundir import ReportRecord
from webly.stages.context import StageContext, StageResult


def report_config(recipe: Recipe) -> dict[str, Any]:
    return recipe.report.model_dump(mode="json")


def make_report(ctx: StageContext) -> StageResult:
    """Write the run's HTML report."""
    path = build_report(ctx.run)
    relative = path.relative_to(ctx.run)
    return StageResult(
        key=f"{relative}: {path.stat().st_size / 1e3:,.0f} KB, open it in a browser",
        record=ReportRecord(report=path),
    )
