"""A fold task's inputs and outputs through a filesystem URI: ``executor.storage``.

With ``storage`` (``s3://bucket/webly``, ``file:///nfs/webly``, ``hdfs://...``, any URI that
``pyarrow.fs.FileSystem.from_uri`` reads, or a path every node mounts) the Ray tasks of one
`RayExecutor.train_folds` call see no path of the caller's machine::

    STORAGE/stores/<hash of the manifest>/   every store the tasks read, published once
                                             (manifest last: a copy with one is whole)
    STORAGE/jobs/<call id>/<member>/<fold>/  a task's fold files, until the caller fetched them
    STORAGE/jobs/<call id>/inputs/<i>, shards/<i>   an import's files and their shards
                                             (`webly.executor.ray_import`)

The caller pickles the call's `FoldInputs` with every `Dataset` in them replaced by the URI of
its published copy (`Storage.pack`), and gives each task its `FoldJob` with the fold's folder
relative (``<member>/<fold>``). A task opens the stores by URI (each node copies a store once
into its cache, `webly.data.store.fetch_store`), trains in ``<cache>/work/<call id>/`` (so a
retry on the same node resumes from its checkpoint; on another node it trains the fold from the
start, to the same model) and uploads the fold's files (`Storage.put`); the caller copies them
into the run directory (`Storage.fetch`) and removes the call's ``jobs`` folder at the end.
Published stores stay for later calls; remove ``STORAGE/stores`` when no run needs them.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyarrow import fs

from webly._fs import temp_path
from webly.data.store import MANIFEST, Dataset, cache_dir
from webly.errors import ConfigError

if TYPE_CHECKING:  # the trainer imports this package and hands it the work: types only
    from webly.train.oof import FoldInputs, FoldJob


class Storage:
    """The folder at ``uri`` shared by the caller and the Ray tasks of the call ``call``
    (module docstring); pickles as its URI and call, so each process resolves the file system
    itself (with its own credentials).

    `ConfigError` naming ``executor.storage`` when ``pyarrow.fs`` resolves no file system
    for ``uri``."""

    def __init__(self, uri: str, call: str) -> None:
        try:
            self.fs, root = fs.FileSystem.from_uri(uri)
        except (pa.ArrowException, OSError) as err:
            raise ConfigError(
                f"executor.storage {uri}: pyarrow.fs finds no file system there ({err}); give a "
                "URI it reads (s3://bucket/prefix, file:///shared/folder, hdfs://...) or a path "
                "every node mounts"
            ) from None
        self.uri, self.call = uri, call
        self.root = root.rstrip("/")

    def __reduce__(self) -> tuple[Any, ...]:
        return Storage, (self.uri, self.call)

    # ---- the caller

    def pack(self, inputs: FoldInputs, jobs: Sequence[FoldJob]) -> tuple[bytes, list[FoldJob]]:
        """``inputs`` pickled with each store replaced by its published copy's URI (and the
        time budget's fold folders made relative), and ``jobs`` with relative folders: what
        the tasks are given."""
        budget = inputs.budget
        if budget is not None:
            inputs = replace(
                inputs, budget=replace(budget, workdirs=tuple(_relative(budget.workdirs)))
            )
        buffer = io.BytesIO()
        _StoresByUri(buffer, self).dump(inputs)
        return buffer.getvalue(), [
            replace(job, workdir=_relative([job.workdir])[0]) for job in jobs
        ]

    def publish(self, dataset: Dataset) -> str:
        """The URI of ``dataset``'s folder copied under ``stores/`` (named by the hash of its
        manifest; copied only when no whole copy is there: the manifest goes last)."""
        manifest = (dataset.path / MANIFEST).read_bytes()
        key = f"stores/{hashlib.sha256(manifest).hexdigest()[:32]}"
        target = f"{self.root}/{key}"
        if self.fs.get_file_info(f"{target}/{MANIFEST}").type != fs.FileType.File:
            self.fs.create_dir(target, recursive=True)
            names = [shard["file"] for shard in dataset.manifest["shards"]] + [MANIFEST]
            for name in names:
                fs.copy_files(
                    str(dataset.path / name), f"{target}/{name}", destination_filesystem=self.fs
                )
        return f"{self.uri.rstrip('/')}/{key}"

    def fetch(self, job: FoldJob) -> None:
        """Move the files ``job``'s task uploaded into its folder of the run directory, each by
        a rename (a folder there of the same name is replaced)."""
        local = temp_path(job.workdir, "fetch")
        self.download(_key(job), local)
        job.workdir.mkdir(parents=True, exist_ok=True)
        for entry in sorted(local.iterdir()):
            target = job.workdir / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
        local.rmdir()

    def clear(self) -> None:
        """Remove the call's ``jobs`` folder."""
        if self.fs.get_file_info(self._jobs).type == fs.FileType.Directory:
            self.fs.delete_dir(self._jobs)

    # ---- a task

    def unpack(self, payload: bytes) -> FoldInputs:
        """The `FoldInputs` of `pack` (its stores opened by URI), the time budget's folders
        under this node's `work` folder."""
        inputs: FoldInputs = pickle.loads(payload)
        budget = inputs.budget
        if budget is not None:
            workdirs = tuple(self.work / w for w in budget.workdirs)
            inputs = replace(inputs, budget=replace(budget, workdirs=workdirs))
        return inputs

    def local(self, job: FoldJob) -> FoldJob:
        """``job`` (as `pack` gave it) in this node's `work` folder."""
        return replace(job, workdir=self.work / job.workdir)

    def put(self, job: FoldJob) -> None:
        """Upload the files of ``job``'s folder on this node (`local`), then remove it."""
        self.upload(job.workdir, _key(job))
        shutil.rmtree(job.workdir)

    @property
    def work(self) -> Path:
        """This node's folder of the call's folds: ``<cache>/work/<call id>``."""
        return cache_dir() / "work" / self.call

    # ---- both

    def upload(self, local: Path, key: str) -> None:
        """Copy the file or folder ``local`` to ``jobs/<call id>/<key>``."""
        target = f"{self._jobs}/{key}"
        self.fs.create_dir(target.rpartition("/")[0], recursive=True)
        fs.copy_files(str(local), target, destination_filesystem=self.fs)

    def download(self, key: str, local: Path) -> None:
        """Copy the file or folder ``jobs/<call id>/<key>`` to ``local``."""
        fs.copy_files(
            f"{self._jobs}/{key}", str(local), source_filesystem=self.fs,
            destination_filesystem=fs.LocalFileSystem(),
        )  # fmt: skip

    @property
    def _jobs(self) -> str:
        return f"{self.root}/jobs/{self.call}"


class _StoresByUri(pickle.Pickler):
    """Pickles each `Dataset` as the URI of its published copy (`Storage.publish`), once per
    folder, with its rows."""

    def __init__(self, file: io.BytesIO, storage: Storage) -> None:
        super().__init__(file, protocol=5)
        self.storage = storage
        self.published: dict[Path, str] = {}

    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, Dataset):
            return NotImplemented
        reopen, (_, rows) = obj.__reduce__()
        if obj.path not in self.published:
            self.published[obj.path] = self.storage.publish(obj)
        return reopen, (self.published[obj.path], rows)


def _key(job: FoldJob) -> str:
    """The key of ``job``'s files (its folder in the run directory, relative, or on a node:
    the same key): ``<member>/<fold>``."""
    return _relative([job.workdir])[0].as_posix()


def _relative(workdirs: Sequence[Path]) -> list[Path]:
    """Fold folders (``.../<member>/<fold>``) as ``<member>/<fold>``."""
    return [Path(*Path(w).parts[-2:]) for w in workdirs]
