"""The summary at the top of the report: a card per headline figure the run has."""

from __future__ import annotations

from typing import Any

from webly.report.blocks import Card
from webly.report.results import final_label, model_sizes
from webly.report.run_files import RunFiles
from webly.rundir import CleanRecord, DataRecord, ExportRecord
from webly.sizes import format_size


def summary_cards(files: RunFiles) -> list[Card]:
    """Data, best model, final model, deployable choice, cleaning and stages: those the run
    has figures for."""
    cards = [_data(files)]
    results = files.results
    if results is not None:
        cards += _models(files, results)
    frontier = files.frontier
    if frontier is not None:
        chosen = next(c for c in frontier["candidates"] if c["name"] == frontier["chosen"])
        cards.append(
            Card(
                "Deploy under the budget",
                chosen["name"],
                f"{frontier['metric']} {chosen['metric']:.4f}, {format_size(chosen['size'])} "
                f"within {format_size(frontier['max_bytes'])}",
            )
        )
    clean = files.record(CleanRecord)
    if clean is not None and clean.rounds:
        rounds = clean.rounds
        first, kept = rounds[0], rounds[clean.best]
        cards.append(
            Card(
                "Label cleaning",
                f"{kept['dropped']:,} dropped, {kept['relabelled']:,} relabelled",
                f"round {kept['round']} of {len(rounds) - 1} kept; noise estimate "
                f"{first['noise_estimate']:.1%} → {kept['noise_estimate']:.1%}",
            )
        )
    done = [s for s in files.statuses if s.state == "done"]
    seconds = sum(s.seconds or 0.0 for s in files.statuses)
    finished = max((s.finished for s in files.statuses if s.finished), default="")
    finished = finished.replace("T", " ").removesuffix("Z")
    cards.append(
        Card(
            "Stages",
            f"{len(done)} of {len(files.statuses)} done",
            f"{seconds:,.1f} s in all" + (f"; last finished {finished} UTC" if finished else ""),
        )
    )
    return cards


def _data(files: RunFiles) -> Card:
    data = files.record(DataRecord)
    if data is None:
        return Card("Data", "not made yet", "the data stage has not finished")
    rows = data.rows
    detail = f"{data.classes:,} classes, {data.task}"
    if rows.get("test"):
        detail += f"; {rows['test']:,} test rows"
    if rows.get("valid"):
        detail += f"; {rows['valid']:,} validation rows no model trained on"
    changed = (data.noise or {}).get("rows_changed")
    if changed is not None:
        detail += f"; {changed:.1%} of the labels made noisy"
    return Card("Data", f"{rows.get('train', 0):,} training rows", detail)


def _models(files: RunFiles, results: dict[str, Any]) -> list[Card]:
    metric = results["metric"]
    scored = [r for r in results["rows"] if r.get(metric) is not None]
    if not scored:
        return []
    on = f"{results['rows_scored']:,} {results['split']} rows ({results['labels']} labels)"
    best = max(scored, key=lambda r: r[metric])
    cards = [Card("Best model", f"{metric} {best[metric]:.4f}", f"{best['model']}, on {on}")]
    label = final_label(files)
    final = next((r for r in scored if r["model"] == label), None)
    if final is not None:
        size = model_sizes(files, [final]).get(final["model"])
        exported = "; exported (RUN/export/model)" if files.record(ExportRecord) else ""
        cards.append(
            Card(
                "Final model",
                f"{metric} {final[metric]:.4f}",
                f"{final['model']}, one network"
                + (f" of {format_size(size)}" if size else "")
                + exported,
            )
        )
    return cards
