"""Rows to predict, in batches: from a webly data store or straight from YouTube-8M TFRecords.

Either source yields `RowBatch` es holding, for every feature group an exported model reads,
the values in the dtype the model takes (`webly.deploy.export`): uint8 codes as stored, or
float32/float16 values. Each group is read at its own level (`FeatureSpec.level`), so one model
may read frame-level and video-level groups together (e.g. ``rgb`` frames and ``mean_rgb``): a
video-level group is ``(B, dim)``, a frame-level one ``(B, T, dim)`` zero-padded, with
``lengths`` ``(B,)`` as soon as one group is frame-level. Nothing is held beyond one batch.

TFRecord files are read without TensorFlow (`webly.data.tfrecord`), video-level
(``tf.train.Example``: ``id``, ``mean_rgb``, ``mean_audio``) or frame-level
(``tf.train.SequenceExample``: context ``id``, frame lists ``rgb`` and ``audio``), each record as
`webly.data.yt8m` imports it: the video-level group ``mean_rgb`` is a video-level file's
``mean_rgb``, or the mean of a frame-level file's dequantized ``rgb`` frames; the frame-level
groups ``rgb``/``audio`` are a frame-level file's uint8 codes. So a model reading ``rgb`` frames
and ``mean_rgb`` together reads frame-level files, ``mean_rgb`` the mean of the same frames.
(A model trained on a video-level store imported before the video-level groups were named
``mean_rgb``/``mean_audio`` reads its ``rgb``/``audio`` from the same fields.)
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from webly.data.store import MANIFEST, Dataset, FeatureSpec, dequantize_uint8
from webly.data.tfrecord import FeatureValue, FrameValue, iter_records, parse_sequence_example
from webly.data.yt8m import FIELDS, Names
from webly.errors import DataError


@dataclass(frozen=True)
class RowBatch:
    """Rows to predict: ``ids`` (B,), ``groups[name]`` ``(B, dim)`` for a video-level group or
    ``(B, T, dim)`` for a frame-level one (frames zero-padded to the batch's longest row), and
    ``lengths`` ``(B,)`` int64, the real frames of each row, when some group is frame-level
    (None when every group is video-level)."""

    ids: list[str]
    groups: dict[str, np.ndarray]
    lengths: np.ndarray | None


def row_batches(
    source: str | Path,
    features: Sequence[FeatureSpec],
    batch_size: int,
    names: Names = "2018",
) -> Iterator[RowBatch]:
    """Batches of ``source``: a data store folder, or a glob of YouTube-8M TFRecord files
    (``names`` picks the 2018 or 2017 field names). ``features`` are the model's groups with
    the dtypes and levels it reads them at."""
    if batch_size < 1:
        raise DataError(f"batch size is {batch_size}; use 1 or more (--batch-size)")
    path = Path(source)
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise DataError(
                f"{path} is a folder without {MANIFEST}, not a data store; for TFRecord files "
                "pass a glob such as 'DIR/*.tfrecord'"
            )
        return store_batches(Dataset.open(path), features, batch_size)
    return tfrecord_batches(str(source), features, batch_size, names)


def model_level(features: Sequence[FeatureSpec]) -> str:
    """``frame`` when some group of ``features`` is frame-level (the batch has ``lengths``),
    else ``video``."""
    return "frame" if any(spec.level == "frame" for spec in features) else "video"


# --------------------------------------------------------------------------- data store


def store_batches(
    store: Dataset, features: Sequence[FeatureSpec], batch_size: int
) -> Iterator[RowBatch]:
    """The rows of ``store`` in order, checked against the model's ``features`` first; each
    group read at its own level."""
    stored = {spec.name: _store_spec(store, spec) for spec in features}
    ids = store.ids
    for start in range(0, len(store), batch_size):
        rows = np.arange(start, min(start + batch_size, len(store)))
        groups, lengths = {}, None
        for spec in features:
            have = stored[spec.name]
            codes = spec.dtype == "uint8"  # the model takes the stored codes themselves
            if spec.level == "frame":  # every frame group of a row holds the same frames
                values, lengths = store.frames(rows, (spec.name,), decode=not codes)
            else:
                values = store.features(rows, (spec.name,))
                # Reads decode; encoding the decoded codes gives them back exactly.
                values = have.encode(values) if codes else values
            with np.errstate(over="ignore"):  # said by _check_finite
                groups[spec.name] = values if codes else values.astype(spec.dtype, copy=False)
            _check_finite(store, spec, groups[spec.name], ids[rows])
        yield RowBatch([str(i) for i in ids[rows]], groups, lengths)


def _check_finite(store: Dataset, spec: FeatureSpec, values: np.ndarray, ids: np.ndarray) -> None:
    """Refuse a batch whose float values hold NaN or inf (a store written without the import's
    checks, or values beyond the model's float16), naming the first such row."""
    if values.dtype.kind != "f" or np.isfinite(values).all():
        return
    bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
    row = ids[int(np.flatnonzero(bad)[0])]
    raise DataError(
        f"{store.path}: row {str(row)!r}: feature group {spec.name!r} holds NaN, inf or values "
        f"beyond {spec.dtype}'s range; clean the data and import it again"
    )


def _store_spec(store: Dataset, spec: FeatureSpec) -> FeatureSpec:
    """The store's group ``spec.name``, refused unless the model can read it (at the level
    ``spec`` says)."""
    known = {f.name: f for f in store.layout.features}
    have = known.get(spec.name)
    where = f"{store.path}: feature group {spec.name!r}"
    if have is None:
        raise DataError(
            f"{store.path}: no feature group {spec.name!r} (it has: {', '.join(known)}); pass "
            "data with the groups the model was trained on"
        )
    if have.level != spec.level:
        raise DataError(
            f"{where} is {have.level}-level but the model reads it {spec.level}-level; pass a "
            "store of the model's level"
        )
    if have.dim != spec.dim:
        unit = "frame" if spec.level == "frame" else "row"
        raise DataError(
            f"{where} has {have.dim} values per {unit}, the model expects {spec.dim}; pass data "
            "with the model's features"
        )
    same_codes = (have.dtype, have.quant_min, have.quant_max) == (
        "uint8", spec.quant_min, spec.quant_max,
    )  # fmt: skip
    if spec.dtype == "uint8" and not same_codes:
        raise DataError(
            f"{where} is stored as {have.dtype} [{have.quant_min}, {have.quant_max}], the model "
            f"reads uint8 codes over [{spec.quant_min}, {spec.quant_max}]; export the model "
            "against this store (webly export --data)"
        )
    return have


# --------------------------------------------------------------------------- TFRecord files


def tfrecord_batches(
    pattern: str,
    features: Sequence[FeatureSpec],
    batch_size: int,
    names: Names = "2018",
) -> Iterator[RowBatch]:
    """The records of the files matching ``pattern`` (sorted), in file order."""
    files = sorted(p for p in glob.glob(os.path.expanduser(pattern)) if Path(p).is_file())
    if not files:
        raise DataError(
            f"no files match {pattern!r} and it is not a data store; pass a store folder or a "
            "TFRecord glob such as 'DIR/*.tfrecord'"
        )
    if names not in FIELDS:
        raise DataError(f"names {names!r} is unknown; use '2018' or '2017' (--names)")
    return _record_batches(files, features, batch_size, names)


def _record_batches(
    files: list[str], features: Sequence[FeatureSpec], batch_size: int, names: Names
) -> Iterator[RowBatch]:
    ids: list[str] = []
    rows: list[dict[str, np.ndarray]] = []
    for path in files:
        for offset, payload in iter_records(path):
            where = f"{path}: record at byte {offset}"
            video_id, row = parse_record(payload, features, names, where)
            ids.append(video_id)
            rows.append(row)
            if len(rows) == batch_size:
                yield stack_rows(ids, rows, features)
                ids, rows = [], []
    if rows:
        yield stack_rows(ids, rows, features)


def parse_record(
    payload: bytes, features: Sequence[FeatureSpec], names: Names, where: str
) -> tuple[str, dict[str, np.ndarray]]:
    """One serialized YouTube-8M ``Example`` or ``SequenceExample``: its video id and the
    model's groups (``(dim,)`` for a video-level group, ``(n_frames, dim)`` for a frame-level
    one, the same ``n_frames`` in each) in the dtypes the model reads. ``where`` (e.g. file and
    offset) starts every error message."""
    try:
        context, lists = parse_sequence_example(payload)
    except DataError as err:
        raise DataError(f"{where}: {err}") from None
    video_id = _record_id(context, FIELDS[names]["id"], where)
    where += f" (id {video_id!r})"
    return video_id, _record_row(context, lists, features, names, where)


def _record_id(context: dict[str, FeatureValue], key: str, where: str) -> str:
    value = context.get(key)
    if not isinstance(value, list) or len(value) != 1:
        raise DataError(
            f"{where}: no single {key!r} video id (features: {', '.join(context) or 'none'}); "
            "pass YouTube-8M TFRecord files (--names 2018|2017)"
        )
    return bytes(value[0]).decode("utf-8", errors="replace")


def _record_row(
    context: dict[str, FeatureValue],
    lists: dict[str, FrameValue],
    features: Sequence[FeatureSpec],
    names: Names,
    where: str,
) -> dict[str, np.ndarray]:
    """The model's groups of one record, each at its own level, in the dtypes the model reads:
    a frame-level group the record's frames, a video-level one its ``mean_`` feature (a
    video-level record) or the mean of its frames (a frame-level record)."""
    fields = FIELDS[names]
    level = model_level(features)
    row: dict[str, np.ndarray] = {}
    for spec in features:
        base = spec.name.removeprefix("mean_") if spec.level == "video" else spec.name
        field = fields.get(base, base)
        if spec.level == "frame" or lists:
            frames = lists.get(field)
            if not isinstance(frames, np.ndarray) or frames.ndim != 2:
                kind = "frame-level" if lists else "video-level"
                raise DataError(
                    f"{where}: this {kind} record has no frame list {field!r} of byte frames "
                    f"(it has: {', '.join(lists) or 'none'}); the {level}-level model reads "
                    f"{', '.join(s.name for s in features)}"
                )
            _check_dim(spec, frames.shape[1], where)
            if spec.level == "frame":
                codes = FeatureSpec(spec.name, spec.dim, "uint8", "frame")
                row[spec.name] = frames if spec.dtype == "uint8" else codes.decode(frames)
                continue
            # as the importer computes a frame-level file's video-level means
            value = dequantize_uint8(frames.sum(axis=0, dtype=np.uint32) / max(len(frames), 1))
        else:
            key = f"mean_{field}"
            found = context.get(key)
            if not isinstance(found, np.ndarray) or found.dtype != np.float32:
                raise DataError(
                    f"{where}: no float feature {key!r} (it has: {', '.join(context) or 'none'}); "
                    f"the {level}-level model reads {', '.join(s.name for s in features)}"
                )
            _check_dim(spec, found.size, where)
            value = found
        with np.errstate(over="ignore", invalid="ignore"):  # said below
            encoded = spec.encode(value)
        if not (np.isfinite(value).all() and np.isfinite(encoded).all()):
            raise DataError(
                f"{where}: feature group {spec.name!r} holds NaN, inf or values beyond "
                f"{spec.dtype}'s range; clean or drop that record"
            )
        row[spec.name] = encoded
    counts = {len(row[spec.name]) for spec in features if spec.level == "frame"}
    if len(counts) > 1 or 0 in counts:
        raise DataError(
            f"{where}: frame lists of {sorted(counts)} frames; a video needs the same number "
            "(>= 1) in every group, drop it or re-download the file"
        )
    return row


def _check_dim(spec: FeatureSpec, dim: int, where: str) -> None:
    if dim != spec.dim:
        unit = "frame" if spec.level == "frame" else "row"
        raise DataError(
            f"{where}: feature group {spec.name!r} has {dim} values per {unit}, the model "
            f"expects {spec.dim}; pass files with the model's features"
        )


def stack_rows(
    ids: list[str], rows: list[dict[str, np.ndarray]], features: Sequence[FeatureSpec]
) -> RowBatch:
    """Rows (each video-level group ``(dim,)``, each frame-level one ``(n_frames, dim)``, the
    same ``n_frames`` across a row's frame groups) -> one batch; frames zero-padded to the
    longest row, ``lengths`` the first frame group's."""
    frame_groups = [spec.name for spec in features if spec.level == "frame"]
    lengths = None
    if frame_groups:
        lengths = np.array([len(row[frame_groups[0]]) for row in rows], dtype=np.int64)
    groups = {}
    for spec in features:
        if spec.level != "frame":
            groups[spec.name] = np.stack([row[spec.name] for row in rows])
            continue
        assert lengths is not None
        padded = np.zeros((len(rows), int(lengths.max()), spec.dim), dtype=spec.dtype)
        for b, row in enumerate(rows):
            padded[b, : len(row[spec.name])] = row[spec.name]
        groups[spec.name] = padded
    return RowBatch(ids, groups, lengths)
