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
from collections.abc import Iterator, Sequence
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
    ShardInfo,
    ShardWriter,
    dequantize_uint8,
)
from webly.data.tfrecord import (
    FeatureValue,
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
class _FileTask:
    """One input file for a worker: where to read, where to write and how to convert."""

    source: Path
    shard: Path
    layout: Layout
    level: Level
    names: Names
    skip_corrupt: bool


@dataclass(frozen=True)
class _FileResult:
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
) -> ImportSummary:
    """Import the YouTube-8M TFRecord files matching the glob ``pattern`` into a dataset at ``out``.

    ``level`` says whether the files are video-level (Example) or frame-level (SequenceExample).
    ``video_dtype`` is the stored dtype of the video-level groups (``uint8`` quantises them as
    YouTube-8M does, over [-2, 2]). ``workers`` processes import files in parallel (default: one
    per CPU, at most one per file). The import is atomic: on any error nothing is left at
    ``out`` (an existing dataset there is replaced only with ``overwrite``, and only on success);
    input files are only read. Raises `DataError` naming the file, record offset, video id and
    field of a bad record (``skip_corrupt`` skips records with bad checksums instead).
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
            _FileTask(path, writer.shard_path(i), layout, level, names, skip_corrupt)
            for i, path in enumerate(files)
        ]
        for result in _run(tasks, workers):
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


def _run(tasks: list[_FileTask], workers: int) -> Iterator[_FileResult]:
    """Results of ``tasks`` in order; in this process for one worker, else in a process pool."""
    if min(workers, len(tasks)) == 1:
        yield from map(_import_file, tasks)
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)))
    try:
        yield from pool.map(_import_file, tasks)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _import_file(task: _FileTask) -> _FileResult:
    """Stream one TFRecord file into its own shard (runs in a worker process)."""
    stats = ReadStats()
    shard = ShardWriter(task.shard, task.layout, source=str(task.source))
    try:
        for batch in _batches(task, stats, shard.batch_bytes):
            shard.write_batch(batch)
        info = shard.close()
    except BaseException:
        shard.abort()
        raise
    return _FileResult(info, stats.corrupt)


def _batches(task: _FileTask, stats: ReadStats, max_frame_bytes: int) -> Iterator[Batch]:
    """The file's videos as `Batch` es of at most `_BATCH_ROWS` rows and about
    ``max_frame_bytes`` of frames."""
    fields = FIELDS[task.names]
    # file fields whose values are checked per batch, by group name (frame means are finite)
    checked = {f"mean_{n}": f"mean_{fields[n]}" for n in DIMS} if task.level == "video" else {}
    rows: list[_Row] = []
    frame_bytes = 0
    for offset, payload in iter_records(task.source, task.skip_corrupt, stats):
        where = f"{task.source}: record at byte {offset}"
        if task.level == "video":
            row = _video_row(payload, fields, where)
        else:
            row = _frame_row(payload, fields, where)
            frame_bytes += sum(f.nbytes for f in row.frames.values())
        rows.append(row)
        if len(rows) >= _BATCH_ROWS or frame_bytes >= max_frame_bytes:
            yield _batch(rows, task.layout.n_classes, checked)
            rows, frame_bytes = [], 0
    if rows:
        yield _batch(rows, task.layout.n_classes, checked)


@dataclass(frozen=True)
class _Row:
    """One decoded video; ``where`` names its file, offset and id for error messages."""

    where: str
    id: str
    labels: np.ndarray
    features: dict[str, np.ndarray]
    frames: dict[str, np.ndarray]


def _batch(rows: list[_Row], n_classes: int, checked: dict[str, str]) -> Batch:
    """Stack ``rows`` into a `Batch`, checking labels and the ``checked`` features at once."""
    lengths = np.array([row.labels.size for row in rows])
    labels = np.concatenate([row.labels for row in rows])
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        row = rows[int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))]
        raise DataError(
            f"{row.where}: 'labels' use class {int(labels[bad[0]])} but the dataset declares "
            f"{n_classes} classes (0..{n_classes - 1}); check --num-classes"
        )
    features = {name: np.stack([row.features[name] for row in rows]) for name in rows[0].features}
    for name, key in checked.items():
        bad = np.flatnonzero(~np.isfinite(features[name]).all(axis=1))
        if bad.size:
            raise DataError(
                f"{rows[bad[0]].where}: {key!r} holds NaN or inf; the file is damaged, "
                "re-download it"
            )
    frames: dict[str, Sequence[np.ndarray]] = {
        name: [row.frames[name] for row in rows] for name in rows[0].frames
    }
    return Batch(
        ids=[row.id for row in rows],
        labels=[row.labels for row in rows],
        features=features,
        frames=frames,
    )


def _video_row(payload: bytes, fields: dict[str, str], where: str) -> _Row:
    """One video-level Example -> features ``mean_rgb`` (1024,) and ``mean_audio`` (128,)
    float32."""
    try:
        example = parse_example(payload)
    except DataError as err:
        raise DataError(f"{where}: {err}") from None
    vid, where = _id_and_where(example, fields["id"], where)
    labels = _array_feature(example, "labels", np.int64, where)
    values = {}
    for name, dim in DIMS.items():
        key = f"mean_{fields[name]}"
        value = _array_feature(example, key, np.float32, where)
        if value.size != dim:
            raise DataError(
                f"{where}: {key!r} has {value.size} values but YouTube-8M {key} has {dim}; "
                "check that these are video-level files (--level) of the right release (--names)"
            )
        values[f"mean_{name}"] = value
    return _Row(where, vid, labels, values, {})


def _frame_row(payload: bytes, fields: dict[str, str], where: str) -> _Row:
    """One frame-level SequenceExample -> frames ``rgb`` (T, 1024) and ``audio`` (T, 128) uint8
    codes, and features ``mean_rgb`` / ``mean_audio``: the means of the dequantised frames."""
    try:
        context, lists = parse_sequence_example(payload)
    except DataError as err:
        raise DataError(f"{where}: {err}") from None
    vid, where = _id_and_where(context, fields["id"], where)
    labels = _array_feature(context, "labels", np.int64, where)
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
    # Dequantisation is affine, so the mean of the dequantised frames is the dequantised mean
    # code; an integer sum is several times faster than a float mean over (T, D) bytes.
    means = {
        f"mean_{name}": dequantize_uint8(f.sum(axis=0, dtype=np.uint32) / len(f))
        for name, f in frames.items()
    }
    return _Row(where, vid, labels, means, frames)


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
