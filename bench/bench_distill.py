"""Issue 19 item 1: the final distilled network with its settings and teacher chosen on
validation, against the plainest baselines, on the generated yt8m-like benchmark and on the
real YouTube-8M sample, in one run each.

The recipe runs through the pipeline (`webly.pipeline.run_recipe`; a second run resumes, so
an existing run directory with its zoo and ensemble done only re-runs the distill stage):

* ``--data yt8m-like``: ``bench/distill-yt8m-like.yaml`` (the data and zoo of
  ``bench_ensemble.py``, 4,000 noisy-labelled videos, 1,000 clean test videos, 200 classes);
* ``--data real``: ``recipes/yt8m-video.yaml`` on ``../shared/data/yt8m-2018-validate`` (files
  0000-0019 train, 0020-0029 test, their given labels) with 3 folds.

Printed: logistic, the best member, the stacker (test, and out of fold), every setting of the
final model tried (its figure on the rows its training held out, which chose it, and on test),
the one kept, its labels-only twin, and the share of the stacker's gain over logistic the
final keeps, on test and on the final's held-out rows (each model's out-of-fold predictions of
them).

    .venv/bin/python bench/bench_distill.py --data yt8m-like --out /tmp/i19/synth [--set K=V]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from webly.core import TopK
from webly.data import Dataset
from webly.metrics.evaluate import task_metric
from webly.pipeline import run_recipe
from webly.predictions import Predictions
from webly.train.oof import held_out_rows

BENCH = Path(__file__).parent
REAL = BENCH.resolve().parents[1] / "shared" / "data" / "yt8m-2018-validate"
RECIPES = {
    "yt8m-like": BENCH / "distill-yt8m-like.yaml",
    "real": BENCH.parent / "recipes" / "yt8m-video.yaml",
}
REAL_SETS = [
    f"data.yt8m.train={REAL}/validate00[01]?.tfrecord",
    f"data.yt8m.test={REAL}/validate002?.tfrecord",
    "folds.n=3",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=tuple(RECIPES), default="yt8m-like")
    parser.add_argument("--out", type=Path, required=True, help="the run directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override, as webly run --set")  # fmt: skip
    args = parser.parse_args()
    print(f"`{shlex.join(['.venv/bin/python', *sys.argv])}`\n")
    print(f"uptime before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout}")
    overrides = (REAL_SETS if args.data == "real" else []) + args.set
    started = time.perf_counter()
    result = run_recipe(RECIPES[args.data], args.out, overrides, Console(stderr=True))
    if result.failed or result.results is None:
        sys.exit(f"the run failed: {[s.name for s in result.stages if s.state == 'failed']}")
    seconds = {s.name: _manifest(args.out, s.name).get("seconds") for s in result.stages}
    print(f"run: {time.perf_counter() - started:.0f} s here; stage seconds (over every attempt): "
          + ", ".join(f"{n} {s:.0f}" for n, s in seconds.items() if s))  # fmt: skip
    print(f"uptime after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout}")
    table(args.out, result.results)


def table(run: Path, results: dict[str, Any]) -> None:
    """Print the comparison of the run in ``run`` (its evaluate stage's ``results``)."""
    train = Dataset.open(run / "data" / "train")
    distill = _manifest(run, "distill")
    summary, outputs = distill["summary"], distill["outputs"]
    zoo = _manifest(run, "zoo")["outputs"]["members"]
    stores = _manifest(run, "ensemble")["outputs"]["stores"]
    test = {r["model"]: r[results["metric"]] for r in results["rows"]}
    (final_id,) = outputs["final"]
    held = held_out_rows(run / outputs["model"])
    assert held is not None, "the final model recorded no held-out rows"

    def on_held(path: str) -> float:
        top = Predictions.open(run / path).oof.topk()
        rows = TopK(top.indices[held], top.scores[held])
        return task_metric(rows, train.labels[held], train.task)

    best = max(zoo, key=lambda m: test[m])
    tried = summary["final_tried"]
    kept = next(t for t in tried if t["chosen"])
    twin = next((t for t in tried if t["lam"] == 1.0), None)
    rows = [
        ("logistic (zoo member)", on_held(zoo["logistic"]), test["logistic"]),
        (f"best member: {best}", on_held(zoo[best]), test[best]),
        ("stacker (LightGBM)", on_held(stores["stacker"]), test["stacker"]),
    ] + [
        (f"final {final_id}, {t['setting']}" + (" (kept)" if t["chosen"] else ""), t["valid"],
         t["test"])
        for t in tried
    ]  # fmt: skip
    print(f"\n{len(train):,} training rows, {held.size:,} held out by the final model; "
          f"{results['rows_scored']:,} test rows ({results['labels']} labels)\n")  # fmt: skip
    print(f"| model | {results['metric']} held-out rows (validation) | {results['metric']} test |")
    print("|---|---:|---:|")
    for name, valid, on_test in rows:
        print(f"| {name} | {_cell(valid)} | {_cell(on_test)} |")
    teacher = summary["teacher"]
    figures = ", ".join(f"{n} {v:.4f}" for n, v in teacher["candidates"].items())
    print(f"\n- teacher of the final: {teacher['final']} ({teacher['chosen on']}: {figures})")
    print(f"- kept: {kept['setting']}; distilled: {summary['distilled']}")
    if twin is not None:
        print(f"- final - twin: validation {kept['valid'] - twin['valid']:+.4f}, "
              f"test {kept['test'] - twin['test']:+.4f}")  # fmt: skip
    for split, (low, high, final) in {
        "test": (test["logistic"], test["stacker"], kept["test"]),
        "validation": (rows[0][1], rows[2][1], kept["valid"]),
    }.items():
        print(f"- share of the stacker's gain over logistic the final keeps ({split}): "
              f"{(final - low) / (high - low):.1%} ({final:.4f}; logistic {low:.4f}, "
              f"stacker {high:.4f})")  # fmt: skip
    for t in tried:
        print(f"- {t['setting']}: {t['seconds']:.0f} s")


def _manifest(run: Path, stage: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run / stage / "manifest.json").read_text())
    return loaded


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
