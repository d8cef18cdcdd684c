"""The YouTube-8M import's files as Ray tasks: one task of one CPU a file.

`import_files_on_ray` runs the import's per-file function (`webly.data.yt8m.import_file`: one
TFRecord file into one shard) for each file task as a Ray task spread over the cluster, and
yields the results in file order, so the import adds its shards in the same order and writes
the same store as a local import. Without ``executor.storage`` a task reads the file and writes
its shard at the caller's paths (every node must see them); with it, the caller uploads each
file under the call's folder of the storage, the task reads it from there into its node's work
folder, writes the shard there and uploads it, and the caller copies it to its place in the
dataset being written: the tasks are given file names only.

A bad record fails the import with the one-line `DataError` the task raised; a task whose
worker or node dies is run again (``executor.max_retries``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from webly.data.yt8m import FileResult, FileTask, import_file
from webly.errors import WeblyError
from webly.executor.ray import RayExecutor
from webly.executor.storage import Storage


def import_files_on_ray(executor: RayExecutor, tasks: Sequence[FileTask]) -> Iterator[FileResult]:
    """The result of each of ``tasks``, in their order, each file imported in a Ray task of
    one CPU and no GPU (module docstring)."""
    import ray

    task = executor.remote(_import_one, num_cpus=1, num_gpus=0)
    storage = executor.storage()
    try:
        if storage is not None:
            for index, file in enumerate(tasks):
                storage.upload(file.source, f"inputs/{index}")
            shipped = [
                replace(t, source=Path(t.source.name), shard=Path(t.shard.name)) for t in tasks
            ]
        else:
            shipped = list(tasks)
        refs = [task.remote(file, index, storage) for index, file in enumerate(shipped)]
        for index, (file, ref) in enumerate(zip(tasks, refs, strict=True)):
            try:
                result: FileResult = ray.get(ref)
            except ray.exceptions.RayTaskError as err:
                if isinstance(err.cause, WeblyError):
                    raise err.cause from None  # a bad file: its one-line message
                raise
            if storage is not None:
                storage.download(f"shards/{index}", file.shard)
            yield result
    finally:
        if storage is not None:
            storage.clear()


def _import_one(task: FileTask, index: int, storage: Storage | None) -> FileResult:
    """One Ray task: import the file of ``task``; with ``storage``, the file ``inputs/<index>``
    of the call into this node's work folder, and its shard back as ``shards/<index>``."""
    if storage is None:
        return import_file(task)
    work = storage.work / f"import-{index}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        local = replace(task, source=work / task.source.name, shard=work / task.shard.name)
        storage.download(f"inputs/{index}", local.source)
        result = import_file(local)
        storage.upload(local.shard, f"shards/{index}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result
