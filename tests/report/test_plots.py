"""The report's charts: one inline ``<svg>`` each, text kept as text, nothing that fetches, ids
that do not collide between charts on one page."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from webly.report.plots import (
    CLASS_TICKS,
    Point,
    Step,
    band_bars,
    class_bars,
    confidence_histogram,
    found_and_true,
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
        "classes, most frequent first": frequency_curve(
            np.array([500, 90, 30, 5]),
            np.array([0.9, 0.6, np.nan, 0.1]),
            np.array([0, 1, 1, 2]),
            "top-1 accuracy",
            ["cat", "dog", "emu", "yak"],
        ),
        "rows with a wrong label": found_and_true(
            ["rows with a wrong label"], np.array([0.073]), np.array([0.675])
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


def test_the_frequency_curve_names_its_classes() -> None:
    few = [f"class {i}" for i in range(12)]
    svg = frequency_curve(np.arange(12, 0, -1), np.full(12, 0.5), np.zeros(12, int), "AP", few)
    assert all(f">{name}<" in svg for name in few)  # every class when they fit
    many = [f"c{i:04d}" for i in range(1000)]
    svg = frequency_curve(np.arange(1000, 0, -1), np.full(1000, 0.5), np.zeros(1000, int), "AP",
                          many)  # fmt: skip
    named = [name for name in many if f">{name}<" in svg]
    assert named[0] == "c0000" and named[-1] == "c0999" and len(named) == CLASS_TICKS


def test_found_and_true_label_both_bars() -> None:
    svg = found_and_true(["rows", "labels"], np.array([0.073, 0.2]), np.array([0.675, 0.1]))
    for text in (">7.3%<", ">67.5%<", ">20.0%<", ">10.0%<", ">found<", ">true<"):
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
