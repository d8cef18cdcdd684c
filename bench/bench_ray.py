"""Zoo on Ray: the demo recipe run in this process vs with ``executor: ray`` on a cluster of two
nodes on this machine (Ray's own `ray.cluster_utils.Cluster`, one CPU each), and Ray's
scheduling overhead per task.

The Ray run goes as on a cluster whose nodes share no folder with the caller: its stores and
fold files travel through ``--storage`` (a filesystem URI; default ``file://OUT/storage``,
``none`` to pass local paths instead), and its ``runtime_env`` ships webly (``py_modules``) and
points the workers' cache at ``OUT/cache``. The 1-minute load average (``uptime``) is printed
before and after each run.

Prints each run's wall time, then (1) each stage's seconds in both runs, whether all their
prediction stores are identical, and for each stage that trains fold models its Ray overhead:
its seconds on Ray less an ideal two-node run's (its tasks' seconds in the workers, from
``task.json``, shared by the two nodes, plus what the local stage spent outside fold training);
(2) the round trip of an empty Ray task, one at a time and many in flight, against a plain
function call. ``--report-only`` prints (1) again from the runs in ``--out``.

Run with one thread (the machine is shared; each Ray task runs torch on one thread too)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_ray.py --out /tmp/bench-ray
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
import timeit
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray.cluster_utils import Cluster

import webly
from webly.data.store import CACHE_ENV, MANIFEST
from webly.executor.ray import TASK_FILE
from webly.pipeline import STAGES, run_recipe
from webly.predictions import Predictions

ROOT = Path(__file__).resolve().parents[1]


NODES = 2  # one CPU each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the two runs")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "demo.yaml")
    parser.add_argument("--tasks", type=int, default=2000, help="empty tasks in flight")
    parser.add_argument(
        "--storage", help="executor.storage of the Ray run (default file://OUT/storage; none)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="print (1) again from the runs in --out"
    )
    args = parser.parse_args()
    if not args.report_only:
        torch.set_num_threads(1)
        shutil.rmtree(args.out, ignore_errors=True)
        print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} cores (shared machine)")
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        try:
            for _ in range(NODES - 1):
                cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            overhead = scheduling_overhead(cluster.address, args.tasks)
            ray.shutdown()
            timed_run(args.recipe, args.out / "ray", ray_overrides(cluster.address, args))
            ray.shutdown()
        finally:
            cluster.shutdown()
        timed_run(args.recipe, args.out / "local", [])
    report(args.out, args.recipe.name)
    if not args.report_only:
        print("\n(2) scheduling overhead per task")
        for name, seconds in overhead.items():
            print(f"{name:<44} {seconds * 1e6:12.3f} us")


def report(out: Path, name: str) -> None:
    """(1): each stage's seconds in both runs, whether their prediction stores are equal, and
    per stage that trains fold models the Ray overhead: its seconds on Ray less an ideal
    two-node run's (its tasks' worker seconds shared by the nodes, plus what the local stage
    spent outside fold training)."""
    local_stages, ray_stages = stage_seconds(out / "local"), stage_seconds(out / "ray")
    print(f"\n(1) {name}: seconds per stage")
    print(f"{'stage':<10} {'local':>8} {'ray 2x1':>8}")
    for stage, seconds in local_stages.items():
        print(f"{stage:<10} {seconds:8.1f} {ray_stages.get(stage, float('nan')):8.1f}")
    local_total, ray_total = sum(local_stages.values()), sum(ray_stages.values())
    print(f"{'total':<10} {local_total:8.1f} {ray_total:8.1f}")
    print(f"speed-up {local_total / ray_total:.2f}x")
    same, stores = same_stores(out)
    print(f"prediction stores identical, Ray vs local: {same} of {stores}")
    print(
        f"\n{'stage':<10} {'tasks':>5} {'worker s':>9} {'local s':>8} {'ideal s':>8} "
        f"{'ray s':>7} {'overhead':>9} {'a task':>7}"
    )
    for stage, (worker, local) in task_seconds(out).items():
        ideal = worker.sum() / NODES + local_stages[stage] - local.sum()
        extra = ray_stages[stage] - ideal
        print(
            f"{stage:<10} {worker.size:5d} {worker.sum():9.1f} {local.sum():8.1f} {ideal:8.1f} "
            f"{ray_stages[stage]:7.1f} {extra:+9.1f} {extra / worker.size:+7.2f}"
        )
    print(
        "worker s / local s: the tasks' seconds in Ray workers / training the same folds "
        "locally; ideal s: worker s / 2 + the local stage's seconds outside fold training"
    )


def scheduling_overhead(address: str, n_tasks: int) -> dict[str, float]:
    """Seconds per call: an empty task's round trip one at a time (after warm-up), the same
    with ``n_tasks`` in flight (throughput), and a plain Python call of the same function."""
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    remote = ray.remote(num_cpus=1)(nothing)
    ray.get([remote.remote() for _ in range(20)])  # workers started on both nodes
    started = time.perf_counter()
    for _ in range(200):
        ray.get(remote.remote())
    one_at_a_time = (time.perf_counter() - started) / 200
    started = time.perf_counter()
    ray.get([remote.remote() for _ in range(n_tasks)])
    in_flight = (time.perf_counter() - started) / n_tasks
    local = min(timeit.repeat(nothing, number=100_000, repeat=5)) / 100_000
    return {
        "Ray task round trip, one at a time": one_at_a_time,
        f"Ray task, {n_tasks} in flight (per task)": in_flight,
        "plain function call": local,
    }


def nothing() -> None:
    """The empty task."""


def ray_overrides(address: str, args: argparse.Namespace) -> list[str]:
    """The recipe overrides of the Ray run: the cluster, its runtime_env (webly shipped, the
    workers' cache under ``--out``) and ``--storage``."""
    runtime_env = {
        "py_modules": [str(Path(webly.__file__).parent)],
        "excludes": ["__pycache__"],
        "env_vars": {CACHE_ENV: str(args.out / "cache")},
    }
    overrides = [
        "executor.kind=ray",
        f"executor.address={address}",
        f"executor.runtime_env={json.dumps(runtime_env)}",
    ]
    storage = args.storage or (args.out / "storage").as_uri()
    return overrides + ([] if storage == "none" else [f"executor.storage={storage}"])


def timed_run(recipe: Path, out: Path, overrides: list[str]) -> None:
    """Run ``recipe`` into ``out``; print its wall time and the load before and after."""
    print(f"{out.name}: load before {load()}")
    started = time.perf_counter()
    result = run_recipe(recipe, out, overrides)
    if result.failed:
        raise SystemExit(f"{out}: {result.errors}")
    print(f"{out.name}: {time.perf_counter() - started:.1f} s wall, load after {load()}")


def load() -> str:
    """The load averages as ``uptime`` prints them."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def stage_seconds(run: Path) -> dict[str, float]:
    """Each stage's seconds from its manifest, in stage order."""
    return {
        stage.name: json.loads((run / stage.name / MANIFEST).read_text())["seconds"]
        for stage in STAGES
        if (run / stage.name / MANIFEST).is_file()
    }


def same_stores(out: Path) -> tuple[int, int]:
    """How many prediction stores of the local run equal their twin in the Ray run, of all."""
    stores = sorted(p.parent for p in (out / "local").rglob(f"predictions/{MANIFEST}"))
    same = 0
    for store in stores:
        mine = Predictions.open(store)
        other = Predictions.open(out / "ray" / store.relative_to(out / "local"))
        same += all(np.array_equal(mine.dense(s), other.dense(s)) for s in mine.splits)
    return same, len(stores)


def task_seconds(out: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per stage, per fold task of the Ray run: its seconds in the worker (``task.json``), and
    the training seconds of the same fold in the local run (its member's prediction store)."""
    found: dict[str, tuple[list[float], list[float]]] = {}
    for record in sorted((out / "ray").rglob(TASK_FILE)):
        fold = record.parent.relative_to(out / "ray")
        metrics: dict[str, Any] = Predictions.open(
            out / "local" / fold.parent / "predictions"
        ).fold_metrics
        worker, local = found.setdefault(fold.parts[0], ([], []))
        local.append(metrics[fold.name.removeprefix("fold-")]["seconds"])
        worker.append(json.loads(record.read_text())["seconds"])
    return {stage: (np.array(w), np.array(loc)) for stage, (w, loc) in found.items()}


if __name__ == "__main__":
    main()
