"""Issue 19 items 2-3: what a finished run deploys, measured from the exported folder itself.

For each run directory (``webly run RECIPE --out RUN``): the run's own test figures
(``results.json``: logistic, the best member, the stacker, the final distilled network), then,
for each size budget, the candidate `choose_under_budget` chose on validation rows, exported
whole (`webly.compress.choice.export_best`), and its test GAP@20 measured by running the export
with ONNX Runtime over the test store, as a user's ``webly predict`` would. Printed beside:
the export's bytes (every file shipped), the chooser's latency, the gap to the stacker (goal
under 1 GB: >= -0.005) and to the best member (goal under 50 MB: > 0), and every candidate
the chooser weighed (size, ms a row, validation and test figures).

    .venv/bin/python bench/bench_deploy.py RUN [RUN ...] [--budgets 1GB 50MB]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from webly.compress.choice import export_best
from webly.core import TopK
from webly.data import Dataset
from webly.deploy.exported import ExportedModel, shipped_bytes
from webly.deploy.inputs import store_batches
from webly.metrics.evaluate import task_metric
from webly.rundir import DataRecord, RunDir
from webly.sizes import format_size


def exported_metric(
    model: ExportedModel, test: Dataset, labels: Any, k: int
) -> tuple[float, float]:
    """The export's GAP@k (or accuracy) over the test store, and its rows a second."""
    started = time.perf_counter()
    parts = [
        TopK.from_dense(model.predict(batch.groups, batch.lengths), k)
        for batch in store_batches(test, model.features, 512)
    ]
    seconds = time.perf_counter() - started
    top = TopK(
        np.concatenate([p.indices for p in parts]), np.concatenate([p.scores for p in parts])
    )
    return task_metric(top, labels, test.task, k), len(test) / seconds


def run_figures(run: Path) -> dict[str, float]:
    """The run's test figures: logistic, best member, stacker and final rows of results.json."""
    results = RunDir(run).results()
    assert results is not None, f"{run}: the evaluate stage has not finished"
    metric = results["metric"]
    rows = {r["model"]: r[metric] for r in results["rows"] if r.get(metric) is not None}
    members = [m for m in RunDir(run).members() if m in rows]
    best = max(members, key=lambda m: rows[m])
    figures = {f"best member ({best})": rows[best]}
    shown = ("logistic", "stacker")
    figures |= {
        label: value
        for label, value in rows.items()
        if label in shown or label.startswith(("final", "longtail"))
    }
    return figures


def bench_run(run: Path, budgets: list[str]) -> None:
    results = RunDir(run).results()
    assert results is not None
    figures = run_figures(run)
    best = next(v for k, v in figures.items() if k.startswith("best member"))
    stacker = figures.get("stacker")
    test_path = RunDir(run).need(DataRecord).test
    assert test_path is not None
    test = Dataset.open(test_path)
    labels = test.clean_labels if results["labels"] == "clean" else test.labels
    k = 20
    print(f"\n## {run}\n")
    print("| model (the run's own test figures) | GAP@20 |\n|---|---:|")
    for label, value in figures.items():
        print(f"| {label} | {value:.4f} |")
    print(
        "\n| budget | chosen (on validation rows) | shipped | ms/row | validation | test (chooser) "
        "| test (export, ONNX Runtime) | - stacker | - best member | rows/s | seconds |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    weighed = None
    for budget in budgets:
        with tempfile.TemporaryDirectory() as work:
            started = time.perf_counter()
            result, exported = export_best(run, Path(work) / "deploy", budget)
            seconds = time.perf_counter() - started
            measured, speed = exported_metric(exported, test, labels, k)
            size = shipped_bytes(exported.folder)
        chosen = result.chosen
        weighed = weighed or result
        gap = f"{measured - stacker:+.4f}" if stacker is not None else ""
        print(
            f"| {budget} | {chosen.name} | {format_size(size)} | {chosen.latency_ms:.3f} | "
            f"{chosen.metric:.4f} | {chosen.test_metric:.4f} | **{measured:.4f}** | {gap} | "
            f"{measured - best:+.4f} | {speed:,.0f} | {seconds:.0f} |"
        )
    assert weighed is not None
    print(f"\nCandidates (chosen on {weighed.scored_on}; test: {weighed.reported_on}):\n")
    print("| candidate | size | ms/row | validation | test |\n|---|---:|---:|---:|---:|")
    for c in sorted(weighed.candidates, key=lambda c: c.size):
        valid = f"{c.metric:.4f}" if c.metric is not None else "-"
        tested = f"{c.test_metric:.4f}" if c.test_metric is not None else "-"
        print(f"| {c.name} | {format_size(c.size)} | {c.latency_ms:.3f} | {valid} | {tested} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--budgets", nargs="+", default=["1GB", "50MB"])
    args = parser.parse_args()
    for run in args.runs:
        bench_run(run, args.budgets)


if __name__ == "__main__":
    main()
