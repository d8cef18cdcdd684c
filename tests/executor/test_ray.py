"""The Ray executor on a real cluster of two nodes on this machine (Ray's own
`ray.cluster_utils.Cluster`, one CPU each): a recipe's fold tasks run on both nodes and give
exactly the prediction stores of a local run, also with a teacher, replaced labels, sample
weights and pseudo-labeled rows; a worker killed mid-task is retried and nothing is lost; with
``executor.storage`` the tasks get no local path and read the stores through the URI; a Ray
session the caller opened is used and left open; ``ray://`` goes through Ray Client; the
import's files as Ray tasks write a local import's store; an unreachable head fails within
seconds, before anything is written."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import ray
import scipy.sparse as sp
import yaml
from ray.cluster_utils import Cluster
from typer.testing import CliRunner

from tests.data.test_yt8m import make_video_files
from tests.executor.stores import assert_same_stores
from webly.cli import app
from webly.data import Dataset
from webly.data.store import CACHE_ENV
from webly.data.yt8m import import_yt8m
from webly.distill.pseudo import PseudoLabels
from webly.errors import ConfigError, DataError
from webly.executor import ExecutorConfig, make_executor
from webly.executor.ray import CONNECT_TIMEOUT_S, TASK_FILE, RayExecutor
from webly.executor.ray_import import import_files_on_ray
from webly.executor.storage import Storage
from webly.pipeline import RunResult, run_recipe
from webly.predictions import Predictions
from webly.train.oof import ZooResult, fit_oof
from webly.train.zoo import Zoo, parse_zoo


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


CLIENT = importlib.util.find_spec("grpc") is not None  # ray[client]: ray:// is tested
CLIENT_PORT = free_port()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head (with a Ray Client server at `CLIENT_PORT` where ray[client] is installed) and a
    second node, one CPU each."""
    head = {"num_cpus": 1} | ({"ray_client_server_port": CLIENT_PORT} if CLIENT else {})
    with pytest.MonkeyPatch.context() as env:
        # the head's Ray Client proxy waits 30 s for a client's server by default: too short
        # on two cores while the other test worker trains (the proxy reads it when it starts)
        env.setenv("RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S", "180")
        started = Cluster(initialize_head=True, head_node_args=head)
    try:
        started.add_node(num_cpus=1)
        started.wait_for_nodes()
        yield started
    finally:
        ray.shutdown()  # this process's driver, before its cluster goes
        started.shutdown()


def node_ids(cluster: Cluster) -> set[str]:
    return {node.node_id for node in cluster.list_all_nodes()}


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


def on_ray(cluster: Cluster) -> list[str]:
    return ["executor.kind=ray", f"executor.address={cluster.address}"]


def task_records(zoo: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(zoo.glob(f"*/fold-*/{TASK_FILE}"))]


@pytest.mark.slow
def test_zoo_runs_on_both_nodes_and_equals_a_local_run(
    cluster: Cluster, local_run: Path, tmp_path: Path
) -> None:
    result = run(tmp_path, tmp_path / "run", *on_ray(cluster))
    assert not result.failed
    assert_same_stores(local_run / "zoo", tmp_path / "run" / "zoo", MEMBERS)
    records = task_records(tmp_path / "run" / "zoo")
    assert len(records) == len(MEMBERS) * 2  # one task a fold
    assert {r["node_id"] for r in records} == node_ids(cluster)
    assert all(r["pid"] != os.getpid() and r["seconds"] > 0 for r in records)
    assert not task_records(local_run / "zoo")  # the local executor trains in the loop


@pytest.mark.slow
def test_local_run_resumed_on_ray_skips_everything(
    cluster: Cluster, local_run: Path, tmp_path: Path
) -> None:
    """The executor is in no config hash: nothing is trained again, no task runs."""
    shutil.copytree(local_run, tmp_path / "run", symlinks=True)
    again = run(tmp_path, tmp_path / "run", *on_ray(cluster))
    assert all(stage.skipped for stage in again.stages)
    assert not task_records(tmp_path / "run" / "zoo")


QUICK_ZOO = {
    "folds": 2, "seed": 0, "k": 8, "train": {"epochs": 2, "batch_size": 16},
    "members": [{"name": "mlp", "hparams": {"hidden": [16]}}],
}  # fmt: skip
SLOW_ZOO = {
    "folds": 2, "seed": 0, "k": 8, "train": {"epochs": 60, "batch_size": 16},
    "members": [{"name": "mlp", "hparams": {"hidden": [64]}}],
}  # fmt: skip


@pytest.mark.slow
def test_per_row_inputs_travel_to_the_tasks(
    cluster: Cluster, local_run: Path, tmp_path: Path
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
    cluster: Cluster, local_run: Path, tmp_path: Path
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
    cluster: Cluster, local_run: Path, tmp_path: Path
) -> None:
    train, zoo = Dataset.open(local_run / "data" / "train"), parse_zoo(SLOW_ZOO)
    result, _ = train_killing_a_worker(cluster, train, zoo, tmp_path / "ray", max_retries=0)
    (failed,) = result.failed
    assert failed.error is not None
    assert "its Ray task was lost after 0 retries" in failed.error
    assert "run again to retry it" in failed.error
    assert not fit_oof(zoo, train, None, tmp_path / "ray").failed  # trains what is missing


def train_killing_a_worker(
    cluster: Cluster, train: Dataset, zoo: Zoo, out: Path, max_retries: int
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


def kill_a_training_worker(cluster: Cluster, zoo: Path, killed: list[int]) -> None:
    """SIGKILL a worker of ``cluster`` (a child of one of its raylets) running a fold task once
    a fold has checkpointed an epoch (so the retry resumes from it); gives up after 60 s."""
    raylets = [
        psutil.Process(node.all_processes["raylet"][0].process.pid)
        for node in cluster.list_all_nodes()
    ]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not killed:
        if any(zoo.glob("*/fold-*/checkpoint.pt")):
            for proc in (child for raylet in raylets for child in raylet.children()):
                with contextlib.suppress(psutil.Error):  # gone meanwhile
                    if proc.cmdline()[0].startswith("ray::_run_job"):
                        os.kill(proc.pid, signal.SIGKILL)
                        killed.append(proc.pid)
                        return
        time.sleep(0.005)


@pytest.mark.slow
def test_with_storage_the_tasks_read_the_stores_through_the_uri(
    cluster: Cluster, local_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``executor.storage``: the tasks are given no local path (the payload names the store by
    the URI of its published copy, and the folds by relative folders) and the store's folder is
    renamed away from the moment it is published until the call returns, so the tasks can
    read it only through the URI (``pyarrow.fs``, into their cache); the ``runtime_env`` given
    reaches them (their cache is the folder its env_vars name); the folds come back through the
    URI into the run directory and equal a local run's."""
    shutil.copytree(local_run / "data" / "train", tmp_path / "train")
    train, zoo = Dataset.open(tmp_path / "train"), parse_zoo(QUICK_ZOO)
    shipped = hide_after_packing(monkeypatch, tmp_path / "train")
    config = ExecutorConfig(
        kind="ray", address=cluster.address, storage=(tmp_path / "storage").as_uri(),
        runtime_env={"env_vars": {CACHE_ENV: str(tmp_path / "cache")}},
    )  # fmt: skip
    try:
        result = fit_oof(zoo, train, None, tmp_path / "ray", executor=make_executor(config))
    finally:
        (tmp_path / "hidden").rename(tmp_path / "train")
    assert not result.failed
    (payload,) = shipped
    for path in (tmp_path / "train", tmp_path / "ray", local_run):
        assert str(path).encode() not in payload
    (published,) = (tmp_path / "storage" / "stores").iterdir()
    assert published.as_uri().encode() in payload
    assert (tmp_path / "cache" / "stores" / published.name / "manifest.json").is_file()
    records = task_records(tmp_path / "ray")
    assert len(records) == 2 and {r["node_id"] for r in records} == node_ids(cluster)
    fit_oof(zoo, train, None, tmp_path / "local")
    assert_same_stores(tmp_path / "local", tmp_path / "ray", ["mlp"])


@pytest.mark.slow
def test_a_session_the_caller_opened_is_used_and_left_open(
    cluster: Cluster, local_run: Path, tmp_path: Path
) -> None:
    """In a Ray session the caller opened, webly runs its tasks there (the address is not
    used), sets the ``runtime_env`` given on each task, and leaves the session open."""
    ray.shutdown()  # webly's own session of the tests before
    ray.init(address=cluster.address, namespace="caller", log_to_driver=False)
    try:
        train, zoo = Dataset.open(local_run / "data" / "train"), parse_zoo(QUICK_ZOO)
        config = ExecutorConfig(
            kind="ray", storage=(tmp_path / "storage").as_uri(),
            runtime_env={"env_vars": {CACHE_ENV: str(tmp_path / "cache")}},
        )  # fmt: skip
        executor = make_executor(config)
        assert not fit_oof(zoo, train, None, tmp_path / "zoo", executor=executor).failed
        assert ray.is_initialized() and ray.get_runtime_context().namespace == "caller"
        assert len(task_records(tmp_path / "zoo")) == 2
        assert any((tmp_path / "cache" / "stores").iterdir())  # the task-level runtime_env
        folder = RayExecutor(ExecutorConfig(kind="ray", runtime_env={"working_dir": "."}))
        with pytest.raises(ConfigError, match=r"give local folders to your own ray.init"):
            folder.remote(node_ids)  # Ray uploads those from ray.init only
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.skipif(not CLIENT, reason="ray:// needs ray[client] (grpcio)")
def test_ray_client_address_runs_the_folds_with_webly_shipped(
    cluster: Cluster, local_run: Path, tmp_path: Path
) -> None:
    """``ray://HOST:PORT``: webly connects through Ray Client with its default runtime_env
    (its package as py_modules); the folds run on both nodes and equal a local run's."""
    ray.shutdown()  # webly's own session of the tests before
    train, zoo = Dataset.open(local_run / "data" / "train"), parse_zoo(QUICK_ZOO)
    config = ExecutorConfig(kind="ray", address=f"ray://127.0.0.1:{CLIENT_PORT}")
    try:
        assert not fit_oof(
            zoo, train, None, tmp_path / "ray", executor=make_executor(config)
        ).failed
    finally:
        ray.shutdown()
    records = task_records(tmp_path / "ray")
    assert len(records) == 2 and {r["node_id"] for r in records} == node_ids(cluster)
    fit_oof(zoo, train, None, tmp_path / "local")
    assert_same_stores(tmp_path / "local", tmp_path / "ray", ["mlp"])


@pytest.mark.slow
@pytest.mark.parametrize("storage", [False, True], ids=["shared-paths", "storage"])
def test_import_files_as_ray_tasks_writes_the_local_imports_store(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: bool
) -> None:
    """`import_files_on_ray` in place of the import's process pool (``webly data import-yt8m
    --ray ADDRESS``; through a storage URI with the API): one task a file, the store of a local
    import; a bad file fails the import with its one-line `DataError`."""
    make_video_files(tmp_path / "files", n_files=3)
    pattern = str(tmp_path / "files" / "*.tfrecord")
    import_yt8m(pattern, tmp_path / "local", "video", workers=1)
    uri = (tmp_path / "storage").as_uri() if storage else None
    executor = RayExecutor(ExecutorConfig(kind="ray", address=cluster.address, storage=uri))
    run_files = partial(import_files_on_ray, executor)
    if storage:
        import_yt8m(pattern, tmp_path / "ray", "video", run_files=run_files)
    else:
        done = CliRunner().invoke(
            app, ["data", "import-yt8m", pattern, "--out", str(tmp_path / "ray"),
                  "--ray", cluster.address],
        )  # fmt: skip
        assert done.exit_code == 0, done.output
    local, on_ray = Dataset.open(tmp_path / "local"), Dataset.open(tmp_path / "ray")
    assert on_ray.ids.tolist() == local.ids.tolist()
    assert [s["crc32c"] for s in on_ray.manifest["shards"]] == [
        s["crc32c"] for s in local.manifest["shards"]
    ]
    (tmp_path / "files" / "v3.tfrecord").write_bytes(b"not a tfrecord file")
    with pytest.raises(DataError, match=r"v3.tfrecord"):
        import_yt8m(pattern, tmp_path / "bad", "video", run_files=run_files)
    assert not (tmp_path / "bad").exists()


def hide_after_packing(monkeypatch: pytest.MonkeyPatch, store: Path) -> list[bytes]:
    """Make `Storage.pack` rename ``store`` to ``hidden`` beside it once it has published the
    stores; the payloads it packed."""
    shipped: list[bytes] = []
    pack = Storage.pack

    def pack_and_hide(self: Storage, inputs: Any, jobs: Any) -> tuple[bytes, list[Any]]:
        payload, tasks = pack(self, inputs, jobs)
        shipped.append(payload)
        store.rename(store.with_name("hidden"))
        return payload, tasks

    monkeypatch.setattr(Storage, "pack", pack_and_hide)
    return shipped


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
    cluster: Cluster, local_run: Path, tmp_path: Path
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
    assert {r["node_id"] for r in records} == node_ids(cluster)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("address", "needle"),
    [
        ("nowhere", "--ray: 'nowhere' is not HOST:PORT (e.g. 10.0.0.1:6379"),
        ("ray://nowhere", "--ray: 'ray://nowhere' is not HOST:PORT"),
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
