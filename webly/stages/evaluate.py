"""The ``evaluate`` stage: every model's figures on the test split, as one table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from rich.table import Table

from webly._fs import write_atomic
from webly.config import Recipe
from webly.core import GAP_K, Task, TopK, select_top_k
from webly.metrics.evaluate import format_cell, loss_sum, task_metric
from webly.predictions import Predictions
from webly.rundir import DistillRecord, EnsembleRecord, EvaluateRecord, LongtailRecord, ZooRecord
from webly.stages.context import StageContext, StageResult, scoring
from webly.stages.ensemble import STACKER

RESULTS_FILE = "results.json"
AVERAGE = "zoo average"
NOT_KEPT = "no prediction store in the clean stage's kept round"
"""The error of a member the zoo trained but the clean stage's kept round did not."""
_BLOCK_BYTES = 64 << 20  # dense (rows, n_classes) float32 block of the zoo average


def evaluate_config(recipe: Recipe) -> dict[str, Any]:
    return recipe.evaluate.model_dump(mode="json")


def evaluate_zoo(ctx: StageContext) -> StageResult:
    """Every member's metric and loss, those of the members' plain average (``zoo average``),
    of every blend, the stacker, the students, the final model and its long-tail-adjusted form,
    on the test split (its clean labels when the store has them) or, without test labels,
    out-of-fold on the given training labels: ``results.json``.

    The members are those the run ends with (`RunDir.members`: the clean stage's kept round
    when it ran, else the zoo's), a row each in the zoo's table order; a member the zoo failed
    to train (or the kept round lacks) is a row with its error. Members' figures are the ones
    in their prediction stores (computed from the full probabilities in training); GAP@k for
    another k than 20 is computed from the stored top-k.
    The average is streamed a block of rows at a time; its loss needs every class's
    probability, so it is given only when the stores hold all classes (n_classes <= zoo.k).
    """
    k = ctx.recipe.evaluate.k
    scored = scoring(ctx)
    split, data, labels, which = scored.split, scored.data, scored.labels, scored.which
    metric, loss = data.task.metric(k).name, data.task.loss.name
    zoo = ctx.need(ZooRecord)
    paths = ctx.rundir.members()
    stores = {member: Predictions.open(path) for member, path in paths.items()}
    rescore = data.task.multilabel and k != GAP_K
    streamed = _stream(stores, split, labels, data.task, k, rescore) if stores else None
    rows = []
    for member in zoo.table:
        row = {"model": member["model"], "frame-level": member["frame-level"]}
        store = stores.get(member["model"])
        if store is None:
            rows.append({**row, "error": member["error"] or NOT_KEPT})
            continue
        figures = store.fold_metrics[split]
        n_folds = int(store.model["folds"])
        score = streamed.members[member["model"]] if streamed and rescore else figures["metric"]
        rows.append(
            {
                **row,
                metric: score,
                loss: figures["loss"],
                "seconds": sum(store.fold_metrics[str(f)]["seconds"] for f in range(n_folds)),
            }
        )
    if streamed is not None:
        rows.append({"model": AVERAGE, metric: streamed.metric, loss: streamed.loss})
    chosen = _in_ensemble(ctx)
    for row in rows:
        if row["model"] in paths and chosen is not None:
            row["in ensemble"] = row["model"] in chosen
    for label, path in _second_level(ctx):
        store = Predictions.open(path)
        figures = store.fold_metrics.get(split)
        if figures is None:  # the final model has no out-of-fold predictions
            continue
        score = (
            task_metric(store.topk(split), labels, data.task, k) if rescore else figures["metric"]
        )
        seconds = [v["seconds"] for v in store.fold_metrics.values() if "seconds" in v]
        rows.append(
            {"model": label, metric: score, loss: figures.get("loss"), "seconds": sum(seconds)}
        )
    results = {
        "split": split,
        "labels": which,
        "rows_scored": int(labels.shape[0]),
        "metric": metric,
        "loss": loss,
        "rows": rows,
    }
    write_atomic(ctx.folder / RESULTS_FILE, json.dumps(results, indent=1).encode())
    if streamed is None:
        return StageResult(
            key="no trained member to evaluate",
            record=EvaluateRecord(results=ctx.folder / RESULTS_FILE, average=None),
        )
    return StageResult(
        key=f"{AVERAGE} {metric} {streamed.metric:.4f} on {split} ({which} labels)",
        record=EvaluateRecord(
            results=ctx.folder / RESULTS_FILE,
            average={metric: streamed.metric, loss: streamed.loss},
        ),
    )


def _in_ensemble(ctx: StageContext) -> set[str] | None:
    """The members the distill stage's teacher (the ensemble's best entry) uses: a blend's
    members of weight > 0, or the stacker's; None without an ensemble."""
    ensemble = ctx.input(EnsembleRecord)
    if ensemble is None:
        return None
    model = Predictions.open(ensemble.stores[ensemble.teacher]).model
    if "blend" not in model:
        return set(model["members"])
    blend = model["blend"]
    return {n for n, w in zip(blend["names"], blend["weights"], strict=True) if w > 0}


def _second_level(ctx: StageContext) -> list[tuple[str, Path]]:
    """(table label, store path) of every blend, the stacker, the students, the final model and
    its long-tail-adjusted form."""
    ensemble = ctx.input(EnsembleRecord)
    stores = ensemble.stores if ensemble is not None else {}
    entries = [
        (name if name == STACKER else f"blend: {name}", path) for name, path in stores.items()
    ]
    distill = ctx.input(DistillRecord)
    if distill is not None:
        entries += [(f"student: {m}", p) for m, p in distill.students.items()]
        entries += [(f"{distill.ROW}: {m}", p) for m, p in distill.final.items()]
    longtail = ctx.input(LongtailRecord)
    if longtail is not None:
        entries += [(f"{longtail.ROW}: {m}", p) for m, p in longtail.final.items()]
    return entries


def results_table(results: dict[str, Any], title: str | None = None) -> Table:
    """``results.json`` (with any rows added) as a table: model, frame-level, in ensemble,
    metric, loss, seconds; titled by what was scored unless ``title`` is given."""
    columns = ("frame-level", "in ensemble", results["metric"], results["loss"], "seconds")
    scored = (
        f"scored on {results['rows_scored']:,} {results['split']} rows, {results['labels']} labels"
    )
    table = Table(title=title or scored, title_justify="left")
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for row in results["rows"]:
        table.add_row(row["model"], *(format_cell(column, row.get(column)) for column in columns))
    return table


@dataclass(frozen=True)
class _Streamed:
    """GAP@k (or accuracy) and loss of the zoo average, and each member's metric when asked."""

    metric: float
    loss: float | None
    members: dict[str, float]


def _stream(
    stores: dict[str, Predictions],
    split: str,
    labels: sp.csr_matrix,
    task: Task,
    k: int,
    members_too: bool,
) -> _Streamed:
    """Average the members' probabilities a block of rows at a time, keeping only the top k
    of each row (and of each member's rows when ``members_too``)."""
    n_rows, n_classes = labels.shape
    block = max(1, _BLOCK_BYTES // (4 * n_classes))
    exact = all(store.k == store.n_classes for store in stores.values())
    average: list[TopK] = []
    each: dict[str, list[TopK]] = {member: [] for member in stores}
    loss = 0.0
    for start in range(0, n_rows, block):
        rows = slice(start, min(start + block, n_rows))
        total = np.zeros((rows.stop - start, n_classes), dtype=np.float32)  # (B, n_classes)
        for member, store in stores.items():
            probs = store.dense(split, rows)
            total += probs
            if members_too:
                each[member].append(TopK(*select_top_k(probs, k)))
        total /= len(stores)
        average.append(TopK(*select_top_k(total, k)))
        if exact:
            loss += loss_sum(total, labels[rows], task)
    return _Streamed(
        metric=task_metric(_concat(average), labels, task, k),
        loss=loss / n_rows if exact else None,
        members={m: task_metric(_concat(t), labels, task, k) for m, t in each.items() if t},
    )


def _concat(blocks: list[TopK]) -> TopK:
    return TopK(
        np.concatenate([b.indices for b in blocks]), np.concatenate([b.scores for b in blocks])
    )
