"""The run section: each stage's state, finish time, seconds and key figure, as a table and a
chart, and the resolved recipe that made the run."""

from __future__ import annotations

from webly.report.blocks import Chart, Code, Section, Table
from webly.report.plots import stage_times
from webly.report.run_files import RunFiles


def run_section(files: RunFiles) -> Section:
    """The stages of the run in ``files`` and its recipe."""
    section = Section(
        "run",
        "Stages and recipe",
        "Where each stage stands (as webly status RUN tells it) and the recipe, defaults "
        "filled in.",
    )
    columns = ("stage", "state", "finished (UTC)", "seconds", "key figure")
    rows = [
        (
            s.name,
            s.state,
            (s.finished or "").replace("T", " ").removesuffix("Z"),
            f"{s.seconds:,.1f}" if s.seconds is not None else "",
            s.key,
        )
        for s in files.statuses
    ]
    section.blocks.append(Table("Stages", columns, rows, frozenset({"seconds"}), wide=True))
    timed = [s for s in files.statuses if s.seconds is not None]
    if timed:
        section.blocks.append(
            Chart(
                "Time per stage",
                stage_times(
                    [s.name for s in timed],
                    [float(s.seconds or 0.0) for s in timed],
                    [s.state for s in timed],
                ),
                "Wall-clock seconds of each stage's latest run (blue done, red failed, orange "
                "unfinished, grey stale); a stage found done was not run again.",
            )
        )
    section.blocks.append(Code("Resolved recipe (RUN/recipe.yaml)", files.recipe_text, wide=False))
    return section
