"""The long-tail section: the class-frequency curve with each class's figure along it, and the
head / medium / tail figures before and after the long-tail methods.

The per-class figure is top-1 accuracy (multi-class) or average precision (multi-label) of the
final model (else the ensemble's teacher, else the best member) on the split the run is scored
on. Bands are by training count (`webly.metrics.classification.frequency_bands`), with the
longtail stage's ``head`` and ``tail`` when the recipe has one; its before / after figures come
from its manifest summary (``bands``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from webly.metrics.classification import (
    BAND_NAMES,
    class_counts,
    frequency_bands,
    per_class_top1_accuracy,
)
from webly.metrics.ranking import per_class_average_precision
from webly.report.blocks import NO_PREDICTIONS, Chart, Note, Section, Table
from webly.report.plots import CLASS_TICKS, band_bars, frequency_curve
from webly.report.run_files import RunFiles, Scored
from webly.rundir import LongtailRecord

HEAD, TAIL = 100, 20  # band bounds without a longtail stage (frequency_bands' defaults)
_METRICS = {"top1_accuracy": "top-1 accuracy", "average_precision": "average precision"}


def long_tail_section(files: RunFiles) -> Section:
    """The long-tail section of the run in ``files``."""
    section = Section(
        "longtail",
        "Long tail",
        "How the figures fall from the frequent classes to the rare ones.",
    )
    shown = files.shown_scored()
    if shown is None:
        section.blocks.append(NO_PREDICTIONS)
        return section
    train, scored, name, recorded = shown
    head, tail = _bounds(files)
    counts = class_counts(train.labels)
    bands = frequency_bands(counts, head=head, tail=tail)
    topk = files.store(recorded).topk(scored.split)
    multilabel = train.task.multilabel
    metric = _METRICS["average_precision" if multilabel else "top1_accuracy"]
    figure = per_class_average_precision if multilabel else per_class_top1_accuracy
    per_class = figure(topk, scored.labels, train.n_classes)
    order = np.argsort(-counts, kind="stable")
    section.blocks.append(
        Chart(
            "Class frequency and per-class figure",
            frequency_curve(
                counts[order],
                per_class[order],
                bands[order],
                metric,
                [train.class_names[c] for c in order],
            ),
            f"{train.n_classes:,} classes by training rows (grey, log scale); each dot is one "
            f"class's {metric} of {name} on the {_scored_words(scored)}. Bands: head > {head} "
            f"training rows, tail < {tail}. "
            + (
                "Every class is named under the axis."
                if train.n_classes <= CLASS_TICKS
                else f"{CLASS_TICKS} evenly spaced classes are named under the axis."
            ),
            wide=True,
        )
    )
    series, n_classes, note = _band_series(files, per_class, bands, name)
    section.blocks.append(Chart("Head, medium and tail", band_bars(series, metric), note))
    section.blocks.append(_band_table(series, n_classes, counts, bands, head, tail))
    if "before" not in series:
        text = (
            "No longtail stage in this recipe: the figures before and after re-balancing come "
            "from it (add longtail: {} with distill.final)."
            if files.recipe.longtail is None
            else "The longtail stage has not finished: the bands of the final model only."
        )
        section.blocks.append(Note(text, missing=True))
    return section


def _bounds(files: RunFiles) -> tuple[int, int]:
    section = files.recipe.longtail
    return (section.head, section.tail) if section is not None else (HEAD, TAIL)


def _band_series(
    files: RunFiles, per_class: np.ndarray, bands: np.ndarray, name: str
) -> tuple[dict[str, dict[str, float]], dict[str, int], str]:
    """The band figures to show (before / after from the longtail stage, else ``name``'s),
    the classes per band, and the chart's caption."""
    longtail = files.record(LongtailRecord)
    recorded: dict[str, Any] = (longtail.bands if longtail is not None else None) or {}
    if "before" in recorded and "after" in recorded:
        series = {
            when: {
                b: math.nan if v is None else float(v) for b, v in recorded[when]["values"].items()
            }
            for when in ("before", "after")
        }
        n_classes = {b: int(v) for b, v in recorded["after"].get("n_classes", {}).items()}
        figure = _METRICS.get(recorded["after"].get("metric"), "figure")
        note = (
            f"Mean per-class {figure} of each band before and after the longtail stage's "
            "re-balancing (its held-out figures)."
        )
        return series, n_classes, note
    values = {}
    for band, band_name in enumerate(BAND_NAMES):
        known = per_class[(bands == band) & ~np.isnan(per_class)]
        values[band_name] = float(known.mean()) if known.size else math.nan
    sizes = np.bincount(bands, minlength=len(BAND_NAMES))
    n_classes = {b: int(sizes[i]) for i, b in enumerate(BAND_NAMES)}
    return {name: values}, n_classes, f"Mean per-class figure of each band, {name}."


def _band_table(
    series: dict[str, dict[str, float]],
    n_classes: dict[str, int],
    counts: np.ndarray,
    bands: np.ndarray,
    head: int,
    tail: int,
) -> Table:
    bounds = {"head": f"> {head}", "medium": f"{tail}–{head}", "tail": f"< {tail}"}
    columns = ("band", "training rows a class", "classes", "rows", *series)
    rows = []
    for band, name in enumerate(BAND_NAMES):
        figures = [series[s].get(name, math.nan) for s in series]
        rows.append(
            (
                name,
                bounds[name],
                f"{n_classes.get(name, 0):,}",
                f"{int(counts[bands == band].sum()):,}",
                *("n/a" if np.isnan(f) else f"{f:.4f}" for f in figures),
            )
        )
    return Table(
        "Bands",
        columns,
        rows,
        frozenset(columns[2:]),
        "n/a: no class of the band has a positive in the scored rows.",
    )


def _scored_words(scored: Scored) -> str:
    if scored.split == "oof":
        return "training rows out of fold (given labels)"
    return f"{scored.split} split ({scored.which} labels)"
