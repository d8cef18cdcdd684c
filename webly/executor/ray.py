"""The Ray executor: fold models trained as Ray tasks across a cluster's nodes.

Connecting. ``executor.address`` is the head's ``HOST:PORT`` (``ray start --head``),
``ray://HOST:PORT`` (Ray Client, from a machine outside the cluster), ``auto`` (the cluster
started on this machine) or null/``local`` (a Ray instance inside this process). A Ray session
this process had opened before (the caller's own ``ray.init``) is used as it is, whatever the
address, and never shut down. Otherwise webly opens a session of its own when the first jobs
come (in a namespace of its own), keeps it for later calls with the same address and
runtime_env, shuts it down before joining with others, and leaves it to end with the process.

Runtime environment. webly's session gets ``executor.runtime_env`` as ``ray.init``'s
``runtime_env``; without one, a session that joins a cluster ships webly's own package
(``py_modules``: the nodes need webly's dependencies, not webly) and one inside this process
ships nothing. In the caller's session a given ``runtime_env`` is set on each task instead (Ray
merges it with the session's; Ray uploads local folders only from ``ray.init``, so give those to
your own).

Each `webly.train.oof.FoldJob` is one task of ``cpus_per_task`` CPUs and ``gpus_per_task``
GPUs, spread over the nodes (Ray's ``SPREAD`` strategy). The task gets the call's shared
`FoldInputs` once per node from the object store. Without ``executor.storage`` the training
store travels as its folder's path (or the URI it was opened from) and the task works in the
fold's folder of the run directory: every node must see those paths. With ``storage`` (a
filesystem URI every node reaches) the stores travel as URIs of copies published there and the
fold's files come back through it (`webly.executor.storage`). The task sets torch to
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

import importlib.util
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import webly
from webly._fs import write_atomic
from webly.errors import ConfigError, WeblyError
from webly.executor import RECIPE_WORDS, ExecutorConfig, Words
from webly.executor.storage import Storage

if TYPE_CHECKING:  # the trainer imports this package and hands it the work: types only
    from webly.train.oof import FoldInputs, FoldJob

TASK_FILE = "task.json"
CONNECT_TIMEOUT_S = 5.0
CLIENT = "ray://"
"""The scheme of a Ray Client address."""
_session: tuple[str, str] | None = None  # (namespace, what it joined) of webly's own session


class RayExecutor:
    """Trains the fold models of `fit_oof` / `fit_full` as Ray tasks (module docstring).

    Construction checks that ray imports (and Ray Client's grpcio for ``ray://``), that the
    head at ``config.address`` accepts a TCP connection within `CONNECT_TIMEOUT_S`, that Ray
    accepts ``config.runtime_env`` and that ``pyarrow.fs`` resolves ``config.storage``
    (`ConfigError` naming what and the fix, in ``words``); the session is joined when the first
    jobs come.
    """

    def __init__(self, config: ExecutorConfig, words: Words = RECIPE_WORDS) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"{words.ray} needs the ray package, which is not installed; pip install the "
                f"ray of requirements.txt or {words.local}"
            ) from None
        address = config.address
        client = address is not None and address.startswith(CLIENT)
        if client and importlib.util.find_spec("grpc") is None:
            raise ConfigError(
                f"{words.address} {address}: Ray Client needs ray[client] (grpcio), which is not "
                "installed; pip install 'ray[client]', or give the head's HOST:PORT"
            )
        if address not in (None, "auto"):
            check_reachable(address, words)
        if config.runtime_env is not None:
            _check_runtime_env(config.runtime_env)
        if config.storage is not None:
            Storage(config.storage, "")  # the file system resolves
        self.config = config
        self.words = words

    def train_folds(
        self,
        train_fold: Callable[[FoldInputs, FoldJob], None],
        inputs: FoldInputs,
        jobs: Sequence[FoldJob],
    ) -> dict[str, str]:
        """Train ``jobs`` as Ray tasks, each calling ``train_fold`` (shipped by reference: a
        worker imports its module), and wait for all of them; ``{member id: error}`` of the
        members one of whose tasks failed (the first message)."""
        import ray

        task = self.remote(_run_job)
        storage = self.storage()
        try:
            payload, shipped = (inputs, jobs) if storage is None else storage.pack(inputs, jobs)
            shared = ray.put(payload)
            threads = self.config.cpus_per_task
            refs = [task.remote(train_fold, shared, job, threads, storage) for job in shipped]
            failed: dict[str, str] = {}
            for job, ref in zip(jobs, refs, strict=True):
                error = self._outcome(ray, job, ref)
                if error is not None:
                    failed.setdefault(job.member.id, error)
                elif storage is not None:
                    storage.fetch(job)
            return failed
        finally:
            if storage is not None:
                storage.clear()

    def remote(self, function: Callable[..., Any], **options: Any) -> Any:
        """``function`` as a Ray remote function, once connected: a task of ``cpus_per_task``
        CPUs and ``gpus_per_task`` GPUs, retried ``max_retries`` times, spread over the nodes
        (in the caller's session with ``runtime_env``); ``options`` override those."""
        ray, runtime_env = self._connect()
        config = self.config
        defaults: dict[str, Any] = {
            "num_cpus": config.cpus_per_task,
            "num_gpus": config.gpus_per_task,
            "max_retries": config.max_retries,
            "scheduling_strategy": "SPREAD",
        }
        if runtime_env is not None:
            defaults["runtime_env"] = runtime_env
        try:
            return ray.remote(function).options(**(defaults | options))
        except ValueError as err:  # a local folder in the runtime_env of a task
            raise ConfigError(
                f"executor.runtime_env: Ray refuses it on the tasks of a session you opened "
                f"({err}); give local folders to your own ray.init, or URIs here"
            ) from None

    def storage(self) -> Storage | None:
        """The ``executor.storage`` of one call (a new call id), or None without it."""
        storage = self.config.storage
        return None if storage is None else Storage(storage, uuid.uuid4().hex)

    def _outcome(self, ray: Any, job: FoldJob, ref: Any) -> str | None:
        """The error message of ``job``'s task ``ref`` once it ended, None when it trained."""
        try:
            return cast(str | None, ray.get(ref))
        except ray.exceptions.RayTaskError:
            raise  # an exception other than a WeblyError in the task: a bug, with its trace
        except ray.exceptions.RayError as err:
            return (
                f"{job.name}: its Ray task was lost after {self.config.max_retries} retries "
                f"({type(err).__name__}); run again to retry it, or raise executor.max_retries"
            )

    def _connect(self) -> tuple[Any, dict[str, Any] | None]:
        """The ``ray`` module, connected (module docstring), and the runtime_env to set on each
        task: the configured one in the caller's session, else None (the session has it)."""
        import ray

        global _session
        address, runtime_env = self.config.address, self._runtime_env()
        joins = json.dumps([address, runtime_env], sort_keys=True)
        if ray.is_initialized():
            if _session is None or ray.get_runtime_context().namespace != _session[0]:
                return ray, self.config.runtime_env  # the caller's session, used as it is
            if _session[1] == joins:
                return ray, None
            ray.shutdown()  # webly's own session, to another address or runtime_env
        _session = None
        namespace = f"webly-{uuid.uuid4().hex[:12]}"
        options: dict[str, Any] = {"namespace": namespace, "runtime_env": runtime_env}
        if address is None:
            options |= {"include_dashboard": False}  # a new instance inside this process
        if address is None or not address.startswith(CLIENT):  # Ray Client takes neither
            options |= {"logging_level": logging.ERROR, "log_to_driver": False}
        try:
            ray.init(address=address, **options)
        except ConnectionError as err:
            raise ConfigError(
                f"{self.words.address} {address}: no Ray cluster found ({err}); start one with "
                f"ray start --head, give its HOST:PORT, or {self.words.local}"
            ) from None
        _session = (namespace, joins)
        return ray, None

    def _runtime_env(self) -> dict[str, Any] | None:
        """The runtime_env of webly's session: the configured one, else webly's package for a
        session that joins a cluster (module docstring)."""
        if self.config.runtime_env is not None or self.config.address is None:
            return self.config.runtime_env
        return {"py_modules": [str(Path(webly.__file__).parent)], "excludes": ["__pycache__"]}


def check_reachable(
    address: str, words: Words = RECIPE_WORDS, timeout: float = CONNECT_TIMEOUT_S
) -> None:
    """`ConfigError` unless something accepts a TCP connection at ``address`` (HOST:PORT, the
    Ray head's GCS port, or ray://HOST:PORT, its Ray Client server) within ``timeout``
    seconds."""
    host, _, port = address.removeprefix(CLIENT).rpartition(":")
    option = "--ray-client-server-port" if address.startswith(CLIENT) else "--port"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            f"{words.address} {address}: no Ray head answers there ({reason}); start one with "
            f"ray start --head {option} {port}, fix the address, or {words.local}"
        ) from None


def _check_runtime_env(runtime_env: dict[str, Any]) -> None:
    """`ConfigError` naming ``executor.runtime_env`` unless Ray accepts ``runtime_env``."""
    from ray.runtime_env import RuntimeEnv

    try:
        RuntimeEnv(**runtime_env)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"executor.runtime_env: Ray refuses it ({err}); give a runtime_env as ray.init "
            "takes it, e.g. {pip: [...], env_vars: {...}}, or null"
        ) from None


def _run_job(
    train_fold: Callable[[FoldInputs, FoldJob], None],
    inputs: FoldInputs | bytes,
    job: FoldJob,
    threads: int,
    storage: Storage | None,
) -> str | None:
    """One Ray task: train and save ``job``'s fold model by ``train_fold`` on ``threads`` torch
    threads, then record where it ran; the error message when training fails, else None. With
    ``storage`` (``inputs`` and ``job`` as `Storage.pack` gave them) it trains in this node's
    work folder and uploads the fold's files there."""
    import ray
    import torch

    torch.set_num_threads(threads)
    if storage is not None:
        inputs, job = storage.unpack(cast(bytes, inputs)), storage.local(job)
    started = time.perf_counter()
    try:
        train_fold(cast("FoldInputs", inputs), job)
    except WeblyError as err:
        return str(err)
    record = {
        "executor": "ray",
        "node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "seconds": time.perf_counter() - started,
    }
    write_atomic(job.workdir / TASK_FILE, json.dumps(record, indent=1).encode())
    if storage is not None:
        storage.put(job)
    return None
