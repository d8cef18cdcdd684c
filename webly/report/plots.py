"""The report's charts: matplotlib figures rendered to inline SVG strings.

Every function takes plain figures (no run directory) and returns one ``<svg>`` element: text
stays text (``svg.fonttype: none``, drawn by the page's fonts, nothing fetched), images (the
heatmap's cells) inline as data URIs, no XML prologue, no metadata, and ids prefixed by the
chart's name so several charts share one page.
Figures are built on `matplotlib.figure.Figure` directly, never through pyplot's global state.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

from webly.sizes import format_size

BLUE, GREEN, RED, GREY, ORANGE, PURPLE = (
    "#3b6ea8",
    "#3a9a5b",
    "#c8553d",
    "#8a96a3",
    "#d99a2b",
    "#7a5aa6",
)
STATE_COLOURS = {"done": BLUE, "failed": RED, "unfinished": ORANGE, "stale": GREY}
KIND_COLOURS = {"final": BLUE, "ensemble": GREEN, "stacker": PURPLE}
BAND_COLOURS = {"head": "#e8eef6", "medium": "#f4f4f4", "tail": "#fbefe6"}

_STYLE: dict[str, Any] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e6ea",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "svg.fonttype": "none",
}
_WIDTH, _HEIGHT = 6.4, 3.3  # inches of a half-page chart; 1 in = 72 SVG units
CLASS_TICKS = 40  # class names under the frequency curve at most
_PLAIN = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")  # log axes: 20, not 2x10^1


def _styled(extra: dict[str, Any] | None = None) -> AbstractContextManager[Any]:
    """The report's matplotlib settings (and ``extra``) for the ``with`` block."""
    return matplotlib.rc_context(cast(Any, {**_STYLE, **(extra or {})}))


@dataclass(frozen=True)
class _Margins:
    """Room around the axes in inches: for tick labels, axis labels, a legend or a colour bar.
    Fixed per chart (a layout engine would triple the time a chart takes)."""

    left: float = 0.75
    right: float = 0.15
    bottom: float = 0.5
    top: float = 0.15


def _figure(
    height: float = _HEIGHT, width: float = _WIDTH, margins: _Margins = _Margins()
) -> Figure:
    with _styled():
        fig = Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=margins.left / width,
        right=1 - margins.right / width,
        bottom=margins.bottom / height,
        top=1 - margins.top / height,
    )
    return fig


def _label_inches(labels: Sequence[str], size: float = 8) -> float:
    """About the width of the longest of ``labels`` at ``size`` points (DejaVu Sans)."""
    return 0.55 * size / 72 * max((len(label) for label in labels), default=0)


def _svg(fig: Figure, name: str) -> str:
    """The figure as one ``<svg>`` element whose ids (and the references to them) start with
    ``name``, so that charts share a page without clashing ids."""
    buffer = io.StringIO()
    with _styled():
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    svg = text[text.index("<svg") :]
    start, end = svg.index("<metadata>"), svg.index("</metadata>") + len("</metadata>")
    svg = svg[:start] + svg[end:]
    return re.sub(r'(id="|href="#|url\(#)', rf"\g<1>{name}-", svg)


def _bar_values(ax: Any, rows: np.ndarray, values: Sequence[float] | np.ndarray, fmt: str) -> None:
    """Write each horizontal bar's value (``fmt``) just right of its end."""
    for row, value in zip(rows, values, strict=True):
        ax.annotate(
            fmt.format(value), (value, row), xytext=(3, 0), textcoords="offset points",
            va="center", fontsize=7,
        )  # fmt: skip


def _short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


@dataclass(frozen=True)
class Step:
    """One bar of a waterfall: its label and the figure after it."""

    label: str
    value: float


def waterfall(steps: Sequence[Step], metric: str, total: str) -> str:
    """A waterfall: the first step's figure as a bar, each later step's change as a floating
    bar (green up, red down), and the last figure as a bar labelled ``total``."""
    with _styled():
        fig = _figure(margins=_Margins(bottom=0.62))
        ax = fig.add_subplot()
        values = [s.value for s in steps]
        low, high = min(values), max(values)
        pad = max(high - low, 0.01) * 0.6
        floor = max(low - pad, 0.0)
        labels = [s.label for s in steps] + [total]
        for i, step in enumerate(steps):
            if i == 0:
                bottom, height, colour, text = floor, step.value - floor, GREY, f"{step.value:.4f}"
            else:
                delta = step.value - values[i - 1]
                bottom, height = min(values[i - 1], step.value), abs(delta)
                colour, text = (GREEN if delta >= 0 else RED), f"{delta:+.4f}"
            ax.bar(i, max(height, (high - floor) * 0.004), bottom=bottom, color=colour, width=0.6)
            ax.annotate(
                text,
                (i, bottom + height),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
            if i:
                ax.plot([i - 1.3, i - 0.3], [values[i - 1]] * 2, color=GREY, lw=0.8, ls=":")
        last = len(steps)
        ax.bar(last, values[-1] - floor, bottom=floor, color=BLUE, width=0.6)
        ax.annotate(
            f"{values[-1]:.4f}",
            (last, values[-1]),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            weight="bold",
        )
        ax.set_xticks(range(len(labels)), [textwrap.fill(t, 11) for t in labels], fontsize=7.5)
        ax.set_ylim(floor, high + pad * 0.5)
        ax.set_ylabel(f"{metric} (test)")
        ax.grid(axis="x", visible=False)
        return _svg(fig, "waterfall")


def confidence_histogram(
    edges: np.ndarray, agree: np.ndarray, disagree: np.ndarray, xlabel: str
) -> str:
    """Two histograms over the same ``edges`` (``(n_bins + 1,)``): the rows whose given label
    agrees with the prediction and those whose label disagrees, each as a share of its rows."""
    with _styled():
        fig = _figure(margins=_Margins(top=0.45))
        ax = fig.add_subplot()
        widths = np.diff(edges)
        for counts, colour, what in ((agree, BLUE, "agrees"), (disagree, RED, "disagrees")):
            total = int(counts.sum())
            share = counts / total if total else counts * 0.0
            ax.bar(
                edges[:-1],
                share,
                width=widths,
                align="edge",
                color=colour,
                alpha=0.55,
                edgecolor=colour,
                linewidth=0.6,
                label=f"given label {what} with the prediction ({total:,} rows)",
            )
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share of the group's rows")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0))
        return _svg(fig, "confidence")


def class_bars(
    names: Sequence[str],
    values: np.ndarray,
    xlabel: str,
    name: str,
    truth: np.ndarray | None = None,
) -> str:
    """Horizontal bars, one per class, first at the top, each labelled with its percentage;
    with ``truth`` (same order, shares in [0, 1]) a black tick on each bar at its true value."""
    with _styled():
        shown = [_short(n, 30) for n in names]
        top = 0.45 if truth is not None else 0.15  # room for the legend
        margins = _Margins(left=_label_inches(shown) + 0.2, right=0.3, top=top)
        fig = _figure(height=max(1.6, 0.22 * len(names) + 0.5 + top), margins=margins)
        ax = fig.add_subplot()
        rows = np.arange(len(names))
        ax.barh(rows, values, color=ORANGE, height=0.7, label="estimated")
        _bar_values(ax, rows, values, "{:.0%}")
        highest = float(np.max(values, initial=0.0))
        if truth is not None:
            ax.scatter(truth, rows, marker="|", s=140, linewidths=2, color="black", label="true")
            highest = max(highest, float(np.max(truth, initial=0.0)))
            ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2)
        ax.set_yticks(rows, shown, fontsize=8)
        ax.set_ylim(len(names) - 0.5, -0.5)  # first class on top
        ax.set_xlim(0, min(1.0, highest * 1.2 + 0.02))
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", visible=False)
        return _svg(fig, name)


def found_and_true(measures: Sequence[str], found: np.ndarray, true: np.ndarray) -> str:
    """Pairs of horizontal bars, one pair per measure (first on top): what a detector found
    (orange) and the truth (grey), each a share in [0, 1] labelled with its percentage."""
    with _styled():
        shown = [textwrap.fill(m, 30) for m in measures]
        lines = [line for m in shown for line in m.splitlines()]
        margins = _Margins(left=_label_inches(lines) + 0.2, right=0.45, top=0.45)
        fig = _figure(height=0.62 * len(measures) + 1.0, margins=margins)
        ax = fig.add_subplot()
        rows = np.arange(len(measures))
        for offset, values, colour, label in ((-0.2, found, ORANGE, "found"),
                                              (0.2, true, GREY, "true")):  # fmt: skip
            ax.barh(rows + offset, values, height=0.38, color=colour, label=label)
            _bar_values(ax, rows + offset, values, "{:.1%}")
        ax.set_yticks(rows, shown, fontsize=8)
        ax.set_ylim(len(measures) - 0.5, -0.5)
        highest = float(max(np.max(found, initial=0.0), np.max(true, initial=0.0)))
        ax.set_xlim(0, min(1.0, highest * 1.25 + 0.02))
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.grid(axis="y", visible=False)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2)
        return _svg(fig, "found-true")


def heatmap(
    matrix: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    xlabel: str,
    ylabel: str,
    unit: str = "rows (estimated)",
    name: str = "confusions",
) -> str:
    """A ``(len(rows), len(columns))`` matrix of counts as coloured cells, each annotated; the
    colour bar says the ``unit``, ``name`` prefixes the chart's ids."""
    with _styled():
        row_names, column_names = [_short(n, 22) for n in rows], [_short(n, 18) for n in columns]
        below = 0.6 * _label_inches(column_names, 7) + 0.55  # labels turned 35 degrees
        margins = _Margins(left=_label_inches(row_names, 7) + 0.45, bottom=below, right=0.1)
        fig = _figure(height=max(2.8, 0.3 * len(rows) + below + 0.3), margins=margins)
        ax = fig.add_subplot()
        image = ax.imshow(matrix, cmap="Oranges", aspect="auto", vmin=0)
        top = float(matrix.max(initial=0.0))
        for (r, c), value in np.ndenumerate(matrix):
            if value > 0:
                colour = "white" if value > 0.6 * top else "black"
                ax.text(c, r, f"{value:,.0f}", ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(
            range(len(columns)),
            column_names,
            rotation=35,
            ha="right",
            fontsize=7,
        )
        ax.set_yticks(range(len(rows)), row_names, fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(False)
        fig.colorbar(image, ax=ax, label=unit, shrink=0.8)
        return _svg(fig, name)


def frequency_curve(
    counts: np.ndarray,
    per_class: np.ndarray,
    bands: np.ndarray,
    metric: str,
    names: Sequence[str],
) -> str:
    """Classes sorted by training count (most frequent first): the count curve (log scale)
    and each class's ``metric`` (NaN: no positive in the scored rows) with its running mean,
    over the head / medium / tail bands (``bands``: 0, 1, 2 per class, same order), the
    class ``names`` (same order) under the axis, every one when they fit, else evenly
    spaced ones. Drawn page-wide."""
    with _styled():
        ticks = np.unique(np.linspace(0, len(counts) - 1, min(len(counts), CLASS_TICKS)).round())
        labels = [_short(names[int(t)], 18) for t in ticks]
        below = 0.6 * _label_inches(labels, 7) + 0.5  # names turned 40 degrees
        margins = _Margins(right=0.7, bottom=below)
        fig = _figure(height=3.0 + below, width=2 * _WIDTH, margins=margins)
        ax = fig.add_subplot()
        ranks = np.arange(len(counts))
        for band, name in enumerate(("head", "medium", "tail")):
            where = np.flatnonzero(bands == band)
            if where.size:
                ax.axvspan(where[0] - 0.5, where[-1] + 0.5, color=BAND_COLOURS[name], lw=0)
                ax.annotate(
                    name,
                    ((where[0] + where[-1]) / 2, 1.0),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    va="top",
                    fontsize=8,
                    color=GREY,
                )
        ax.plot(ranks, np.maximum(counts, 0.8), color=GREY, lw=1.6, label="training rows")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_PLAIN)
        shown = np.maximum(counts, 1)
        decades = math.log10(float(shown.max()) / float(shown.min()))
        ax.yaxis.set_minor_formatter(_PLAIN if decades < 1.5 else NullFormatter())
        ax.set_xticks(ticks, labels, rotation=40, ha="right", fontsize=7)
        ax.set_xlabel("classes, most frequent first")
        ax.set_ylabel("training rows of the class (log)")
        ax.set_xlim(-0.5, len(counts) - 0.5)
        right = ax.twinx()
        right.spines["right"].set_visible(True)
        known = ~np.isnan(per_class)
        right.scatter(
            ranks[known],
            per_class[known],
            s=9,
            color=BLUE,
            alpha=0.7,
            label=f"{metric} of the class",
        )
        window = len(counts) // 20
        if window >= 3 and known.sum() > window:
            smooth = _running_mean(ranks[known], per_class[known], window)
            right.plot(ranks[known], smooth, color=BLUE, lw=1.4, label=f"running mean ({window})")
        right.set_ylim(-0.02, 1.05)
        right.set_ylabel(metric)
        right.grid(False)
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        right.legend(handles=handles, loc="lower left")
        return _svg(fig, "frequency")


def _running_mean(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``y`` over ``window`` neighbours by position (same length as ``y``)."""
    kernel = np.ones(window) / window
    padded = np.pad(y, (window // 2, window - 1 - window // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")[: len(x)]


def band_bars(series: dict[str, dict[str, float]], metric: str) -> str:
    """Grouped bars: one group per band (head, medium, tail), one bar per series (e.g.
    before / after); a NaN figure (no class of the band scored) is marked n/a."""
    with _styled():
        fig = _figure(height=2.8, margins=_Margins(bottom=0.35))
        ax = fig.add_subplot()
        bands = ("head", "medium", "tail")
        width = 0.8 / max(1, len(series))
        colours = (GREY, BLUE, GREEN, ORANGE)
        for i, (label, values) in enumerate(series.items()):
            xs = np.arange(len(bands)) + (i - (len(series) - 1) / 2) * width
            for x, band in zip(xs, bands, strict=True):
                value = values.get(band, math.nan)
                shown = 0.0 if math.isnan(value) else value
                ax.bar(
                    x,
                    shown,
                    width=width * 0.92,
                    color=colours[i % len(colours)],
                    label=label if band == "head" else None,
                )
                ax.annotate(
                    "n/a" if math.isnan(value) else f"{value:.3f}",
                    (x, shown),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                )
        ax.set_xticks(range(len(bands)), bands)
        ax.set_ylim(0, 1.1)
        ax.set_ylabel(metric)
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper right", ncols=len(series))
        return _svg(fig, "bands")


@dataclass(frozen=True)
class Point:
    """One candidate of the compression step: name, kind, size in bytes, figure, whether it is
    on the accuracy/size frontier and whether it was chosen."""

    name: str
    kind: str
    size: int
    metric: float
    frontier: bool
    chosen: bool


def frontier(points: Sequence[Point], budget: int, metric: str) -> str:
    """Accuracy against size (log scale) of every candidate, coloured by kind, the frontier
    joined, the choice ringed and the budget drawn when it is near the candidates."""
    with _styled():
        fig = _figure(height=3.5, margins=_Margins(right=0.2))
        ax = fig.add_subplot()
        for kind, colour in KIND_COLOURS.items():
            chosen = [p for p in points if p.kind == kind]
            if chosen:
                ax.scatter(
                    [p.size for p in chosen],
                    [p.metric for p in chosen],
                    s=22,
                    color=colour,
                    label=kind,
                    zorder=3,
                )
        line = sorted((p for p in points if p.frontier), key=lambda p: p.size)
        ax.step(
            [p.size for p in line],
            [p.metric for p in line],
            where="post",
            color=GREY,
            lw=1,
            zorder=2,
            label="frontier",
        )
        for p in line:
            ax.annotate(
                _short(p.name, 28),
                (p.size, p.metric),
                xytext=(4, -9),
                textcoords="offset points",
                fontsize=7,
                color="#444",
            )
        for p in points:
            if p.chosen:
                ax.scatter(
                    [p.size],
                    [p.metric],
                    s=140,
                    facecolors="none",
                    edgecolors=RED,
                    linewidths=1.6,
                    zorder=4,
                    label="chosen",
                )
        ax.set_xscale("log")
        sizes = [p.size for p in points]
        low, high = min(sizes) / 2, max(sizes) * 2.0
        if budget <= high * 5:
            ax.axvline(budget, color=RED, ls="--", lw=1, label=f"budget {format_size(budget)}")
            high = max(high, budget * 1.5)
        ax.set_xlim(low, high)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_size(int(v))))
        ax.set_xlabel("size of the files that load it (bytes, log scale)")
        ax.set_ylabel(f"{metric} (test)")
        ax.legend(loc="best")
        return _svg(fig, "frontier")


def stage_times(names: Sequence[str], seconds: Sequence[float], states: Sequence[str]) -> str:
    """Horizontal bars of each stage's seconds, coloured by its state, first stage on top."""
    with _styled():
        margins = _Margins(left=_label_inches(names, 9) + 0.2, right=0.1)
        fig = _figure(height=max(1.6, 0.24 * len(names) + 0.8), margins=margins)
        ax = fig.add_subplot()
        rows = np.arange(len(names))
        colours = [STATE_COLOURS.get(s, GREY) for s in states]
        ax.barh(rows, seconds, color=colours, height=0.65)
        _bar_values(ax, rows, seconds, "{:,.1f} s")
        ax.set_yticks(rows, names)
        ax.invert_yaxis()
        ax.set_xlim(0, max(max(seconds, default=0.0) * 1.18, 0.1))
        ax.set_xlabel("seconds (wall clock)")
        ax.grid(axis="y", visible=False)
        return _svg(fig, "stages")
