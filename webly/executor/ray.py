"""The Ray executor: fold models trained as Ray tasks across a cluster's nodes.

Each `webly.train.oof.FoldJob` is one task of ``cpus_per_task`` CPUs and ``gpus_per_task``
GPUs, spread over the nodes (Ray's ``SPREAD`` strategy). The task gets the call's shared
`FoldInputs` once per node from the object store (the training store travels as its folder's
path and is mapped by the worker: every node must see the run directory and the data at the
same paths, and run the same Python environment with webly installed), sets torch to
``cpus_per_task`` threads, trains (resuming from the fold's trainer checkpoint when an earlier
attempt left one) and saves the model atomically, then writes ``task.json`` beside it::

    {"executor": "ray", "node_id": "...", "hostname": "...", "pid": 1234, "seconds": 8.1}

A task whose worker process or node dies is run again, up to ``max_retries`` times, resuming
from the last epoch checkpoint, so the model equals an uninterrupted one. A fold whose
training fails (NaN loss) fails its member, as in a local run; a task lost for good fails its
member with a message saying so, and the next run retries it. A bug raises with the worker's
traceback.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from webly.errors import ConfigError, WeblyError
from webly.executor import RECIPE_WORDS, ExecutorConfig, Words
from webly.train.oof import FoldInputs, FoldJob, train_fold

TASK_FILE = "task.json"
CONNECT_TIMEOUT_S = 5.0
_joined: tuple[str | None] | None = None  # (address,) this process's ray.init joined, if any


class RayExecutor:
    """Trains the fold models of `fit_oof` / `fit_full` as Ray tasks (module docstring).

    Construction checks that ray imports and that the head at ``config.address`` accepts a TCP
    connection within `CONNECT_TIMEOUT_S` (`ConfigError` naming the address and the fix in
    ``words``); ``ray.init`` runs when the first jobs come, once per process and address.
    """

    def __init__(self, config: ExecutorConfig, words: Words = RECIPE_WORDS) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"{words.ray} needs the ray package, which is not installed; pip install the "
                f"ray of requirements.txt or {words.local}"
            ) from None
        if config.address not in (None, "auto"):
            check_reachable(config.address, words)
        self.config = config
        self.words = words

    def train_folds(self, inputs: FoldInputs, jobs: Sequence[FoldJob]) -> dict[str, str]:
        """Train ``jobs`` as Ray tasks and wait for all of them; ``{member id: error}`` of the
        members one of whose tasks failed (the first message)."""
        ray = self._connect()
        config = self.config
        task = ray.remote(_run_job).options(
            num_cpus=config.cpus_per_task,
            num_gpus=config.gpus_per_task,
            max_retries=config.max_retries,
            scheduling_strategy="SPREAD",
        )
        shared = ray.put(inputs)
        refs = [task.remote(shared, job, config.cpus_per_task) for job in jobs]
        failed: dict[str, str] = {}
        for job, ref in zip(jobs, refs, strict=True):
            try:
                error = ray.get(ref)
            except ray.exceptions.RayTaskError:
                raise  # an exception other than a WeblyError in the task: a bug, with its trace
            except ray.exceptions.RayError as err:
                error = (
                    f"{job.name}: its Ray task was lost after {config.max_retries} retries "
                    f"({type(err).__name__}); run again to retry it, or raise "
                    "executor.max_retries"
                )
            if error is not None:
                failed.setdefault(job.member.id, error)
        return failed

    def _connect(self) -> Any:
        """The ``ray`` module, joined to ``config.address`` (``ray.init`` once per process and
        address; another address first shuts the earlier connection down)."""
        import ray

        global _joined
        address = self.config.address
        if ray.is_initialized() and _joined == (address,):
            return ray
        if ray.is_initialized():
            ray.shutdown()
        _joined = None
        options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        if address is None:
            options |= {"include_dashboard": False}  # a new instance inside this process
        try:
            ray.init(address=address, **options)
        except ConnectionError as err:
            raise ConfigError(
                f"{self.words.address} {address}: no Ray cluster found ({err}); start one with "
                f"ray start --head, give its HOST:PORT, or {self.words.local}"
            ) from None
        _joined = (address,)
        return ray


def check_reachable(
    address: str, words: Words = RECIPE_WORDS, timeout: float = CONNECT_TIMEOUT_S
) -> None:
    """`ConfigError` unless something accepts a TCP connection at ``address`` (HOST:PORT, the
    Ray head's GCS port) within ``timeout`` seconds."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            f"{words.address} {address}: no Ray head answers there ({reason}); start one with "
            f"ray start --head --port {port}, fix the address, or {words.local}"
        ) from None


def _run_job(inputs: FoldInputs, job: FoldJob, threads: int) -> str | None:
    """One Ray task: train and save ``job``'s fold model on ``threads`` torch threads, then
    record where it ran; the error message when training fails, else None."""
    import ray
    import torch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        train_fold(inputs, job)
    except WeblyError as err:
        return str(err)
    record = {
        "executor": "ray",
        "node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "seconds": time.perf_counter() - started,
    }
    _write_record(job.workdir / TASK_FILE, record)
    return None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """Replace the JSON file at ``path`` in one step (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(record, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
