"""The results section: every model of ``results.json`` with its level, figures, size, time and
place in the final ensemble, and the ensemble / distillation / compression gains as a waterfall.

Sizes are the bytes of the files that load a model: a member's (or student's) fold models, the
final network, a blend's members of non-zero weight, the stacker's members and boosters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from webly.metrics.evaluate import format_cell
from webly.report.blocks import Chart, Note, Section, Table
from webly.report.latency import row_latencies
from webly.report.plots import Step, waterfall
from webly.report.run_files import RunFiles
from webly.rundir import DistillRecord, EnsembleRecord, LongtailRecord, ZooRecord
from webly.sizes import format_size

AVERAGE = "zoo average"  # the evaluate stage's row of the members' plain mean
BLEND, STACKER, STUDENT = "blend: ", "stacker", "student: "
FINAL, LONGTAIL = f"{DistillRecord.ROW}: ", f"{LongtailRecord.ROW}: "


def results_section(files: RunFiles) -> Section:
    """The results table and the gains waterfall, or what is missing for them."""
    section = Section(
        "results",
        "Results",
        "Every model the run trained or fitted, scored the same way; the waterfall follows the "
        "best zoo member through the ensemble, distillation and compression.",
    )
    results = files.results
    if results is None:
        section.blocks.append(
            Note(
                "No results yet: the evaluate stage has not finished (webly run RECIPE --out "
                "RUN makes them).",
                missing=True,
            )
        )
        return section
    metric, loss = results["metric"], results["loss"]
    labels = [row["model"] for row in results["rows"]]
    sizes = model_sizes(files, results["rows"])
    valid = validation_figures(files, labels)
    latency = row_latencies(files, labels, final_label(files))
    teacher = _teacher_label(files)
    split = results["split"]
    columns = ("model", "level", "validation", split, loss, "size", "ms/row", "time",
               "in final ensemble")  # fmt: skip
    rows = []
    for row in results["rows"]:
        label = row["model"]
        in_ensemble = {True: "yes", False: "no"}.get(row.get("in ensemble"), "")
        if label == teacher:
            in_ensemble = "teacher"
        figure = "failed" if row.get("error") else format_cell(metric, row.get(metric))
        size = sizes.get(label)
        rows.append(
            (
                label,
                _level(files, row),
                format_cell(metric, valid[label]) if label in valid else "",
                figure,
                format_cell(loss, row.get(loss)),
                format_size(size) if size else "",
                f"{latency[label]:.3g}" if label in latency else "—",
                _duration(row.get("seconds")),
                in_ensemble,
            )
        )
    section.blocks.append(
        Table(
            "Every model",
            columns,
            rows,
            frozenset(columns[2:8]),
            _results_caption(files, results, bool(latency)),
            wide=True,
        )
    )
    failed = [f"{r['model']}: {r['error']}" for r in results["rows"] if r.get("error")]
    if failed:
        section.blocks.append(Note("Failed: " + "; ".join(failed)))
    steps = gain_steps(files, results)
    if len(steps) > 1:
        section.blocks.append(
            Chart(
                "Gains: ensemble, distillation, compression",
                waterfall(steps, metric, "result"),
                f"{metric} on the {results['split']} split after each step: grey the best "
                "member, green a gain, red a loss, blue where the run ends.",
            )
        )
        section.blocks.append(_second_level(files, metric, teacher))
        tried = _distill_settings(files, metric)
        if tried is not None:
            section.blocks.append(tried)
    else:
        section.blocks.append(
            Note(
                "No gains to show: the recipe has no ensemble or distill stage, so there is "
                "only the zoo (add ensemble: {} and distill: {final: ...}).",
                missing=True,
            )
        )
    return section


def _results_caption(files: RunFiles, results: dict[str, Any], timed: bool) -> str:
    """What the results table's columns measure, and how to get the latencies it lacks."""
    metric, split = results["metric"], results["split"]
    held_out = "GAP@20" if metric.startswith("GAP@") else metric  # as the stages record it
    caption = (
        f"{split}: {metric} on {results['rows_scored']:,} {split} rows ({results['labels']} "
        f"labels), {results['loss']} beside it; validation: {held_out} on the rows the model "
        "did not train on, against the training labels (members, "
        "students, blends, stacker: out of fold; the final model: the rows its training held "
        "out, or the run's validation split, carved before the zoo, when it has one; students "
        "too are then scored there): with noisy training labels and clean test labels it reads "
        "below the test "
        "figure. ms/row: "
        "milliseconds a row with ONNX Runtime, as the compress stage timed what it could "
        "deploy (a member: all its fold models; a blend: its members of non-zero weight). "
        "time: training and predicting, all folds. "
    )
    if files.frontier is None:
        caption += (
            "—: no compress stage has timed the models (add compress: {max_size: 1GB} to the "
            "recipe)."
        )
    elif not timed:
        caption += "—: the compress stage skipped timing (set compress.measure_latency: true)."
    else:
        caption += "—: not a model the compress stage timed (students, the long-tail's input)."
    return caption


def validation_figures(files: RunFiles, labels: list[str]) -> dict[str, float]:
    """The held-out figure each stage recorded for the models of ``labels`` (rows of
    ``results.json``): members' and students' out-of-fold figures, the ensemble entries' and
    the final model's on the rows its training held out (its chosen distillation setting's)."""
    members = _zoo(files)
    entries = _entries(files)
    distill = files.record(DistillRecord)
    tried = (
        ((STUDENT, distill.students_tried or []), (FINAL, distill.final_tried or []))
        if distill is not None
        else ()
    )
    chosen = {
        f"{prefix}{row['model']}": row["valid"]
        for prefix, rows in tried
        for row in rows
        if row["chosen"] and row["valid"] is not None
    }
    found: dict[str, float] = {}
    for label in labels:
        if label in members:
            found[label] = files.store(members[label]).fold_metrics["oof"]["metric"]
        elif label == STACKER or label.startswith(BLEND):
            figure = entries.get(label.removeprefix(BLEND), {}).get("oof_metric")
            if figure is not None:
                found[label] = figure
        elif label in chosen:
            found[label] = chosen[label]
    return found


def _second_level(files: RunFiles, metric: str, teacher: str | None) -> Table | Note:
    """The ensemble's entries, out of fold (what chose the teacher) and on the test split."""
    entries = _entries(files)
    if not entries:
        return Note(
            "No ensemble stage in this recipe: no blends and no stacker (add ensemble: {}).",
            missing=True,
        )
    columns = ("entry", f"OOF {metric}", f"test {metric}", "time", "role")
    rows = [
        (
            name,
            format_cell(metric, e.get("oof_metric")),
            format_cell(metric, e.get("test_metric")),
            _duration(e.get("seconds")),
            "teacher" if teacher in (name, BLEND + name) else "",
        )
        for name, e in entries.items()
    ]
    note = (
        "The distill stage's teacher is the entry of best out-of-fold figure; the test figure "
        "shows how that choice held up."
    )
    distill = files.record(DistillRecord)
    taught = distill.unlabeled_rows if distill is not None else 0
    if taught:
        note += (
            f" The students and the final model also learnt the teacher's predictions of "
            f"{taught:,} unlabeled rows."
        )
    return Table("Second level: chosen out of fold", columns, rows, frozenset(columns[1:4]), note)


def _distill_settings(files: RunFiles, metric: str) -> Table | None:
    """Every distillation setting the distill stage tried, with the validation figure that
    chose among them and the test figure, and the final model's teacher; None without them."""
    distill = files.record(DistillRecord)
    if distill is None:
        return None
    tried = [
        (kind, row)
        for kind, rows in (("student", distill.students_tried), ("final", distill.final_tried))
        for row in rows or []
    ]
    if not tried:
        return None
    columns = ("model", "setting", f"validation {metric}", f"test {metric}", "time", "kept")
    rows = [
        (
            f"{kind}: {row['model']}", row["setting"], format_cell(metric, row["valid"]),
            format_cell(metric, row["test"]), _duration(row["seconds"]),
            "yes" if row["chosen"] else "",
        )
        for kind, row in tried
    ]  # fmt: skip
    note = (
        "Each model keeps the setting of best validation figure (students: out of fold; the "
        "final model: the rows its training held out); labels is the labels-only twin, kept on "
        "a tie."
    )
    teacher: Any = distill.teacher
    if teacher is not None:
        figures = ", ".join(f"{n} {v:.4f}" for n, v in teacher["candidates"].items())
        note += f" The final model's teacher: {teacher['final']} (out of fold: {figures})."
    return Table("Distillation: chosen on validation", columns, rows,
                 frozenset(columns[2:5]), note)  # fmt: skip


def gain_steps(files: RunFiles, results: dict[str, Any]) -> list[Step]:
    """The waterfall: best zoo member, the ensemble's teacher, the distilled final model (or
    best student), its long-tail form and what compress chose to deploy (the final network's
    compressed form, or a blend or the stacker): each step the run has, with its figure in
    ``results`` (the deployed one: its test figure in ``frontier.json``)."""
    metric = results["metric"]
    by_label = {r["model"]: r for r in results["rows"] if r.get(metric) is not None}
    zoo = _zoo(files)
    members = [r for r in by_label.values() if r["model"] in zoo]
    if not members:
        return []
    best = max(members, key=lambda r: r[metric])
    steps = [Step(f"best member: {best['model']}", best[metric])]
    teacher = _teacher_label(files)
    if teacher is not None and teacher in by_label:
        steps.append(Step(f"ensemble: {teacher.removeprefix(BLEND)}", by_label[teacher][metric]))
    finals = [r for label, r in by_label.items() if label.startswith(FINAL)]
    students = [r for label, r in by_label.items() if label.startswith(STUDENT)]
    distilled = finals or sorted(students, key=lambda r: r[metric])[-1:]
    if distilled:
        name = distilled[0]["model"].split(": ", 1)[1]
        steps.append(Step(f"distilled: {name}", distilled[0][metric]))
    balanced = [r for label, r in by_label.items() if label.startswith(LONGTAIL)]
    if balanced:
        longtail = files.record(LongtailRecord)
        method = longtail.method if longtail is not None else ""
        steps.append(Step(f"long tail: {method}".rstrip(": "), balanced[0][metric]))
    chosen = _chosen_candidate(files)
    figure = None if chosen is None else chosen.get("test_metric", chosen["metric"])
    if chosen is None or figure is None:
        return steps
    if chosen["kind"] != "final":
        steps.append(Step(f"deployed: {chosen['name']}", figure))
    elif finals and chosen["method"] != "fp32":
        steps.append(Step(f"compressed: {chosen['method']}", figure))
    return steps


def model_sizes(files: RunFiles, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Bytes of the files that load the model of each ``results.json`` row, by its label."""
    zoo = {m: _fold_models_bytes(p) for m, p in _zoo(files).items()}
    used = {m: _fold_models_bytes(p) for m, p in files.member_stores().items()}
    ensemble = files.record(EnsembleRecord)
    stores = ensemble.stores if ensemble is not None else {}
    sizes: dict[str, int] = {AVERAGE: sum(zoo.values())} if zoo else {}
    for row in rows:
        label = row["model"]
        if label in zoo:
            sizes[label] = zoo[label]
        elif label == STACKER and STACKER in stores:
            store = stores[STACKER]
            members = files.store(store).model["members"]
            sizes[label] = sum(used.get(m, 0) for m in members) + _tree_bytes(
                store.parent / "model"
            )
        elif label.startswith(BLEND) and label.removeprefix(BLEND) in stores:
            blend = files.store(stores[label.removeprefix(BLEND)]).model["blend"]
            pairs = zip(blend["names"], blend["weights"], strict=True)
            sizes[label] = sum(used.get(m, 0) for m, w in pairs if w > 0)
        else:
            recorded = network_store(files, label)
            if recorded is not None:
                sizes[label] = _fold_models_bytes(recorded)
    return sizes


def _fold_models_bytes(store: Path) -> int:
    """Bytes of the models beside a network's prediction store: its fold models
    (``fold-<f>/model``) or, for a model trained on every row, ``full/model`` (``model`` for
    the longtail stage's)."""
    folder = store.parent
    models = [*folder.glob("fold-*/model"), *folder.glob("full/model"), *folder.glob("model")]
    return sum(_tree_bytes(m) for m in models)


def _tree_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def network_store(files: RunFiles, label: str) -> Path | None:
    """The prediction store of a student's, the final model's or its long-tail form's
    ``results.json`` row; None for other rows."""
    distill, longtail = files.record(DistillRecord), files.record(LongtailRecord)
    networks = {
        STUDENT: distill.students if distill is not None else {},
        FINAL: distill.final if distill is not None else {},
        LONGTAIL: longtail.final if longtail is not None else {},
    }
    for prefix, stores in networks.items():
        if label.startswith(prefix):
            return stores.get(label.removeprefix(prefix))
    return None


def final_label(files: RunFiles) -> str | None:
    """The ``results.json`` row of the network the run deploys (its long-tail form when the
    longtail stage made one), None without one."""
    final = files.rundir.final()
    if final is None:
        return None
    (final_id,) = final.final
    return f"{final.ROW}: {final_id}"


def _zoo(files: RunFiles) -> dict[str, Path]:
    """The zoo stage's members (the rows of ``results.json`` it evaluated), by id."""
    zoo = files.record(ZooRecord)
    return zoo.members if zoo is not None else {}


def _entries(files: RunFiles) -> dict[str, dict[str, Any]]:
    """The ensemble's entries with their figures, by name; empty without an ensemble."""
    ensemble = files.record(EnsembleRecord)
    return ensemble.entries if ensemble is not None else {}


def _teacher_label(files: RunFiles) -> str | None:
    """The results row of the ensemble entry the distill stage learnt from."""
    ensemble = files.record(EnsembleRecord)
    if ensemble is None:
        return None
    teacher = ensemble.teacher
    return teacher if teacher == STACKER else BLEND + teacher


def _chosen_candidate(files: RunFiles) -> dict[str, Any] | None:
    """The candidate the compress stage chose, None without one."""
    frontier = files.frontier
    if frontier is None:
        return None
    chosen: dict[str, Any] = next(
        c for c in frontier["candidates"] if c["name"] == frontier["chosen"]
    )
    return chosen


def _level(files: RunFiles, row: dict[str, Any]) -> str:
    """``video`` or ``frame`` for a network, ``2nd level`` for a blend or the stacker."""
    label = row["model"]
    if "frame-level" in row:
        return "frame" if row["frame-level"] else "video"
    if label in (STACKER, AVERAGE) or label.startswith(BLEND):
        return "2nd level"
    recorded = network_store(files, label)
    if recorded is not None:
        level: str = files.store(recorded).model.get("config", {}).get("level", "")
        return level
    return ""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"
