"""The compression section: the accuracy / size frontier of the compress stage
(``frontier.json``): every candidate the run could deploy, the frontier, the budget and the
choice."""

from __future__ import annotations

from webly.ensemble.budget import format_size
from webly.report.blocks import Chart, Note, Section, Table
from webly.report.plots import Point, frontier
from webly.report.run_files import RunFiles


def compression_section(files: RunFiles) -> Section:
    """The compression section of the run in ``files``."""
    section = Section(
        "compression",
        "Accuracy against size",
        "What the run could deploy, by the bytes of the files that load it.",
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
                f"{metric} on the {found['scored_on']}; the ring marks the choice: the most "
                f"accurate candidate within {format_size(budget)}.",
            )
        )
    columns = ("candidate", "kind", "size", metric, "on frontier", "fits", "chosen")
    rows = [
        (
            c["name"],
            c["kind"],
            format_size(int(c["size"])),
            f"{c['metric']:.4f}" if c["metric"] is not None else "",
            "yes" if c["name"] in on_frontier else "",
            "yes" if c["size"] <= budget else "no",
            "chosen" if c["name"] == found["chosen"] else "",
        )
        for c in candidates
    ]
    section.blocks.append(
        Table(
            "Candidates",
            columns,
            rows,
            frozenset({"size", metric}),
            f"Budget {format_size(budget)}; by size.",
        )
    )
    return section
