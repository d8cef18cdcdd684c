"""The compression section: the accuracy / size / latency frontier of the compress stage
(``frontier.json``): every candidate the run could deploy with its validation figure (what it
was chosen on), its test figure (reported only), its size and milliseconds a row, the frontier,
the budgets and the choice."""

from __future__ import annotations

from typing import Any

from webly.report.blocks import Chart, Note, Section, Table
from webly.report.plots import Point, frontier
from webly.report.run_files import RunFiles
from webly.sizes import format_size


def compression_section(files: RunFiles) -> Section:
    """The compression section of the run in ``files``."""
    section = Section(
        "compression",
        "Accuracy against size and latency",
        "What the run could deploy, by the bytes of the files that load it and the milliseconds "
        "a row ONNX Runtime takes on the machine that weighed them.",
    )
    found = files.frontier
    if found is None:
        text = (
            "No compress stage in this recipe: the accuracy / size frontier comes from it (add "
            "compress: {max_size: 1GB})."
            if files.recipe.compress is None
            else "The compress stage has not finished: no frontier yet."
        )
        section.blocks.append(Note(text, missing=True))
        return section
    metric, budget = found["metric"], int(found["max_bytes"])
    latency = found.get("max_latency_ms")
    budgets = format_size(budget) + (f" and {latency:g} ms a row" if latency else "")
    on_frontier = {c["name"] for c in found["frontier"]}
    candidates = sorted(found["candidates"], key=lambda c: (c["size"], c["name"]))
    points = [
        Point(
            c["name"],
            c["kind"],
            int(c["size"]),
            float(c["metric"]),
            c["name"] in on_frontier,
            c["name"] == found["chosen"],
        )
        for c in candidates
        if c["metric"] is not None
    ]
    if points:
        section.blocks.append(
            Chart(
                "Accuracy / size frontier",
                frontier(points, budget, metric),
                f"{metric} on {found['scored_on']}; the ring marks the choice: the most "
                f"accurate candidate there within {budgets}.",
            )
        )
    columns = ("candidate", "size", "ms/row", "validation", "test", "")
    rows = [
        (
            c["name"],
            format_size(int(c["size"])),
            _figure(c.get("latency_ms"), 3),
            _figure(c["metric"], 4),
            _figure(c.get("test_metric"), 4),
            _status(c, found["chosen"], on_frontier, budget, latency),
        )
        for c in candidates
    ]
    tested = found.get("reported_on")
    section.blocks.append(
        Table(
            "Candidates",
            columns,
            rows,
            frozenset({"size", "ms/row", "validation", "test"}),
            f"{metric} of every candidate, by size; budget {budgets}. Chosen on "
            f"{found['scored_on']}"
            + (f"; the test figures ({tested}) are reported only." if tested else "."),
        )
    )
    return section


def _figure(value: float | None, digits: int) -> str:
    return f"{value:.{digits}f}" if value is not None else ""


def _status(
    candidate: dict[str, Any], chosen: str, frontier: set[str], budget: int, latency: float | None
) -> str:
    """``chosen``, ``over budget``, ``frontier`` (on the accuracy/size/latency frontier) or
    nothing."""
    if candidate["name"] == chosen:
        return "chosen"
    if not _fits(candidate, budget, latency):
        return "over budget"
    return "frontier" if candidate["name"] in frontier else ""


def _fits(candidate: dict[str, Any], budget: int, latency: float | None) -> bool:
    ms = candidate.get("latency_ms")
    return int(candidate["size"]) <= budget and (
        latency is None or (ms is not None and ms <= latency)
    )
