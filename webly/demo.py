"""What ``make demo`` runs: the recipe ``recipes/demo.yaml`` through the pipeline (a generated
YouTube-8M-like benchmark, frame level, noisy tags -> 3 folds -> a six-member zoo of both
levels -> one round of label cleaning -> blends and the LightGBM stacker -> a distilled student
and final model -> evaluation on the clean test split), the training split's statistics, the
results table like the seeds', with, for contrast, logistic regression trained on the true
labels, and the cleaning rounds with their precision and recall against the truth."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from webly.baselines import fit_logistic, predict_logistic
from webly.config import load_recipe
from webly.data.stats import dataset_stats
from webly.data.yt8m import VIDEO_GROUPS
from webly.errors import ConfigError
from webly.metrics import gap_at_k
from webly.pipeline import run_pipeline
from webly.rundir import CleanRecord, ReportRecord, RunDir
from webly.stages import results_table

DEMO_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml"
"""The demo's recipe: it ships with the source tree, which ``make demo`` runs from."""
CONTRAST = "logistic regression on true labels"


def run_demo(
    out: Path, seed: int = 0, console: Console | None = None, overrides: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """Run `DEMO_RECIPE` with ``seed`` and ``--set`` ``overrides`` in the run directory ``out``
    (resuming what is done) and print the tables.

    Returns ``{model: {"model", "frame-level", "GAP@20", "BCE", "seconds"}}`` on the clean test
    split, with rows ``zoo average`` and ``logistic regression on true labels`` after the
    members.
    """
    console = console or Console()
    started = time.perf_counter()
    if not DEMO_RECIPE.is_file():
        raise ConfigError(
            f"{DEMO_RECIPE}: the demo recipe is missing; run the demo from a source checkout "
            "(make demo)"
        )
    recipe = load_recipe(DEMO_RECIPE, [f"seed={seed}", *overrides])
    result = run_pipeline(recipe, out, console)
    run = RunDir(Path(out))
    train, test = run.splits()
    assert test is not None  # the demo recipe makes a test split
    stats = Table(title="train split", show_header=False, title_justify="left")
    for name, value in dataset_stats(train).lines():
        stats.add_row(name, value)
    console.print(stats)

    assert result.results is not None  # the evaluate stage ran or was found done
    rows: dict[str, dict[str, Any]] = {row["model"]: row for row in result.results["rows"]}
    begin = time.perf_counter()
    truth, clean_train = test.clean_labels, train.clean_labels
    assert truth is not None and clean_train is not None  # the generator keeps the truth
    weight, bias = fit_logistic(train.features(np.arange(len(train)), VIDEO_GROUPS), clean_train)
    scores = predict_logistic(test.features(np.arange(len(test)), VIDEO_GROUPS), weight, bias)
    rows[CONTRAST] = {
        "model": CONTRAST,
        result.results["metric"]: gap_at_k(scores, truth, k=recipe.evaluate.k),
        "seconds": time.perf_counter() - begin,
    }
    title = (
        f"trained on {len(train):,} noisy train videos ({recipe.folds.n} folds), scored on the "
        f"{len(test):,} clean test videos"
    )
    console.print(results_table({**result.results, "rows": list(rows.values())}, title))
    clean = run.read(CleanRecord)
    if clean is not None and clean.rounds:
        console.print(_cleaning_table(clean.rounds))
    for error in result.errors:
        console.print(error)
    console.print(
        "Members and their average train on the given (noisy) labels; the last row trains on "
        f"the generator's true labels. Demo finished in {time.perf_counter() - started:.1f} s."
    )
    report = run.read(ReportRecord)
    if report is not None:
        console.print(
            f"The report, to open in a browser: {report.report.resolve()}",
            highlight=False,
            soft_wrap=True,
        )
    return rows


def _cleaning_table(rounds: list[dict[str, Any]]) -> Table:
    """The clean stage's rounds: what was dropped and relabelled, the noise estimate, and the
    detection's precision and recall against the generator's truth. Fits 80 columns: headers
    on two lines, one space between columns, figures never cut."""
    table = Table(
        title="cleaning the training labels (round 0: the zoo on the given labels; precision "
        "and recall of the rows cleaning touched, against the generator's truth)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 0),
        show_edge=False,
    )
    columns = {
        "round": "round", "rows_trained": "rows\ntrained", "dropped": "dropped",
        "relabelled": "relabelled", "noise_estimate": "noise\nest.", "true_noise": "true\nnoise",
        "precision": "precision", "recall": "recall",
        "valid_metric": "valid\nGAP@20", "test_metric": "test\nGAP@20",
    }  # fmt: skip
    for title in columns.values():
        table.add_column(title, justify="right", no_wrap=True)
    for row in rounds:
        table.add_row(*(_cell(row.get(key)) for key in columns))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else f"{value:,}"
