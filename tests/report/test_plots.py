"""The report's charts: one inline ``<svg>`` each, text kept as text, nothing that fetches, ids
that do not collide between charts on one page."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from webly.report.plots import (
    Point,
    Step,
    band_bars,
    class_bars,
    confidence_histogram,
    frequency_curve,
    frontier,
    heatmap,
    stage_times,
    waterfall,
)


def ids(svg: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', svg))


def test_every_chart_is_one_inline_svg_with_its_labels_as_text() -> None:
    edges = np.linspace(0, 1, 11)
    charts = {
        "accuracy (test)": waterfall(
            [Step("best member: mlp", 0.5), Step("ensemble", 0.55)], "accuracy", "result"
        ),
        "confidence of the top prediction": confidence_histogram(
            edges, np.arange(10), np.arange(10)[::-1], "confidence of the top prediction"
        ),
        "share of wrong labels": class_bars(
            ["a", "b"], np.array([0.4, 0.1]), "share of wrong labels", "noise"
        ),
        "given label": heatmap(
            np.array([[0, 3], [5, 0]]), ["a", "b"], ["a", "b"], "true", "given label"
        ),
        "classes, most frequent first (rank)": frequency_curve(
            np.array([500, 90, 30, 5]),
            np.array([0.9, 0.6, np.nan, 0.1]),
            np.array([0, 1, 1, 2]),
            "top-1 accuracy",
        ),
        "top-1 accuracy": band_bars(
            {"before": {"head": 0.9, "medium": 0.5, "tail": 0.1}}, "top-1 accuracy"
        ),
        "seconds (wall clock)": stage_times(["data", "zoo"], [0.5, 12.0], ["done", "failed"]),
    }
    seen: set[str] = set()
    for label, svg in charts.items():
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
        assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<metadata" not in svg
        assert f">{label}<" in svg.replace("\n", "")  # text, not glyph outlines
        assert not ids(svg) & seen  # salted by the chart's name
        seen |= ids(svg)


def test_waterfall_labels_each_change() -> None:
    svg = waterfall(
        [Step("best", 0.80), Step("ensemble", 0.85), Step("distilled", 0.83)], "GAP@20", "end"
    )
    for text in (">0.8000<", ">+0.0500<", ">-0.0200<", ">0.8300<", ">end<"):
        assert text in svg


def test_bands_without_a_figure_are_marked() -> None:
    svg = band_bars({"after": {"head": 0.7, "medium": math.nan, "tail": math.nan}}, "AP")
    assert svg.count(">n/a<") == 2 and ">0.700<" in svg


@pytest.mark.parametrize(("budget", "drawn"), [(5_000, True), (10**12, False)])
def test_frontier_draws_the_budget_only_near_the_candidates(budget: int, drawn: bool) -> None:
    points = [
        Point("final mlp fp16", "final", 1_000, 0.40, True, True),
        Point("member mlp", "ensemble", 4_000, 0.35, False, False),
        Point("stacker", "stacker", 20_000, 0.45, True, False),
    ]
    svg = frontier(points, budget, "accuracy")
    assert (">budget " in svg) is drawn
    assert ">final mlp fp16<" in svg and ">stacker<" in svg  # the frontier is named
