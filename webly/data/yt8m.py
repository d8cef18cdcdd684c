"""Import YouTube-8M TFRecord files into a webly dataset.

Group names follow the files and are the same at both levels: ``rgb`` and ``audio`` are always
frame-level (uint8 frames), ``mean_rgb`` and ``mean_audio`` always video-level. So a zoo or
recipe of video-level members (whose default is every video-level group, or which name
``mean_audio`` etc.) runs unchanged on a video-level or a frame-level import.

Video-level files hold one ``tf.train.Example`` per video: ``id`` (bytes), ``labels`` (int64
list), ``mean_rgb`` (1024 float32) and ``mean_audio`` (128 float32). They become the video-level
groups ``mean_rgb`` and ``mean_audio``, float32 by default (bit-identical to the file's floats).

Frame-level files hold one ``tf.train.SequenceExample`` per video: context ``id`` and ``labels``,
feature lists ``rgb`` and ``audio`` with one uint8 byte string per frame (about one frame a
second). They become the frame-level groups ``rgb`` ``(n_frames, 1024)`` and ``audio``
``(n_frames, 128)`` stored as uint8 codes (the store dequantises them on read), plus the
video-level groups ``mean_rgb`` and ``mean_audio``: the mean of the dequantised frames.

A store records its groups' names in its manifest and its shards' columns, and is read by
those names: a video-level store imported by an earlier webly, whose groups were named ``rgb``
and ``audio``, opens as before and keeps those names (members without ``groups`` still take
them; re-import it to get ``mean_rgb``/``mean_audio``).

The 2017 release names the fields ``video_id``, ``mean_inc3`` and ``inc3``; ``names="2017"``
reads those into the same groups. Files are imported in parallel, one shard per file, and the
shards are added in file order, so the result does not depend on the number of workers.
"""

from __future__ import annotations

import glob
import os
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from webly.data.store import (
    Batch,
    DatasetWriter,
    Dtype,
    FeatureSpec,
    Layout,
    Level,
    RaggedFrames,
    ShardInfo,
    ShardWriter,
    dequantize_uint8,
)
from webly.data.tfrecord import (
    FeatureValue,
    FrameValue,
    ReadStats,
    iter_records,
    parse_example,
    parse_sequence_example,
)
from webly.errors import DataError, WeblyWarning

Names = Literal["2018", "2017"]

DIMS = {"rgb": 1024, "audio": 128}
"""Feature dimension of each modality; also the names of the frame-level groups."""

FRAME_GROUPS: tuple[str, ...] = tuple(DIMS)
"""The frame-level groups of a frame-level import: ``rgb``, ``audio``."""

VIDEO_GROUPS: tuple[str, ...] = tuple(f"mean_{name}" for name in DIMS)
"""The video-level groups of an import of either level: ``mean_rgb``, ``mean_audio``."""

FIELDS: dict[str, dict[str, str]] = {
    "2018": {"id": "id", "rgb": "rgb", "audio": "audio"},
    "2017": {"id": "video_id", "rgb": "inc3", "audio": "audio"},
}
"""Field names in the files of each release, by webly's name for them; video-level files
prefix the feature names with ``mean_``."""

_BATCH_ROWS = 1024  # rows handed to the shard writer at a time, or fewer once their frames
# fill its buffer (then it writes them at once, without first joining several batches)
_FRAME_SLACK = 1024  # frames a batch's buffers hold beyond its limit, for the video crossing it
_SUM_BLOCK = 257  # frames whose uint8 codes are summed in uint16 (255 * 257 < 2**16)

_spare_codes: list[dict[str, np.ndarray]] = []
"""Frame buffers of this process whose rows the shard writer has written, for the next file's
import to refill (`_FrameRows`): new memory costs page faults and zeroing, about as much as
copying the frames in. Emptied when an import in this process ends."""


@dataclass(frozen=True)
class ImportSummary:
    """What `import_yt8m` did: rows written, files read and corrupt records skipped."""

    out: Path
    level: Level
    files: int
    rows: int
    corrupt_records: int
    bytes_read: int
    seconds: float

    def __str__(self) -> str:
        skipped = (
            f"; skipped {self.corrupt_records:,} corrupt records" if self.corrupt_records else ""
        )
        return (
            f"imported {self.rows:,} {self.level}-level rows from {self.files} files "
            f"({self.bytes_read / 1e6:,.1f} MB) in {self.seconds:.1f} s into {self.out}{skipped}"
        )


@dataclass(frozen=True)
class FileTask:
    """One input file for a worker: where to read, where to write and how to convert."""

    source: Path
    shard: Path
    layout: Layout
    level: Level
    names: Names
    skip_corrupt: bool


@dataclass(frozen=True)
class FileResult:
    shard: ShardInfo
    corrupt_records: int


def import_yt8m(
    pattern: str,
    out: Path,
    level: Level,
    *,
    names: Names = "2018",
    skip_corrupt: bool = False,
    workers: int | None = None,
    n_classes: int = 3862,
    video_dtype: Dtype = "float32",
    overwrite: bool = False,
    run_files: Callable[[list[FileTask]], Iterable[FileResult]] | None = None,
) -> ImportSummary:
    """Import the YouTube-8M TFRecord files matching the glob ``pattern`` into a dataset at ``out``.

    ``level`` says whether the files are video-level (Example) or frame-level (SequenceExample).
    ``video_dtype`` is the stored dtype of the video-level groups (``uint8`` quantises them as
    YouTube-8M does, over [-2, 2]). ``workers`` processes import files in parallel (default: one
    per CPU, at most one per file). The import is atomic: on any error nothing is left at
    ``out`` (an existing dataset there is replaced only with ``overwrite``, and only on success);
    input files are only read. Raises `DataError` naming the file, record offset, video id and
    field of a bad record (``skip_corrupt`` skips records with bad checksums instead).
    ``run_files`` runs the file tasks elsewhere and yields their results in order (e.g.
    `webly.executor.ray_import.import_files_on_ray`: one Ray task a file); ``workers`` local
    processes when None.
    """
    started = time.perf_counter()
    if level not in ("video", "frame"):
        raise DataError(f"level {level!r} is unknown; use 'video' or 'frame' (--level)")
    if names not in FIELDS:
        raise DataError(f"names {names!r} is unknown; use '2018' or '2017' (--names)")
    files = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern)) if Path(p).is_file())
    if not files:
        raise DataError(
            f"no files match {pattern!r}; check the path and the glob (e.g. 'd/*.tfrecord')"
        )
    workers = workers if workers is not None else min(os.cpu_count() or 1, len(files))
    if workers < 1:
        raise DataError(f"workers is {workers}; it must be >= 1 (--workers)")
    layout = yt8m_layout(level, n_classes, video_dtype)
    source = {"importer": "yt8m", "input": pattern, "level": level, "names": names}
    rows = corrupt = 0
    with DatasetWriter(out, layout, overwrite=overwrite, source=source, inputs=files) as writer:
        tasks = [
            FileTask(path, writer.shard_path(i), layout, level, names, skip_corrupt)
            for i, path in enumerate(files)
        ]
        for result in run_files(tasks) if run_files is not None else _run(tasks, workers):
            writer.add_shard(result.shard)
            rows += result.shard.rows
            corrupt += result.corrupt_records
        if rows == 0:
            skipped = f" ({corrupt} corrupt records skipped)" if corrupt else ""
            raise DataError(
                f"the {len(files)} files matching {pattern!r} hold no records{skipped}; "
                "check that they are YouTube-8M TFRecord files"
            )
        writer.source.update(files=len(files), corrupt_records=corrupt)
        writer.commit()
    if corrupt:
        warnings.warn(
            f"{pattern}: skipped {corrupt} corrupt records (--skip-corrupt); the rest imported",
            WeblyWarning,
            stacklevel=2,
        )
    return ImportSummary(
        out=Path(out),
        level=level,
        files=len(files),
        rows=rows,
        corrupt_records=corrupt,
        bytes_read=sum(path.stat().st_size for path in files),
        seconds=time.perf_counter() - started,
    )


def yt8m_layout(level: Level, n_classes: int = 3862, video_dtype: Dtype = "float32") -> Layout:
    """The store layout of an import: video-level ``mean_rgb``/``mean_audio``, after the
    frame-level ``rgb``/``audio`` (uint8) of a frame-level import."""
    frames = [FeatureSpec(name, dim, "uint8", "frame") for name, dim in DIMS.items()]
    means = [FeatureSpec(f"mean_{name}", dim, video_dtype, "video") for name, dim in DIMS.items()]
    return Layout(features=tuple((frames if level == "frame" else []) + means), n_classes=n_classes)


def _run(tasks: list[FileTask], workers: int) -> Iterator[FileResult]:
    """Results of ``tasks`` in order; in this process for one worker, else in a process pool."""
    if min(workers, len(tasks)) == 1:
        try:
            yield from map(import_file, tasks)
        finally:
            _spare_codes.clear()
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)))
    try:
        yield from pool.map(import_file, tasks)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def import_file(task: FileTask) -> FileResult:
    """Stream one TFRecord file into its own shard (runs in a worker process): its videos go to
    the shard writer in `Batch` es of at most `_BATCH_ROWS` rows and about the writer's
    ``batch_bytes`` of frames."""
    stats = ReadStats()
    shard = ShardWriter(task.shard, task.layout, source=str(task.source))
    fields, n_classes = FIELDS[task.names], task.layout.n_classes

    def gather(codes: dict[str, np.ndarray]) -> _Rows:
        if task.level == "video":
            return _VideoRows(fields)
        return _FrameRows(fields, shard.batch_bytes, codes)

    rows = gather(_spare_codes.pop() if _spare_codes else {})
    try:
        for offset, payload in iter_records(task.source, task.skip_corrupt, stats):
            rows.add(payload, f"{task.source}: record at byte {offset}")
            if rows.full():
                shard.write_batch(rows.batch(n_classes))
                # the next rows refill the buffers if the writer has written these (holds none)
                rows = gather({} if shard.pending_rows else rows.codes)
        if rows.ids:
            shard.write_batch(rows.batch(n_classes))
        info = shard.close(sync=False)  # DatasetWriter.add_shard syncs it in the background
    except BaseException:
        shard.abort()
        raise
    _spare_codes.append(rows.codes)
    return FileResult(info, stats.corrupt)


class _Rows(ABC):
    """The videos of one `Batch`, added one record at a time; a subclass per level decodes the
    record's features (`add`) and hands them over (`batch`)."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        self.wheres: list[str] = []  # file, record offset and video id of each row
        self.ids: list[str] = []
        self.labels: list[np.ndarray] = []  # (n_labels,) int64 per row
        self.codes: dict[str, np.ndarray] = {}  # frame buffers by group (frame level)

    @abstractmethod
    def add(self, payload: bytes, where: str) -> None:
        """Decode the record ``payload`` (found at ``where``) into a new row."""

    @abstractmethod
    def batch(self, n_classes: int) -> Batch:
        """The rows as one `Batch`, their labels checked to lie in ``0..n_classes - 1``."""

    def full(self) -> bool:
        return len(self.ids) >= _BATCH_ROWS

    def _add_id_and_labels(self, features: dict[str, FeatureValue], where: str) -> str:
        """Append the row's id and labels; returns ``where`` extended with the video id."""
        vid, where = _id_and_where(features, self.fields["id"], where)
        self.labels.append(_array_feature(features, "labels", np.int64, where))
        self.ids.append(vid)
        self.wheres.append(where)
        return where

    def _check_labels(self, n_classes: int) -> None:
        """Raise `DataError` naming the first row with a class outside ``0..n_classes - 1``."""
        lengths = np.array([row.size for row in self.labels])
        labels = np.concatenate(self.labels)
        bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
        if bad.size:
            where = self.wheres[int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))]
            raise DataError(
                f"{where}: 'labels' use class {int(labels[bad[0]])} but the dataset declares "
                f"{n_classes} classes (0..{n_classes - 1}); check --num-classes"
            )


class _VideoRows(_Rows):
    """Video-level Examples: features ``mean_rgb`` (1024,) and ``mean_audio`` (128,) float32."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(fields)
        self.features: dict[str, list[np.ndarray]] = {f"mean_{name}": [] for name in DIMS}

    def add(self, payload: bytes, where: str) -> None:
        try:
            example = parse_example(payload)
        except DataError as err:
            raise DataError(f"{where}: {err}") from None
        where = self._add_id_and_labels(example, where)
        for name, dim in DIMS.items():
            key = f"mean_{self.fields[name]}"
            value = _array_feature(example, key, np.float32, where)
            if value.size != dim:
                raise DataError(
                    f"{where}: {key!r} has {value.size} values but YouTube-8M {key} has {dim}; "
                    "check that these are video-level files (--level) of the right release "
                    "(--names)"
                )
            self.features[f"mean_{name}"].append(value)

    def batch(self, n_classes: int) -> Batch:
        self._check_labels(n_classes)
        features = {name: np.stack(values) for name, values in self.features.items()}
        for name in DIMS:
            bad = np.flatnonzero(~np.isfinite(features[f"mean_{name}"]).all(axis=1))
            if bad.size:
                raise DataError(
                    f"{self.wheres[bad[0]]}: 'mean_{self.fields[name]}' holds NaN or inf; the "
                    "file is damaged, re-download it"
                )
        return Batch(ids=self.ids, labels=self.labels, features=features)


class _FrameRows(_Rows):
    """Frame-level SequenceExamples, gathered with no per-frame Python work.

    The parser gives each video's ``rgb`` ``(T, 1024)`` and ``audio`` ``(T, 128)`` uint8 codes
    as strided views into its record; `add` copies them at once to the end of one ``(capacity,
    dim)`` uint8 buffer per group and sums their codes into a ``(_BATCH_ROWS, dim)`` uint32
    table. `batch` hands the buffers to the store as `RaggedFrames` (values + offsets), which
    become the Arrow list columns without another copy, and the video-level ``mean_rgb`` /
    ``mean_audio`` of all rows are dequantised from the sums in one step.

    ``codes`` are buffers to refill, those of an earlier batch that the store has written (it
    may hold a batch's buffers until its shard's next flush); new ones are made for a group
    missing there or too small.
    """

    def __init__(
        self, fields: dict[str, str], max_frame_bytes: int, codes: dict[str, np.ndarray]
    ) -> None:
        super().__init__(fields)
        # the batch ends with the video that brings its frames to max_frame_bytes
        self.max_frames = -(-max_frame_bytes // sum(DIMS.values()))
        self.offsets = [0]  # row i's frames are codes[offsets[i]:offsets[i + 1]]
        # untouched pages of an np.empty buffer cost nothing, so the slack is free
        capacity = self.max_frames + _FRAME_SLACK
        self.codes = {
            name: codes[name]
            if name in codes and len(codes[name]) >= capacity
            else np.empty((capacity, dim), np.uint8)
            for name, dim in DIMS.items()
        }
        self.sums = {name: np.empty((_BATCH_ROWS, dim), np.uint32) for name, dim in DIMS.items()}

    def add(self, payload: bytes, where: str) -> None:
        try:
            context, lists = parse_sequence_example(payload)
        except DataError as err:
            raise DataError(f"{where}: {err}") from None
        where = self._add_id_and_labels(context, where)
        frames = _frame_codes(lists, self.fields, where)
        start = self.offsets[-1]
        end = start + len(frames["rgb"])
        for name, codes in frames.items():
            if end > len(self.codes[name]):  # a video longer than the slack: grow (one copy)
                grown = np.empty((2 * end, codes.shape[1]), np.uint8)
                grown[:start] = self.codes[name][:start]
                self.codes[name] = grown
            into = self.codes[name][start:end]
            into[...] = codes
            _column_sums(into, self.sums[name][len(self.ids) - 1])
        self.offsets.append(end)

    def full(self) -> bool:
        return super().full() or self.offsets[-1] >= self.max_frames

    def batch(self, n_classes: int) -> Batch:
        self._check_labels(n_classes)
        offsets = np.array(self.offsets, np.int64)
        n_frames = np.diff(offsets)[:, None]  # (B, 1)
        # Dequantisation is affine, so the mean of the dequantised frames is the dequantised
        # mean code.
        means = {
            f"mean_{name}": dequantize_uint8(sums[: len(self.ids)] / n_frames)
            for name, sums in self.sums.items()
        }
        frames = {
            name: RaggedFrames(codes[: offsets[-1]], offsets) for name, codes in self.codes.items()
        }
        return Batch(ids=self.ids, labels=self.labels, features=means, frames=frames)


def _frame_codes(
    lists: dict[str, FrameValue], fields: dict[str, str], where: str
) -> dict[str, np.ndarray]:
    """A SequenceExample's frames, checked: ``rgb`` ``(T, 1024)`` and ``audio`` ``(T, 128)``
    uint8 codes with the same ``T >= 1``."""
    frames = {}
    for name, dim in DIMS.items():
        key = fields[name]
        if key not in lists:
            raise DataError(
                f"{where}: no feature list {key!r} (it has: {', '.join(lists) or 'none'}); "
                "check that these are frame-level files (--level) of the right release (--names)"
            )
        value = lists[key]
        if isinstance(value, list) and not value:  # no frames
            value = np.zeros((0, dim), np.uint8)
        if not isinstance(value, np.ndarray) or value.shape[1] != dim:
            got = f"{value.shape[1]}-byte" if isinstance(value, np.ndarray) else "other"
            raise DataError(
                f"{where}: frames of {key!r} are {got} features, YouTube-8M's are {dim} bytes "
                "each; check --names and that the files are YouTube-8M frame-level files"
            )
        frames[name] = value
    n_rgb, n_audio = (len(frames[name]) for name in DIMS)
    if n_rgb != n_audio or n_rgb == 0:
        raise DataError(
            f"{where}: {n_rgb} {fields['rgb']!r} frames and {n_audio} 'audio' frames; a video "
            "needs the same number (>= 1) of each; drop it or re-download the file"
        )
    return frames


def _column_sums(codes: np.ndarray, out: np.ndarray) -> None:
    """Sum ``(T, dim)`` uint8 ``codes`` over their frames into ``out``, ``(dim,)`` uint32.

    Summed in uint16 over blocks of `_SUM_BLOCK` frames (255 * 257 < 2**16 cannot overflow),
    which moves half the bytes of a uint32 sum and takes half the time."""
    out[:] = 0
    for start in range(0, len(codes), _SUM_BLOCK):
        out += np.add.reduce(codes[start : start + _SUM_BLOCK], axis=0, dtype=np.uint16)


def _id_and_where(features: dict[str, FeatureValue], key: str, where: str) -> tuple[str, str]:
    """The video id, and ``where`` extended with it for later messages."""
    value = _bytes_feature(features, key, where)
    if len(value) != 1:
        raise DataError(f"{where}: {key!r} holds {len(value)} values, expected one video id")
    try:
        vid = value[0].decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{where}: {key!r} is not UTF-8 text; the file is damaged") from None
    return vid, f"{where} (id {vid!r})"


def _lookup(features: dict[str, FeatureValue], key: str, where: str) -> FeatureValue:
    if key not in features:
        raise DataError(
            f"{where}: no feature {key!r} (it has: {', '.join(features) or 'none'}); "
            "pick the release with --names 2018|2017 and the file type with --level video|frame"
        )
    return features[key]


def _bytes_feature(features: dict[str, FeatureValue], key: str, where: str) -> list[bytes]:
    """``features[key]`` as a bytes_list; a one-line error if it is a numeric list."""
    value = _lookup(features, key, where)
    if not isinstance(value, list):
        kind = "float_list" if value.dtype == np.float32 else "int64_list"
        raise DataError(f"{where}: {key!r} is a {kind}, YouTube-8M's is a bytes_list")
    return value


def _array_feature(
    features: dict[str, FeatureValue], key: str, dtype: type[np.generic], where: str
) -> np.ndarray:
    """``features[key]`` as a float_list (float32) or int64_list (int64) array."""
    value = _lookup(features, key, where)
    if isinstance(value, list) and not value:  # a Feature with no kind set: an empty list
        return np.zeros(0, dtype)
    if isinstance(value, list) or value.dtype != dtype:
        found = "bytes_list" if isinstance(value, list) else f"{value.dtype} list"
        raise DataError(
            f"{where}: {key!r} is a {found}, YouTube-8M's is a {np.dtype(dtype)} list; "
            "check --names and --level"
        )
    return value
