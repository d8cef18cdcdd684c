"""The Ray executor on a real cluster of two nodes on this machine (`LocalCluster`, one CPU
each): a recipe's fold tasks run on both nodes and give exactly the prediction stores of a local
run, also with a teacher, replaced labels, sample weights and pseudo-labeled rows; a worker
killed mid-task is retried and nothing is lost; an unreachable head fails within seconds, before
anything is written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import ray
import scipy.sparse as sp
import yaml

from webly.data import Dataset
from webly.distill.pseudo import PseudoLabels
from webly.executor import ExecutorConfig, make_executor
from webly.executor.local_cluster import LocalCluster
from webly.executor.ray import CONNECT_TIMEOUT_S, TASK_FILE
from webly.pipeline import RunResult, run_recipe
from webly.predictions import Predictions
from webly.train.oof import ZooResult, fit_oof
from webly.train.zoo import Zoo, parse_zoo

RECIPE: dict[str, Any] = {
    "seed": 0,
    "data": {
        "synth": {
            "kind": "yt8m-like", "videos": 160, "classes": 8, "max_frames": 6,
            "unlabeled_videos": 0,
        }
    },
    "folds": {"n": 2},
    "evaluate": {"k": 8},
    "zoo": {
        "k": 8,  # every class: the stores hold all probabilities
        "train": {"epochs": 2, "batch_size": 32},
        "members": [
            {"name": "logistic"},
            {"name": "mlp", "hparams": {"hidden": [16]}},
            {"name": "lgbm", "hparams": {"n_estimators": 5}},
        ],
    },
}  # fmt: skip
MEMBERS = ["logistic", "mlp", "lgbm"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster([{"head": 1}, {"second": 1}], cpus_per_node=1) as started:
        yield started
        ray.shutdown()  # this process's driver, before its cluster goes


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`RECIPE` run in this process (torch on one thread, as each Ray task)."""
    tmp = tmp_path_factory.mktemp("local")
    assert not run(tmp, tmp / "run").failed
    return tmp / "run"


def run(tmp: Path, out: Path, *overrides: str) -> RunResult:
    recipe = tmp / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    return run_recipe(recipe, out, list(overrides))


def on_ray(cluster: LocalCluster) -> list[str]:
    return ["executor.kind=ray", f"executor.address={cluster.address}"]


def assert_same_stores(one: Path, other: Path, members: list[str]) -> None:
    """Every member's out-of-fold and test predictions equal, bit for bit."""
    for member in members:
        a, b = (
            Predictions.open(one / member / "predictions"),
            Predictions.open(other / member / "predictions"),
        )
        assert a.splits == b.splits
        for split in a.splits:
            np.testing.assert_array_equal(a.dense(split), b.dense(split), err_msg=member)


def task_records(zoo: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(zoo.glob(f"*/fold-*/{TASK_FILE}"))]


@pytest.mark.slow
def test_zoo_runs_on_both_nodes_and_equals_a_local_run(
    cluster: LocalCluster, local_run: Path, tmp_path: Path
) -> None:
    result = run(tmp_path, tmp_path / "run", *on_ray(cluster))
    assert not result.failed
    assert_same_stores(local_run / "zoo", tmp_path / "run" / "zoo", MEMBERS)
    records = task_records(tmp_path / "run" / "zoo")
    assert len(records) == len(MEMBERS) * 2  # one task a fold
    assert {r["node_id"] for r in records} == set(cluster.node_ids.values())
    assert all(r["pid"] != os.getpid() and r["seconds"] > 0 for r in records)
    assert not task_records(local_run / "zoo")  # the local executor trains in the loop


@pytest.mark.slow
def test_local_run_resumed_on_ray_skips_everything(
    cluster: LocalCluster, local_run: Path, tmp_path: Path
) -> None:
    """The executor is in no config hash: nothing is trained again, no task runs."""
    shutil.copytree(local_run, tmp_path / "run", symlinks=True)
    again = run(tmp_path, tmp_path / "run", *on_ray(cluster))
    assert all(stage.skipped for stage in again.stages)
    assert not task_records(tmp_path / "run" / "zoo")


SLOW_ZOO = {
    "folds": 2, "seed": 0, "k": 8, "train": {"epochs": 60, "batch_size": 16},
    "members": [{"name": "mlp", "hparams": {"hidden": [64]}}],
}  # fmt: skip


@pytest.mark.slow
def test_per_row_inputs_travel_to_the_tasks(
    cluster: LocalCluster, local_run: Path, tmp_path: Path
) -> None:
    """A teacher, replaced labels, sample weights and pseudo-labeled rows of another split reach
    the Ray tasks: the stores equal a local run's with the same inputs, and differ from a run
    without them."""
    train = Dataset.open(local_run / "data" / "train")
    unlabeled = Dataset.open(local_run / "data" / "test")
    zoo = parse_zoo({**SLOW_ZOO, "train": {"epochs": 2, "batch_size": 16}})
    rng = np.random.default_rng(0)
    n, c = len(train), train.n_classes
    soft = sp.csr_matrix(rng.random((n, c), dtype=np.float32) * (rng.random((n, c)) < 0.3))
    inputs = {
        "teacher": soft,
        "labels": sp.csr_matrix(train.labels[rng.permutation(n)], dtype=np.float32),
        "sample_weight": rng.random(n).astype(np.float32) + 0.5,
        "pseudo": PseudoLabels(
            unlabeled, np.arange(20), sp.csr_matrix(soft[:20]), t1=0.0, t2=1.0, alpha_f=0.5
        ),
    }
    config = ExecutorConfig(kind="ray", address=cluster.address)
    assert not fit_oof(
        zoo, train, None, tmp_path / "ray", executor=make_executor(config), **inputs
    ).failed
    assert not fit_oof(zoo, train, None, tmp_path / "local", **inputs).failed
    assert len(task_records(tmp_path / "ray")) == 2
    assert_same_stores(tmp_path / "local", tmp_path / "ray", ["mlp"])
    fit_oof(zoo, train, None, tmp_path / "plain")
    plain = Predictions.open(tmp_path / "plain" / "mlp" / "predictions").dense("oof")
    taught = Predictions.open(tmp_path / "ray" / "mlp" / "predictions").dense("oof")
    assert not np.allclose(plain, taught)


@pytest.mark.slow
def test_worker_killed_mid_task_is_retried_and_nothing_is_lost(
    cluster: LocalCluster, local_run: Path, tmp_path: Path
) -> None:
    train, zoo = Dataset.open(local_run / "data" / "train"), parse_zoo(SLOW_ZOO)
    result, killed = train_killing_a_worker(cluster, train, zoo, tmp_path / "ray", max_retries=2)
    assert not result.failed
    records = task_records(tmp_path / "ray")
    assert len(records) == 2 and killed not in {r["pid"] for r in records}  # retried
    fit_oof(zoo, train, None, tmp_path / "local")
    assert_same_stores(tmp_path / "local", tmp_path / "ray", ["mlp"])


@pytest.mark.slow
def test_task_lost_for_good_fails_its_member_and_a_rerun_finishes(
    cluster: LocalCluster, local_run: Path, tmp_path: Path
) -> None:
    train, zoo = Dataset.open(local_run / "data" / "train"), parse_zoo(SLOW_ZOO)
    result, _ = train_killing_a_worker(cluster, train, zoo, tmp_path / "ray", max_retries=0)
    (failed,) = result.failed
    assert failed.error is not None
    assert "its Ray task was lost after 0 retries" in failed.error
    assert "run again to retry it" in failed.error
    assert not fit_oof(zoo, train, None, tmp_path / "ray").failed  # trains what is missing


def train_killing_a_worker(
    cluster: LocalCluster, train: Dataset, zoo: Zoo, out: Path, max_retries: int
) -> tuple[ZooResult, int]:
    """`fit_oof` on ``cluster`` while `kill_a_training_worker` kills one of its workers; the
    result and the killed pid."""
    config = ExecutorConfig(kind="ray", address=cluster.address, max_retries=max_retries)
    killed: list[int] = []
    killer = threading.Thread(target=kill_a_training_worker, args=(cluster, out, killed))
    killer.start()
    try:
        result = fit_oof(zoo, train, None, out, executor=make_executor(config))
    finally:
        killer.join()
    assert killed, "no worker was caught training"
    return result, killed[0]


def kill_a_training_worker(cluster: LocalCluster, zoo: Path, killed: list[int]) -> None:
    """SIGKILL a worker of ``cluster`` running a fold task once a fold has checkpointed an
    epoch (so the retry resumes from it); gives up after 60 s."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not killed:
        if any(zoo.glob("*/fold-*/checkpoint.pt")):
            for proc in psutil.process_iter(["cmdline"]):
                cmdline = proc.info["cmdline"] or [""]
                if (
                    cmdline[0].startswith("ray::_run_job")
                    and os.getsid(proc.pid) in cluster.sessions
                ):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
                    return
        time.sleep(0.005)


def _fails_fast_bound() -> float:
    """Seconds a CLI run refused at the connection may take on this machine now: twice the
    start-up of an interpreter importing what such a run imports (measured here, so a loaded
    machine does not fail the test) plus the connection timeout, far below the minutes Ray
    itself waits for a head."""
    started = time.monotonic()
    imports = "import ray, torch, webly.cli, webly.pipeline, webly.executor.ray"
    subprocess.run([sys.executable, "-c", imports], capture_output=True, check=True)
    return 2 * (time.monotonic() - started) + CONNECT_TIMEOUT_S + 5


@pytest.mark.slow
def test_unreachable_head_fails_in_seconds(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "webly", "run", str(recipe), "--out", str(tmp_path / "run"),
         "--set", "executor.kind=ray", "--set", "executor.address=127.0.0.1:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert time.monotonic() - started < _fails_fast_bound()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "executor.address 127.0.0.1:1: no Ray head answers there" in result.stderr
    assert "ray start --head" in result.stderr and "executor.kind: local" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing written


def webly_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webly", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_webly_train_with_ray_runs_the_folds_on_the_cluster(
    cluster: LocalCluster, local_run: Path, tmp_path: Path
) -> None:
    """``webly train --ray ADDRESS``: one task a fold on both nodes, the local run's stores."""
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump({"folds": 2, "seed": 0, **RECIPE["zoo"]}))
    data = local_run / "data"
    result = webly_cli("train", str(zoo), "--data", str(data / "train"), "--test",
                       str(data / "test"), "--out", str(tmp_path / "zoo"), "--ray",
                       cluster.address)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_same_stores(local_run / "zoo", tmp_path / "zoo", MEMBERS)
    records = task_records(tmp_path / "zoo")
    assert len(records) == len(MEMBERS) * 2
    assert {r["node_id"] for r in records} == set(cluster.node_ids.values())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("address", "needle"),
    [
        ("nowhere", "--ray: 'nowhere' is not HOST:PORT"),
        ("127.0.0.1:1", "--ray 127.0.0.1:1: no Ray head answers there"),
    ],
)
def test_webly_train_with_a_bad_or_unreachable_head_writes_nothing(
    local_run: Path, tmp_path: Path, address: str, needle: str
) -> None:
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump({"folds": 2, "seed": 0, **RECIPE["zoo"]}))
    started = time.monotonic()
    result = webly_cli("train", str(zoo), "--data", str(local_run / "data" / "train"),
                       "--out", str(tmp_path / "zoo"), "--ray", address)  # fmt: skip
    assert time.monotonic() - started < _fails_fast_bound()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and needle in result.stderr
    assert "executor." not in result.stderr  # the fix is worded for the command line
    assert not (tmp_path / "zoo").exists()
