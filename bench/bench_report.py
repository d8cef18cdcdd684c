"""How long `webly.report.build_report` takes and how large the page is, on a run of many
classes (every per-class chart and table at its fullest).

    .venv/bin/python bench/bench_report.py [--run RUN] [--classes 1000] [--products 20000]

Without ``--run`` it first makes a products-like run (zoo of logistic + mlp, one cleaning
round, the mean blend, the report) in ``bench/out/report-run`` (kept: a second call reuses it).
Prints the time of a first build in a fresh process (matplotlib imported and warmed) and of
three more, the page's size and its charts, tables and table rows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def make_run(out: Path, classes: int, products: int) -> Path:
    """A products-like run of ``classes`` classes in ``out`` (resumed when it is there)."""
    from rich.console import Console

    from webly.pipeline import run_recipe

    recipe: dict[str, Any] = {
        "seed": 0,
        "data": {"synth": {"kind": "products-like", "n_classes": classes, "n_products": products}},
        "folds": {"n": 3},
        "zoo": {
            "k": 20,
            "train": {"epochs": 2, "batch_size": 256, "lr": 0.01},
            "members": [{"name": "logistic"}, {"name": "mlp", "hparams": {"hidden": [256]}}],
        },
        "clean": {"rounds": 1},
        "ensemble": {"blends": ["mean"], "stacker": None},
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out.parent / "report-recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    started = time.perf_counter()
    result = run_recipe(path, out, console=Console(quiet=True))
    print(f"run made or resumed in {time.perf_counter() - started:.1f} s: {out}")
    if result.failed:
        raise SystemExit(f"the run failed: {result.errors}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="an existing run directory")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--products", type=int, default=20_000)
    args = parser.parse_args()
    run = args.run or make_run(ROOT / "bench" / "out" / "report-run", args.classes, args.products)

    started = time.perf_counter()
    from webly.report import build_report

    imported = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        started = time.perf_counter()
        build_report(run, page)
        first = time.perf_counter() - started
        again = []
        for _ in range(3):
            started = time.perf_counter()
            build_report(run, page)
            again.append(time.perf_counter() - started)
        html = page.read_text()
    print(f"import webly.report: {imported:.2f} s")
    print(
        f"first build: {first:.2f} s; next three: median {statistics.median(again):.2f} s "
        f"(min {min(again):.2f}, max {max(again):.2f})"
    )
    print(
        f"page: {len(html.encode()) / 1e3:,.0f} KB, {html.count('<svg')} charts, "
        f"{html.count('<table>')} tables, {html.count('<tr>')} table rows"
    )


if __name__ == "__main__":
    main()
