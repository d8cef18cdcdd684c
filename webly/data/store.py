"""The webly data store: sharded, memory-mapped Apache Arrow IPC files plus ``manifest.json``.

A dataset is a folder::

    manifest.json            format version, layout (feature groups, classes, task), shards
    shard-00000.arrow        Arrow IPC *file* format, uncompressed, one or more record batches
    shard-00001.arrow        ...

Columns of every shard: ``id`` (string), ``labels`` (list<int32>), optional ``group`` (string),
``text`` (string) and ``clean_labels`` (list<int32>), one column per video-level feature group
(``fixed_size_list<dtype>[dim]``) and one per frame-level group (``list<fixed_size_list<uint8>
[dim]>``: a ragged sequence of frames per row).

Reads are zero-copy: shards are memory-mapped and a gather of B rows copies only those rows (and
dequantises them on the fly). Writes are atomic: everything is written into a hidden temporary
folder beside the destination, which is renamed into place only after the manifest is written,
so an interrupted import leaves nothing that opens as a dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import crc32c
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from webly._fs import (
    OutputKind,
    claim_output,
    fsync_path,
    publish_output,
    remove_stale,
    temp_path,
)
from webly.core import Task
from webly.errors import DataError, WeblyWarning

FORMAT = "webly-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CACHE_ENV = "WEBLY_CACHE"
"""The environment variable naming this machine's cache folder (`cache_dir`)."""
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")

Dtype = Literal["uint8", "float16", "float32"]
Level = Literal["video", "frame"]
Sampling = Literal["first", "uniform", "random", "replace"]

_RESERVED = frozenset({"id", "labels", "group", "text", "clean_labels"})
_ARROW_DTYPES = {"uint8": pa.uint8(), "float16": pa.float16(), "float32": pa.float32()}


# --------------------------------------------------------------------------- quantisation


def quantize_uint8(x: np.ndarray, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    """Quantise floats to uint8 codes as YouTube-8M: ``round((clip(x) - lo) * 255 / range)``."""
    scale = 255.0 / (hi - lo)
    return np.rint((np.clip(x, lo, hi) - lo) * scale).astype(np.uint8)


def dequantize_uint8(codes: np.ndarray, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    """Inverse of `quantize_uint8`, as the starter code does: ``q*range/255 + range/512 + lo``.

    Returns float32 of the same shape as ``codes``.
    """
    span = hi - lo
    out = codes.astype(np.float32)
    out *= np.float32(span / 255.0)
    out += np.float32(span / 512.0 + lo)
    return out


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class FeatureSpec:
    """One feature group: ``dim`` values per row (video level) or per frame (frame level).

    ``uint8`` groups hold YouTube-8M codes over ``[quant_min, quant_max]``; reads dequantise them.
    """

    name: str
    dim: int
    dtype: Dtype = "float32"
    level: Level = "video"
    quant_min: float = -2.0
    quant_max: float = 2.0

    def __post_init__(self) -> None:
        if self.name in _RESERVED or not self.name:
            raise DataError(f"feature group name {self.name!r} is reserved; rename the group")
        if self.dim <= 0:
            raise DataError(f"feature group {self.name!r} has dim {self.dim}; it must be >= 1")
        if self.dtype not in _ARROW_DTYPES:
            raise DataError(
                f"feature group {self.name!r} has dtype {self.dtype!r}; "
                f"use one of {sorted(_ARROW_DTYPES)}"
            )
        if self.level not in ("video", "frame"):
            raise DataError(
                f"feature group {self.name!r} has level {self.level!r}; use video|frame"
            )

    def arrow_type(self) -> pa.DataType:
        row = pa.list_(_ARROW_DTYPES[self.dtype], self.dim)
        return row if self.level == "video" else pa.list_(row)

    def decode(self, values: np.ndarray) -> np.ndarray:
        """Stored values (any shape) -> float32."""
        if self.dtype == "uint8":
            return dequantize_uint8(values, self.quant_min, self.quant_max)
        return values.astype(np.float32)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """float or already-stored values -> the stored dtype."""
        if self.dtype == "uint8" and values.dtype != np.uint8:
            return quantize_uint8(values, self.quant_min, self.quant_max)
        return values.astype(self.dtype, copy=False)


@dataclass(frozen=True)
class Layout:
    """What every row of a dataset holds: feature groups, classes and optional columns."""

    features: tuple[FeatureSpec, ...]
    n_classes: int
    task: Task = Task.MULTILABEL
    class_names: tuple[str, ...] | None = None
    class_descriptions: tuple[str, ...] | None = None
    has_group: bool = False
    has_text: bool = False
    has_clean_labels: bool = False

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise DataError(f"feature group names repeat: {names}; give each group its own name")
        if self.n_classes < 1:
            raise DataError(f"n_classes is {self.n_classes}; it must be >= 1 (--num-classes)")
        object.__setattr__(self, "task", Task.parse(self.task))
        for what, given in (("names", self.class_names), ("descriptions", self.class_descriptions)):
            if given is not None and len(given) != self.n_classes:
                raise DataError(
                    f"{len(given)} class {what} given for {self.n_classes} classes; "
                    f"give one per class"
                )

    def feature(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        known = ", ".join(f.name for f in self.features) or "none"
        raise DataError(f"feature group {name!r} is not in this dataset (it has: {known})")

    def schema(self) -> pa.Schema:
        fields = [pa.field("id", pa.string(), nullable=False)]
        fields.append(pa.field("labels", pa.list_(pa.int32()), nullable=False))
        if self.has_clean_labels:
            fields.append(pa.field("clean_labels", pa.list_(pa.int32()), nullable=False))
        if self.has_group:
            fields.append(pa.field("group", pa.string(), nullable=False))
        if self.has_text:
            fields.append(pa.field("text", pa.string(), nullable=False))
        fields += [pa.field(f.name, f.arrow_type(), nullable=False) for f in self.features]
        return pa.schema(fields)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["features"] = [asdict(f) for f in self.features]
        for key in ("class_names", "class_descriptions"):
            value = getattr(self, key)
            out[key] = list(value) if value is not None else None
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Layout:
        names, descriptions = obj.get("class_names"), obj.get("class_descriptions")
        return cls(
            features=tuple(FeatureSpec(**f) for f in obj["features"]),
            n_classes=int(obj["n_classes"]),
            task=Task.parse(obj["task"]),
            class_names=tuple(names) if names is not None else None,
            class_descriptions=tuple(descriptions) if descriptions is not None else None,
            has_group=bool(obj["has_group"]),
            has_text=bool(obj["has_text"]),
            has_clean_labels=bool(obj["has_clean_labels"]),
        )


# --------------------------------------------------------------------------- writing


@dataclass
class Batch:
    """Rows to append to a dataset.

    ``features[name]`` is ``(B, dim)`` (floats, or uint8 codes for a uint8 group);
    ``frames[name]`` is a list of B arrays of shape ``(T_i, dim)``, or the same frames already
    in one buffer (`RaggedFrames`); the same ``T_i`` in every frame group of a row.
    """

    ids: Sequence[str]
    labels: Sequence[Sequence[int] | np.ndarray]
    features: dict[str, np.ndarray] = field(default_factory=dict)
    frames: Mapping[str, Sequence[np.ndarray] | RaggedFrames] = field(default_factory=dict)
    groups: Sequence[str] | None = None
    texts: Sequence[str] | None = None
    clean_labels: Sequence[Sequence[int] | np.ndarray] | None = None


@dataclass(frozen=True)
class RaggedFrames:
    """The frames of B rows in one buffer, as the store's list columns hold them: row ``i`` is
    ``values[offsets[i]:offsets[i + 1]]``.

    ``values`` is ``(n_frames, dim)`` (floats, or uint8 codes for a uint8 group); ``offsets`` is
    ``(B + 1,)`` integers rising from 0 to ``n_frames``. The writer wraps ``values`` in the Arrow
    column without copying it when it is C-contiguous and already of the group's dtype, and may
    hold it until the shard's next flush: hand over a buffer that is not written to afterwards.
    """

    values: np.ndarray
    offsets: np.ndarray


@dataclass(frozen=True)
class ShardInfo:
    """A finished shard: file name (relative to the dataset folder), rows, bytes and CRC32C."""

    file: str
    rows: int
    bytes: int
    crc32c: str


def _file_crc32c(path: Path) -> str:
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            crc = crc32c.crc32c(block, crc)
    return f"{crc:08x}"


def _arrow_numbers(values: np.ndarray) -> pa.Array:
    """A numeric numpy array, flattened, as an Arrow array without nulls; no copy when it is
    C-contiguous.

    What ``pa.array`` makes of it, without the import of pandas that ``pa.array`` does on its
    first call in a process (a second or more, in every worker of an import)."""
    flat = np.ascontiguousarray(values).ravel()
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(flat.dtype), len(flat), [None, pa.py_buffer(flat)]
    )


def _arrow_strings(texts: Sequence[str]) -> pa.Array:
    """``texts`` as an Arrow string array without nulls, built as `_arrow_numbers` (no pandas):
    one UTF-8 data buffer and ``(len(texts) + 1,)`` int32 offsets."""
    encoded = [text.encode("utf-8") for text in texts]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
    return pa.StringArray.from_buffers(
        len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))
    )


class _ChecksummedFile(io.RawIOBase):
    """A write-only file that keeps the CRC32C of what it wrote, so no second pass is needed."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.crc = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.crc = crc32c.crc32c(data, self.crc)
        return self._file.write(data)

    def close(self, sync: bool = True) -> None:
        """Close the file, first making it durable (fsync) if ``sync``."""
        if not self._file.closed:
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())
            self._file.close()
        super().close()


def _map_for_random_access(path: Path) -> pa.Buffer:
    """Memory-map ``path`` read-only, advising the kernel of random access.

    Without the advice a page fault reads ahead megabytes around it, so gathering random rows of
    a store larger than memory would read the whole file from disk; with it a gather reads the
    pages of the rows it takes.
    """
    with open(path, "rb") as fh:
        mapping = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    mapping.madvise(mmap.MADV_RANDOM)
    return pa.py_buffer(mapping)


def read_manifest(
    folder: Path, fmt: str, version: int, what: str, create: str, redo: str
) -> dict[str, Any]:
    """The ``manifest.json`` of ``folder``, checked to be of format ``fmt`` v``version``.

    Errors name the folder and say how to fix it: ``create`` when there is no manifest (the
    folder is not ``what``), ``redo`` when it is unreadable.
    """
    path = folder / MANIFEST
    if not path.is_file():
        hint = f"it is not {what}" if folder.exists() else "it does not exist"
        raise DataError(f"{folder}: no {MANIFEST} ({hint}); {create}")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable manifest ({err}); {redo}") from None
    if manifest.get("format") != fmt or manifest.get("format_version") != version:
        raise DataError(
            f"{path}: format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; this webly reads {fmt} v{version}"
        )
    return manifest


DATASET = OutputKind("a webly dataset", MANIFEST, FORMAT)
"""What ``--overwrite`` of a dataset import replaces: a folder with a dataset manifest."""
DATASETS = OutputKind("a folder of webly datasets", f"train/{MANIFEST}", FORMAT)
"""What ``--overwrite`` of a generator replaces: a folder of ``train/``, ``test/`` ... datasets."""


class ShardWriter:
    """Streams `Batch` es into one Arrow IPC file, validating every row against the layout.

    Rows are buffered up to ``batch_bytes`` and written as one record batch, so memory stays
    bounded whatever the shard's size. ``source`` (e.g. the input file) prefixes error messages.
    """

    def __init__(
        self, path: Path, layout: Layout, source: str, batch_bytes: int = 64 << 20
    ) -> None:
        self.path = Path(path)
        self.layout = layout
        self.source = source
        self.batch_bytes = batch_bytes
        self.rows = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_bytes = 0
        self._written_bytes = 0
        self._schema = layout.schema()
        self._file = _ChecksummedFile(self.path)
        self._writer = pa.ipc.new_file(pa.PythonFile(self._file, mode="w"), self._schema)

    @property
    def nbytes(self) -> int:
        """Bytes of row data written or buffered so far."""
        return self._written_bytes + self._pending_bytes

    @property
    def pending_rows(self) -> int:
        """Rows buffered for the next record batch: the writer still holds their arrays."""
        return sum(record.num_rows for record in self._pending)

    def write_batch(self, batch: Batch) -> None:
        self.write_record_batch(self._to_record_batch(batch))

    def write_record_batch(self, record: pa.RecordBatch) -> None:
        """Append rows already in this layout's Arrow schema (e.g. another store's chunk with
        new label columns); features are copied as they are, without decoding."""
        if not record.schema.equals(self._schema):
            raise DataError(
                f"{self.source}: record batch schema does not match the layout; "
                "build it with Layout.schema()"
            )
        self._pending.append(record)
        self._pending_bytes += record.nbytes
        self.rows += record.num_rows
        if self._pending_bytes >= self.batch_bytes:
            self._flush()

    def close(self, sync: bool = True) -> ShardInfo:
        """Write what is buffered, fsync (unless not ``sync``: a shard given to
        `DatasetWriter.add_shard` is synced there, in the background), and describe the
        finished shard."""
        self._flush()
        self._writer.close()
        self._file.close(sync)
        crc = f"{self._file.crc:08x}"
        return ShardInfo(self.path.name, self.rows, self.path.stat().st_size, crc)

    def abort(self) -> None:
        self._file.close(sync=False)
        self.path.unlink(missing_ok=True)

    def _flush(self) -> None:
        if self._pending:
            # One record batch per flush keeps reads to few chunks; a lone batch needs no copy.
            if len(self._pending) == 1:
                record = self._pending[0]
            else:
                record = pa.Table.from_batches(self._pending).combine_chunks().to_batches()[0]
            self._writer.write_batch(record)
            self._written_bytes += self._pending_bytes
            self._pending, self._pending_bytes = [], 0

    def _fail(self, row_id: str, message: str) -> DataError:
        return DataError(f"{self.source}: row {row_id!r}: {message}")

    def _label_array(self, ids: Sequence[str], labels: Sequence[Any], name: str) -> pa.Array:
        rows = [np.asarray(r, dtype=np.int64).ravel() for r in labels]
        lengths = np.fromiter((r.size for r in rows), dtype=np.int64, count=len(rows))
        values = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        n_classes = self.layout.n_classes
        bad = (values < 0) | (values >= n_classes)
        if bad.any():
            where = int(np.searchsorted(np.cumsum(lengths), np.flatnonzero(bad)[0], side="right"))
            raise self._fail(
                ids[where],
                f"{name} use class {int(values[bad][0])} but the dataset declares "
                f"{n_classes} classes (0..{n_classes - 1}); check --num-classes",
            )
        if not self.layout.task.multilabel and (lengths > 1).any():
            where = int(np.flatnonzero(lengths > 1)[0])
            raise self._fail(
                ids[where],
                f"{name} has {int(lengths[where])} labels but the task is multiclass "
                "(one label a row); use --task multilabel",
            )
        offsets = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        return pa.ListArray.from_arrays(
            _arrow_numbers(offsets), _arrow_numbers(values.astype(np.int32))
        )

    def _check_finite(self, ids: Sequence[str], name: str, values: np.ndarray) -> None:
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            flat = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
            raise self._fail(
                ids[int(np.flatnonzero(flat)[0])],
                f"feature {name!r} holds NaN or inf; clean or drop that row before import",
            )

    def _video_array(self, spec: FeatureSpec, ids: Sequence[str], values: Any) -> pa.Array:
        x = np.asarray(values)
        if x.ndim != 2 or x.shape != (len(ids), spec.dim):
            got = x.shape[-1] if x.ndim == 2 else x.shape
            raise self._fail(
                ids[0],
                f"feature {spec.name!r} has dimension {got} but the layout declares "
                f"{spec.dim}; check the feature columns or --dims",
            )
        self._check_finite(ids, spec.name, x)
        with np.errstate(over="ignore"):  # said by _check_range
            encoded = spec.encode(x)
        self._check_range(ids, spec, x.dtype, encoded, np.arange(len(ids) + 1))
        flat = _arrow_numbers(encoded.ravel())
        return pa.FixedSizeListArray.from_arrays(flat, spec.dim)

    def _check_range(
        self,
        ids: Sequence[str],
        spec: FeatureSpec,
        given: np.dtype[Any],
        encoded: np.ndarray,
        offsets: np.ndarray,
    ) -> None:
        """Refuse finite values that the stored float dtype turns into inf (e.g. 1e308 in
        float32, 1e5 in float16); ``offsets`` maps the rows of ``encoded`` to ``ids``. The
        values were checked finite as ``given``: stored as they were given, none can be."""
        if encoded.dtype.kind != "f" or encoded.dtype == given:
            return
        if not np.isfinite(encoded).all():
            first = int(np.flatnonzero(~np.isfinite(encoded.reshape(len(encoded), -1)).all(1))[0])
            raise self._fail(
                ids[int(np.searchsorted(offsets, first, side="right")) - 1],
                f"feature {spec.name!r} holds values beyond {spec.dtype}'s range "
                f"(+-{float(np.finfo(encoded.dtype).max):.4g}); scale them, or drop that row",
            )

    def _ragged(
        self, spec: FeatureSpec, ids: Sequence[str], rows: Sequence[Any] | RaggedFrames
    ) -> RaggedFrames:
        """The frames of ``spec`` for the rows ``ids`` as checked `RaggedFrames` with int32
        offsets (Arrow's list offsets): a list of per-row ``(T_i, dim)`` arrays is joined (one
        copy); given `RaggedFrames` keep their buffer."""
        if isinstance(rows, RaggedFrames):
            values, offsets = np.asarray(rows.values), np.asarray(rows.offsets)
            if values.ndim != 2 or values.shape[1] != spec.dim:
                raise DataError(
                    f"{self.source}: frames of {spec.name!r} have shape {values.shape} but the "
                    f"layout declares (n_frames, {spec.dim}); check the feature dimension"
                )
            if (
                offsets.shape != (len(ids) + 1,)
                or offsets[0] != 0
                or offsets[-1] != len(values)
                or (np.diff(offsets) < 0).any()
            ):
                raise DataError(
                    f"{self.source}: frame offsets of {spec.name!r} do not rise from 0 to "
                    f"{len(values)} in {len(ids) + 1} steps; build them as (0, *cumsum(n_frames))"
                )
        else:
            arrays = [np.asarray(r) for r in rows]
            for row_id, a in zip(ids, arrays, strict=True):
                if a.ndim != 2 or a.shape[1] != spec.dim:
                    raise self._fail(
                        row_id,
                        f"frames of {spec.name!r} have shape {a.shape} but the layout declares "
                        f"(n_frames, {spec.dim}); check the feature dimension",
                    )
            values = np.concatenate(arrays) if arrays else np.zeros((0, spec.dim), np.float32)
            lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
            offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
        if len(values) > np.iinfo(np.int32).max:
            raise DataError(
                f"{self.source}: {len(values):,} frames of {spec.name!r} in one batch; an Arrow "
                "list holds at most 2**31 - 1, write fewer rows at a time"
            )
        return RaggedFrames(values, offsets.astype(np.int32, copy=False))

    def _frame_array(self, spec: FeatureSpec, ids: Sequence[str], frames: RaggedFrames) -> pa.Array:
        """The Arrow ``list<fixed_size_list<dtype>[dim]>`` column of checked ``frames``."""
        values, offsets = frames.values, frames.offsets
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            frame = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
            raise self._fail(
                ids[int(np.searchsorted(offsets, frame, side="right")) - 1],
                f"frames of {spec.name!r} hold NaN or inf; clean or drop that row before import",
            )
        with np.errstate(over="ignore"):  # said by _check_range
            encoded = spec.encode(values)
        self._check_range(ids, spec, values.dtype, encoded, offsets)
        per_frame = pa.FixedSizeListArray.from_arrays(_arrow_numbers(encoded.ravel()), spec.dim)
        return pa.ListArray.from_arrays(_arrow_numbers(offsets), per_frame)

    def _to_record_batch(self, batch: Batch) -> pa.RecordBatch:
        layout, ids = self.layout, list(batch.ids)
        n = len(ids)
        if len(batch.labels) != n:
            raise DataError(f"{self.source}: {n} ids but {len(batch.labels)} label rows")
        columns: dict[str, pa.Array] = {
            "id": _arrow_strings(ids),
            "labels": self._label_array(ids, batch.labels, "labels"),
        }
        optional = {
            "clean_labels": (layout.has_clean_labels, batch.clean_labels),
            "group": (layout.has_group, batch.groups),
            "text": (layout.has_text, batch.texts),
        }
        for name, (declared, given) in optional.items():
            if declared and given is None:
                raise DataError(f"{self.source}: the layout declares {name!r} but none was given")
            if declared and given is not None:
                if name == "clean_labels":
                    columns[name] = self._label_array(ids, given, name)
                else:
                    columns[name] = _arrow_strings([str(v) for v in given])
        n_frames: np.ndarray | None = None
        for spec in layout.features:
            source = batch.features if spec.level == "video" else batch.frames
            if spec.name not in source:
                raise DataError(
                    f"{self.source}: feature group {spec.name!r} ({spec.level} level) is missing "
                    "from the input; check the feature names"
                )
            if spec.level == "video":
                columns[spec.name] = self._video_array(spec, ids, source[spec.name])
                continue
            frames = self._ragged(spec, ids, batch.frames[spec.name])
            lengths = np.diff(frames.offsets)
            if n_frames is not None and not np.array_equal(lengths, n_frames):
                where = int(np.flatnonzero(lengths != n_frames)[0])
                raise self._fail(
                    ids[where], "frame groups hold different numbers of frames; align them"
                )
            n_frames = lengths
            columns[spec.name] = self._frame_array(spec, ids, frames)
        return pa.RecordBatch.from_pydict(columns, schema=self._schema)


class DatasetWriter:
    """Writes a dataset atomically: shards go to a hidden temporary folder beside ``out`` which
    is renamed to ``out`` by `commit` after the manifest is written.

    Single process: ``with DatasetWriter(out, layout) as w: w.write_batch(batch)``.
    Parallel: workers write `ShardWriter` s at ``w.shard_path(i)`` and the caller `add_shard` s
    their `ShardInfo` in a fixed order, then `commit` s. A shard is made durable (fsync) in a
    background thread once added, while the next ones are written: the import runs at the
    speed of the slower of the disk and the CPUs, not of their sum.
    """

    def __init__(
        self,
        out: Path,
        layout: Layout,
        *,
        overwrite: bool = False,
        source: dict[str, Any] | None = None,
        shard_bytes: int = 1 << 30,
        inputs: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self.out = Path(out)
        self.layout = layout
        self.source = source or {}
        self.overwrite = overwrite
        self.shard_bytes = shard_bytes
        # ``overwrite`` replaces only a dataset, and never one holding (or in) the ``inputs``
        self.tmp = claim_output(self.out, overwrite, kind=DATASET, inputs=inputs)
        self.shards: list[ShardInfo] = []
        self._current: ShardWriter | None = None
        self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webly-fsync")
        self._syncs: list[Future[None]] = []  # the fsync of each added shard
        self._done = False

    def shard_path(self, index: int) -> Path:
        return self.tmp / f"shard-{index:05d}.arrow"

    def add_shard(self, info: ShardInfo) -> None:
        """Add the finished shard ``info`` (written at ``shard_path(len(shards))``, synced or
        not); `commit` waits for its fsync, which starts now, before writing the manifest."""
        self.shards.append(info)
        self._syncs.append(self._syncer.submit(fsync_path, self.tmp / info.file))

    def write_batch(self, batch: Batch, source: str = "input") -> None:
        """Validate and append ``batch``; ``source`` names the input in error messages."""
        self._shard(source).write_batch(batch)
        self._roll()

    def write_record_batch(self, record: pa.RecordBatch, source: str = "input") -> None:
        """Append an Arrow record batch already in the layout's schema."""
        self._shard(source).write_record_batch(record)
        self._roll()

    def _shard(self, source: str) -> ShardWriter:
        if self._current is None:
            self._current = ShardWriter(
                self.shard_path(len(self.shards)),
                self.layout,
                source,
                batch_bytes=min(64 << 20, self.shard_bytes),
            )
        self._current.source = source
        return self._current

    def _roll(self) -> None:
        """Close the current shard once it reaches ``shard_bytes``."""
        if self._current is not None and self._current.nbytes >= self.shard_bytes:
            self.add_shard(self._current.close(sync=False))
            self._current = None

    def commit(self) -> Dataset:
        if self._current is not None:
            self.add_shard(self._current.close(sync=False))
            self._current = None
        self._syncer.shutdown()
        try:
            for sync in self._syncs:
                sync.result()  # every shard is durable before the manifest names it
        except BaseException:
            self.abort()
            raise
        n_rows = sum(s.rows for s in self.shards)
        if n_rows == 0:
            self.abort()
            where = self.source.get("input", "the input")
            raise DataError(f"{where} holds no rows; nothing was written (check the input path)")
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "n_rows": n_rows,
            "layout": self.layout.to_json(),
            "shards": [asdict(s) for s in self.shards],
            "source": self.source,
        }
        path = self.tmp / MANIFEST
        with open(path, "w") as fh:
            json.dump(manifest, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        _warn_duplicate_ids(Dataset.open(self.tmp), self.out)
        publish_output(self.tmp, self.out)
        self._done = True
        return Dataset.open(self.out)

    def abort(self) -> None:
        if self._current is not None:
            self._current.abort()
            self._current = None
        self._syncer.shutdown(cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._done = True

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _warn_duplicate_ids(ds: Dataset, where: Path) -> None:
    """Warn if ids repeat, holding 8 bytes a row: ids are compared by hash, chunk by chunk,
    and only ids whose hash repeats are compared as strings."""

    def chunk_ids() -> Iterator[list[str]]:
        for _, chunk in ds.iter_chunks():
            yield chunk.column("id").to_pylist()

    hashes = np.concatenate([np.array([hash(i) for i in ids], np.int64) for ids in chunk_ids()])
    values, counts = np.unique(hashes, return_counts=True)
    suspects = set(values[counts > 1].tolist())
    if not suspects:
        return
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for ids in chunk_ids():
        for i in ids:
            if hash(i) in suspects:
                if i in seen:
                    repeated[i] = None
                seen.add(i)
    if repeated:
        warnings.warn(
            f"{where}: {len(repeated)} ids occur more than once (first: {next(iter(repeated))!r}); "
            "rows are kept, but give each row its own id if they are different samples",
            WeblyWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------- reading


class Dataset:
    """A read-only, memory-mapped view of a webly dataset (or of a subset of its rows).

    Row indices given to methods are positions in *this* view: ``ds.subset(rows).features([0])``
    is ``ds.features([rows[0]])``.
    """

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        chunks: list[pa.RecordBatch],
        rows: np.ndarray | None = None,
        source: str | None = None,
    ) -> None:
        self.path = path
        self.source = str(path) if source is None else source  # what it was opened from
        self.manifest = manifest
        self.layout = Layout.from_json(manifest["layout"])
        self._chunks = chunks
        sizes = np.array([c.num_rows for c in chunks], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(sizes)])
        self._rows = rows
        self._cache: dict[tuple[str, int], Any] = {}

    # ---- opening

    @classmethod
    def open(cls, path: str | Path, verify: bool = False) -> Dataset:
        """Open the dataset folder at ``path``; ``verify`` also checks every shard's CRC32C.

        ``path`` may be a filesystem URI (a str: ``s3://bucket/store``, ``file:///nfs/store``,
        any that ``pyarrow.fs`` reads): the store is copied once into this machine's cache
        (`fetch_store`) and opened there, and the `Dataset` pickles as the URI."""
        source = str(path)
        path = fetch_store(path) if isinstance(path, str) and _URI.match(path) else Path(path)
        manifest = read_manifest(
            path, FORMAT, FORMAT_VERSION, "a webly dataset folder", "import data first "
            "(webly data import-*)", "re-import"
        )  # fmt: skip
        chunks: list[pa.RecordBatch] = []
        for shard in manifest["shards"]:
            file = path / shard["file"]
            size = file.stat().st_size if file.is_file() else -1
            if size != shard["bytes"]:
                raise DataError(
                    f"{file}: expected {shard['bytes']} bytes, found "
                    f"{'no file' if size < 0 else size}; the dataset is damaged, re-import it"
                )
            if verify and _file_crc32c(file) != shard["crc32c"]:
                raise DataError(f"{file}: checksum mismatch; the dataset is damaged, re-import it")
            reader = pa.ipc.open_file(pa.BufferReader(_map_for_random_access(file)))
            chunks += [reader.get_batch(i) for i in range(reader.num_record_batches)]
        ds = cls(path, manifest, chunks, source=source)
        if ds._starts[-1] != manifest["n_rows"]:
            raise DataError(
                f"{path}: shards hold {ds._starts[-1]} rows, the manifest says "
                f"{manifest['n_rows']}; the dataset is damaged, re-import it"
            )
        return ds

    @classmethod
    def from_arrays(cls, features: Any = None, labels: Any = None, **options: Any) -> Dataset:
        """Write arrays to a store (a temporary one without ``path=``) and open it; see
        `webly.data.arrays.dataset_from_arrays`."""
        from webly.data.arrays import dataset_from_arrays

        return dataset_from_arrays(features, labels, **options)

    @classmethod
    def from_pandas(cls, frame: Any, label: str | None = "label", **options: Any) -> Dataset:
        """Write a DataFrame with a label column to a store and open it; see
        `webly.data.arrays.dataset_from_pandas`."""
        from webly.data.arrays import dataset_from_pandas

        return dataset_from_pandas(frame, label, **options)

    # ---- shape of the data

    def __len__(self) -> int:
        return int(self._starts[-1]) if self._rows is None else int(self._rows.size)

    def __repr__(self) -> str:
        groups = ", ".join(
            f"{f.name}:{f.dim}{'f' if f.level == 'frame' else ''}" for f in self.layout.features
        )
        return (
            f"Dataset({str(self.path)!r}, rows={len(self)}, classes={self.n_classes}, [{groups}])"
        )

    @property
    def n_classes(self) -> int:
        return self.layout.n_classes

    @property
    def task(self) -> Task:
        return self.layout.task

    @property
    def class_names(self) -> list[str]:
        names = self.layout.class_names
        return list(names) if names is not None else [str(i) for i in range(self.n_classes)]

    def subset(self, rows: Sequence[int] | np.ndarray) -> Dataset:
        """A view of ``rows`` (positions in this view), sharing the memory maps."""
        return Dataset(self.path, self.manifest, self._chunks, self._global(rows), self.source)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as what it was opened from (its folder, or its URI) and its rows, never its
        data: unpickling opens that again, so another process on a shared file system (a Ray
        worker) maps the same files, or fetches the store from its URI."""
        return _reopen, (self.source, self._rows)

    # ---- whole columns (small per row)

    @property
    def ids(self) -> np.ndarray:
        """``(n_samples,)`` object array of str."""
        return self._rowwise(self._column_objects("id"))

    @property
    def groups(self) -> np.ndarray | None:
        """``(n_samples,)`` object array of group ids (e.g. product), or None."""
        return self._rowwise(self._column_objects("group")) if self.layout.has_group else None

    @property
    def texts(self) -> np.ndarray | None:
        """``(n_samples,)`` object array of text metadata, or None."""
        return self._rowwise(self._column_objects("text")) if self.layout.has_text else None

    @property
    def labels(self) -> sp.csr_matrix:
        """``(n_samples, n_classes)`` CSR matrix of float32 ones at the given labels."""
        return self._label_matrix("labels")

    @property
    def clean_labels(self) -> sp.csr_matrix | None:
        """The true labels, for benchmarks that know them, else None."""
        return self._label_matrix("clean_labels") if self.layout.has_clean_labels else None

    def folds(self, n_folds: int = 5, seed: int = 0) -> np.ndarray:
        """``(n_samples,)`` int8 fold of each row; see `webly.data.folds.assign_folds`."""
        from webly.data.folds import assign_folds

        return assign_folds(self.labels, n_folds=n_folds, seed=seed, groups=self.groups)

    # ---- gathers

    def features(
        self, rows: Sequence[int] | np.ndarray, groups: Sequence[str] | None = None
    ) -> np.ndarray:
        """Video-level features of ``rows``, ``groups`` (default: every video-level group, in
        layout order) concatenated: ``(B, sum(dims))`` float32."""
        specs = self._level_specs(groups, "video")
        global_rows = self._global(rows)
        out = np.empty((global_rows.size, sum(s.dim for s in specs)), dtype=np.float32)
        for chunk, positions, local in self._by_chunk(global_rows):
            col = 0
            for spec in specs:
                values = self._values(spec.name, chunk)
                out[positions, col : col + spec.dim] = spec.decode(values[local])
                col += spec.dim
        return out

    def frames(
        self,
        rows: Sequence[int] | np.ndarray,
        groups: Sequence[str] | None = None,
        max_frames: int | None = None,
        sampling: Sampling = "first",
        rng: np.random.Generator | None = None,
        decode: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frame-level features of ``rows``, ``groups`` (default: every frame-level group, in
        layout order) concatenated, zero-padded.

        Returns ``(x, lengths)``: ``x`` is ``(B, T, sum(dims))`` float32 with ``T`` the longest
        kept sequence, ``lengths`` ``(B,)`` int64 frames kept per row. With ``max_frames``, rows
        longer than it keep ``max_frames`` frames in time order: the ``first`` ones, ``uniform``-ly
        spaced ones, or a ``random`` subset (``rng`` required). ``replace`` gives every non-empty
        row as many frames as it has, at most ``max_frames``, drawn with replacement, in time
        order (``rng`` required). Only the kept frames are read and dequantised.
        ``decode=False`` returns the stored values instead of float32 (the groups must share one
        stored dtype), e.g. uint8 codes to dequantise on a GPU with `FeatureSpec.decode`'s
        arithmetic.
        """
        specs = self._level_specs(groups, "frame")
        dtypes = {spec.dtype for spec in specs}
        if not decode and len(dtypes) > 1:
            raise DataError(
                f"groups {', '.join(s.name for s in specs)} are stored as {sorted(dtypes)}; "
                "decode=False needs one stored dtype"
            )
        if sampling in ("random", "replace") and rng is None:
            raise DataError(f"sampling={sampling!r} needs rng=np.random.default_rng(seed)")
        global_rows = self._global(rows)
        picks: list[np.ndarray] = [np.empty(0, np.int64)] * global_rows.size
        plan = []
        for chunk, positions, local in self._by_chunk(global_rows):
            offsets = self._offsets(specs[0].name, chunk)
            for pos, row in zip(positions, local, strict=True):
                start, stop = int(offsets[row]), int(offsets[row + 1])
                picks[pos] = start + _pick_frames(stop - start, max_frames, sampling, rng)
            plan.append((chunk, positions))
        lengths = np.array([p.size for p in picks], dtype=np.int64)
        n_time = int(lengths.max(initial=0))
        dtype = np.float32 if decode else np.dtype(specs[0].dtype)
        out = np.zeros((global_rows.size, n_time, sum(s.dim for s in specs)), dtype=dtype)
        for chunk, positions in plan:
            flat = np.concatenate([picks[p] for p in positions])
            row_of = np.repeat(positions, lengths[positions])
            time_of = np.concatenate([np.arange(lengths[p]) for p in positions])
            col = 0
            for spec in specs:
                values = self._values(spec.name, chunk)
                picked = values[flat]
                out[row_of, time_of, col : col + spec.dim] = (
                    spec.decode(picked) if decode else picked
                )
                col += spec.dim
        return out, lengths

    def n_frames(self) -> np.ndarray:
        """``(n_samples,)`` int64 frames per row (0 for a dataset without frame groups)."""
        frame_groups = [f for f in self.layout.features if f.level == "frame"]
        if not frame_groups:
            return np.zeros(len(self), dtype=np.int64)
        counts = np.concatenate(
            [np.diff(self._offsets(frame_groups[0].name, c)) for c in range(len(self._chunks))]
        )
        return counts if self._rows is None else counts[self._rows]

    def iter_chunks(self) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Yield ``(first_row, record_batch)`` over the whole store (ignores subsetting)."""
        for start, chunk in zip(self._starts[:-1], self._chunks, strict=True):
            yield int(start), chunk

    # ---- internals

    def _level_specs(self, groups: Sequence[str] | None, level: Level) -> list[FeatureSpec]:
        """The specs of ``groups``, each checked to be ``level``-level; None: all of that level."""
        other = "Dataset.frames" if level == "video" else "Dataset.features"
        if groups is None:
            specs = [f for f in self.layout.features if f.level == level]
            if not specs:
                have = ", ".join(f"{f.name} ({f.level})" for f in self.layout.features)
                raise DataError(
                    f"{self.path}: no {level}-level feature groups (it has: {have or 'none'}); "
                    f"use {other}"
                )
            return specs
        specs = [self.layout.feature(g) for g in groups]
        for spec in specs:
            if spec.level != level:
                raise DataError(f"{spec.name!r} is a {spec.level}-level group; use {other}")
        return specs

    def _global(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(rows, dtype=np.int64).ravel()
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise DataError(f"row index out of range for a dataset of {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        return idx if self._rows is None else self._rows[idx]

    def _by_chunk(self, rows: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Group global ``rows`` by record batch: yields (chunk, positions in rows, local rows)."""
        chunk_of = np.searchsorted(self._starts, rows, side="right") - 1
        order = np.argsort(chunk_of, kind="stable")
        sorted_chunks = chunk_of[order]
        bounds = np.flatnonzero(np.diff(sorted_chunks)) + 1
        for part in np.split(order, bounds):
            if part.size:
                chunk = int(chunk_of[part[0]])
                yield chunk, part, rows[part] - self._starts[chunk]

    def _values(self, name: str, chunk: int) -> np.ndarray:
        """Zero-copy ``(n_rows or n_frames, dim)`` view of a feature column of one chunk."""
        key = (name, chunk)
        if key not in self._cache:
            spec = self.layout.feature(name)
            column = self._chunks[chunk].column(name)
            fixed = column if spec.level == "video" else column.values
            flat = fixed.values.to_numpy(zero_copy_only=True)
            self._cache[key] = flat.reshape(-1, spec.dim)
        return self._cache[key]

    def _offsets(self, name: str, chunk: int) -> np.ndarray:
        key = (name + "#offsets", chunk)
        if key not in self._cache:
            self._cache[key] = self._chunks[chunk].column(name).offsets.to_numpy()
        return self._cache[key]

    def _column_objects(self, name: str) -> np.ndarray:
        key = (name, -1)
        if key not in self._cache:
            parts = [c.column(name).to_numpy(zero_copy_only=False) for c in self._chunks]
            self._cache[key] = np.concatenate(parts) if parts else np.empty(0, dtype=object)
        return self._cache[key]

    def _rowwise(self, values: np.ndarray) -> np.ndarray:
        return values if self._rows is None else values[self._rows]

    def _label_matrix(self, name: str) -> sp.csr_matrix:
        key = (name, -1)
        if key not in self._cache:
            indptr, indices = [np.zeros(1, np.int64)], []
            for chunk in self._chunks:
                column = chunk.column(name)
                offsets = column.offsets.to_numpy().astype(np.int64)
                indptr.append(offsets[1:] - offsets[0] + indptr[-1][-1])
                indices.append(column.values.to_numpy()[offsets[0] : offsets[-1]])
            ind = np.concatenate(indices) if indices else np.zeros(0, np.int32)
            matrix = sp.csr_matrix(
                (np.ones(ind.size, np.float32), ind, np.concatenate(indptr)),
                shape=(int(self._starts[-1]), self.n_classes),
            )
            matrix.sum_duplicates()
            matrix.data[:] = 1.0
            self._cache[key] = matrix
        matrix = self._cache[key]
        return matrix if self._rows is None else matrix[self._rows]


def cache_dir() -> Path:
    """This machine's cache folder: ``$WEBLY_CACHE``, else ``~/.cache/webly``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "webly")


def fetch_store(uri: str) -> Path:
    """The local copy of the dataset folder at the filesystem URI ``uri``: copied through
    ``pyarrow.fs`` into ``cache_dir()/stores/<hash of its manifest>`` (atomically, by a rename)
    unless a copy of the same manifest is there already."""
    from pyarrow import fs

    try:
        remote, root = fs.FileSystem.from_uri(uri)
        with remote.open_input_stream(f"{root.rstrip('/')}/{MANIFEST}") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()[:32]
    except (OSError, pa.ArrowException) as err:
        raise DataError(
            f"{uri}: no readable {MANIFEST} there ({err}); check the URI and the credentials of "
            "its file system, or import the data first"
        ) from None
    local = cache_dir() / "stores" / digest
    if not (local / MANIFEST).is_file():
        local.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(local)
        tmp = temp_path(local)
        tmp.mkdir()
        fs.copy_files(root, str(tmp), source_filesystem=remote)
        try:
            os.replace(tmp, local)
        except OSError:  # another process put the same copy there first
            shutil.rmtree(tmp, ignore_errors=True)
    return local


def _reopen(path: str, rows: np.ndarray | None) -> Dataset:
    """The `Dataset` at ``path``, or its view of ``rows``: what a pickled one loads as."""
    ds = Dataset.open(path)
    return ds if rows is None else ds.subset(rows)


def _pick_frames(
    n: int, max_frames: int | None, sampling: Sampling, rng: np.random.Generator | None
) -> np.ndarray:
    """Indices (in time order) of the frames to keep out of ``n``."""
    if sampling == "replace" and max_frames is not None and n > 0:
        assert rng is not None
        return np.sort(rng.integers(0, n, size=min(n, max_frames)))
    if max_frames is None or n <= max_frames:
        return np.arange(n)
    if sampling == "first":
        return np.arange(max_frames)
    if sampling == "uniform":
        return np.linspace(0, n - 1, max_frames).round().astype(np.int64)
    if sampling == "random":
        assert rng is not None
        return np.sort(rng.choice(n, size=max_frames, replace=False))
    raise DataError(
        f"frame sampling {sampling!r} is unknown; use first, uniform, random or replace"
    )
