"""Import tables (Parquet, CSV/TSV) and NumPy ``.npz`` archives into the webly store.

One row of the input is one sample. Its features become one video-level feature group; its labels
are class ids or class names, one or several a row. Everything streams: Parquet is read in row
batches (``ParquetFile.iter_batches``), CSV in blocks (``pyarrow.csv.open_csv``) and ``.npz``
members chunk by chunk straight out of the zip archive, so memory stays bounded whatever the size
of the file. When the number of classes or the class vocabulary is not given, a first pass over
the label column (only) finds it.

All three formats are seen as a stream of Arrow record batches, so one code path validates and
converts them; bad input raises `webly.errors.DataError` naming the file, the row and the column.
"""

from __future__ import annotations

import fnmatch
import math
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from webly.core import Task
from webly.data.store import Batch, Dataset, DatasetWriter, Dtype, FeatureSpec, Layout
from webly.errors import DataError

LabelType = Literal["auto", "int", "name"]

_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".tsv", ".tsv.gz", ".tsv.bz2")
_CSV_BLOCK_BYTES = 16 << 20
_CSV_NULLS = [v for v in pacsv.ConvertOptions().null_values if v.lstrip("-").lower() != "nan"]
"""Cells read as empty: Arrow's defaults but ``nan``, which is read as NaN (and refused as NaN,
not as an empty cell)."""
_NPZ_DEFAULTS = ("ids", "groups", "texts")
MAX_SCANNED_CLASSES = 1_000_000
"""Most classes an import infers from the largest label id; more need an explicit ``n_classes``
(a stray huge id would otherwise make a store of 2^40 classes)."""


def import_table(
    path: str | Path,
    out: str | Path,
    *,
    features: str | Sequence[str] = "features",
    labels: str = "labels",
    id_column: str | None = None,
    group_column: str | None = None,
    text_column: str | None = None,
    group_name: str = "x",
    dtype: Dtype = "float32",
    quant_range: tuple[float, float] = (-2.0, 2.0),
    task: Task = Task.MULTILABEL,
    n_classes: int | None = None,
    classes: str | Path | Sequence[str] | None = None,
    label_type: LabelType = "auto",
    label_sep: str | None = None,
    batch_rows: int = 8192,
    overwrite: bool = False,
) -> Dataset:
    """Import a Parquet, CSV/TSV or ``.npz`` file into a new dataset folder ``out``.

    Parameters
    ----------
    path
        Input file, by suffix: ``.parquet``/``.pq``; ``.csv``/``.tsv`` (optionally ``.gz`` or
        ``.bz2``) with a header row; ``.npz`` (``np.savez`` or ``np.savez_compressed``) holding
        ``(N, D)`` features and ``(N,)`` int or str labels or ``(N, C)`` 0/1 multi-hot labels,
        string arrays saved with a fixed-width str dtype. Bare ``.npy`` files are not read:
        save features and labels together into one ``.npz``.
    out
        Dataset folder to create; nothing is left there if the import fails.
    features
        The feature column(s): one column holding a list/array of numbers per row (in CSV, a
        string of numbers separated by spaces or commas, optionally in brackets), or several
        numeric scalar columns given as a list of names, as one comma-separated string
        (``"f0,f1"``) or as one glob such as ``"f*"`` (matched in file order, skipping the
        label/id/group/text columns). For ``.npz``: the name of the ``(N, D)`` array.
    labels
        The label column (array, for ``.npz``). A row holds an int, a class name, a list of
        ints or names, or one string of several labels separated by ``label_sep``.
    id_column
        Column of row ids; default: the row number (from 0) as a string. For ``.npz`` an
        array named ``ids`` is used when present.
    group_column
        Column of group ids (e.g. the product of an image), kept for grouped folds. For
        ``.npz`` an array named ``groups`` is used when present.
    text_column
        Column of text metadata (title, description). For ``.npz`` an array named ``texts``
        is used when present.
    group_name
        Name of the feature group that holds the features.
    dtype
        Stored dtype of the features: ``float32``, ``float16`` or ``uint8`` (floats quantised
        over ``quant_range``; a uint8 input column is stored as is, as codes).
    quant_range
        ``(lo, hi)`` range of the uint8 quantisation.
    task
        ``multilabel`` (any number of labels a row) or ``multiclass`` (exactly one).
    n_classes
        Number of classes; default: the largest class id + 1 (id labels), the number of class
        names (name labels), or ``C`` for ``(N, C)`` multi-hot ``.npz`` labels.
    classes
        The class names in id order: a text file with one name a line, or a sequence of
        names. Name labels are looked up in it; default: the sorted set of names found.
    label_type
        ``int`` (labels are class ids), ``name`` (labels are class names), or ``auto``: ids
        for numeric columns and for text columns whose first label parses as an integer.
    label_sep
        Separator of several labels in one text cell (e.g. ``" "`` or ``"|"``); tokens are
        stripped of surrounding whitespace and empty tokens are dropped.
    batch_rows
        Rows read at a time from Parquet and ``.npz`` (CSV is read in 16 MiB blocks).
    overwrite
        Replace ``out`` if it exists.

    Returns
    -------
    Dataset
        The new dataset, opened.
    """
    path, out, task = Path(path), Path(out), Task.parse(task)
    table = _open_table(path, labels, batch_rows)
    label_col = _column(path, table, labels, "label")
    id_col = _optional_column(path, table, id_column, "id", "ids")
    group_col = _optional_column(path, table, group_column, "group", "groups")
    text_col = _optional_column(path, table, text_column, "text", "texts")
    others = [c for c in (label_col, id_col, group_col, text_col) if c is not None]
    feature_cols = _feature_columns(path, table.schema, features, others)
    names = read_class_names(classes) if classes is not None else None
    labeler = _Labeler.build(
        table, label_col, id_col, names, n_classes, label_type, label_sep, task
    )
    dim = _feature_dim(table, feature_cols, id_col)
    spec = FeatureSpec(
        group_name, dim, dtype, quant_min=float(quant_range[0]), quant_max=float(quant_range[1])
    )
    layout = Layout(
        (spec,),
        labeler.n_classes,
        task,
        class_names=labeler.class_names,
        has_group=group_col is not None,
        has_text=text_col is not None,
    )
    provenance = {"input": str(path), "importer": "table", "features": feature_cols}
    read = [path, *([classes] if isinstance(classes, str | Path) else [])]
    with DatasetWriter(out, layout, overwrite=overwrite, source=provenance, inputs=read) as writer:
        start = 0
        for record in table.read([*feature_cols, *others], others):
            if not record.num_rows:
                continue
            ids = _row_ids(table.path, record, id_col, start)
            batch = Batch(
                ids=ids,
                labels=labeler.labels(record, ids),
                features={group_name: _feature_matrix(table.path, record, feature_cols, dim, ids)},
                groups=_strings(table.path, record, group_col, ids, fill=None),
                texts=_strings(table.path, record, text_col, ids, fill=""),
            )
            writer.write_batch(batch, source=str(path))
            start += record.num_rows
        return writer.commit()


# --------------------------------------------------------------------------- opening files


@dataclass(frozen=True)
class _Table:
    """A file seen as Arrow: its (inferred) schema and a fresh pass over some of its columns.

    ``read(columns, textual)`` yields record batches of ``columns``; ``textual`` columns (ids,
    labels, groups, texts) are read as strings where the format has no types of its own (CSV).
    """

    path: Path
    schema: pa.Schema
    read: Callable[[Sequence[str], Sequence[str]], Iterator[pa.RecordBatch]]
    defaults: tuple[str, ...] = ()
    n_classes_hint: int | None = None


def _open_table(path: Path, labels: str, batch_rows: int) -> _Table:
    if not path.is_file():
        hint = "it is a folder" if path.is_dir() else "it does not exist"
        raise DataError(f"{path}: cannot read the input ({hint}); check the path")
    name = path.name.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return _parquet_table(path, batch_rows)
    if name.endswith(_CSV_SUFFIXES):
        return _csv_table(path)
    if name.endswith(".npz"):
        return _npz_table(path, labels, batch_rows)
    if name.endswith(".npy"):
        raise DataError(
            f"{path}: a .npy file holds one array; save features and labels together with "
            "np.savez(file, features=x, labels=y) and import the .npz"
        )
    raise DataError(
        f"{path}: unknown table format {path.suffix!r}; use .parquet, .csv, .tsv or .npz"
    )


def _unreadable(path: Path, err: Exception) -> DataError:
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    return DataError(f"{path}: unreadable ({first}); check that the file is complete and valid")


def _parquet_table(path: Path, batch_rows: int) -> _Table:
    try:
        schema = pq.ParquetFile(path).schema_arrow
    except (pa.ArrowException, OSError) as err:
        raise _unreadable(path, err) from None

    def read(columns: Sequence[str], textual: Sequence[str]) -> Iterator[pa.RecordBatch]:
        try:
            # Pre-buffering keeps every column chunk read so far until the file is closed, so
            # memory would grow with the file; a small read buffer streams instead.
            parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
            yield from parquet.iter_batches(batch_size=batch_rows, columns=list(columns))
        except (pa.ArrowException, OSError) as err:
            raise _unreadable(path, err) from None

    return _Table(path, schema, read)


def _csv_table(path: Path) -> _Table:
    parse = pacsv.ParseOptions(delimiter="\t" if ".tsv" in path.name.lower() else ",")
    blocks = pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES)
    try:
        schema = pacsv.open_csv(path, read_options=blocks, parse_options=parse).schema
    except (pa.ArrowException, OSError) as err:
        raise _unreadable(path, err) from None

    def read(columns: Sequence[str], textual: Sequence[str]) -> Iterator[pa.RecordBatch]:
        # Types are inferred from the first block only, so they are fixed here: text stays
        # text (ids keep leading zeros, label cells are parsed by webly) and numbers are
        # float64 (a column of ints in the first block may hold 0.5 further down).
        types = {c: pa.float64() for c in columns if _is_numeric(schema.field(c).type)}
        types.update(dict.fromkeys(textual, pa.string()))
        convert = pacsv.ConvertOptions(
            column_types=types, include_columns=list(columns), null_values=_CSV_NULLS
        )
        try:
            yield from pacsv.open_csv(
                path, read_options=blocks, parse_options=parse, convert_options=convert
            )
        except (pa.ArrowException, OSError) as err:
            raise _unreadable(path, err) from None

    return _Table(path, schema, read)


def _npz_table(path: Path, labels: str, batch_rows: int) -> _Table:
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {
                member[: -len(".npy")]: _npy_header(archive, member)
                for member in archive.namelist()
                if member.endswith(".npy")
            }
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise _unreadable(path, err) from None
    if not headers:
        raise DataError(f"{path}: holds no arrays; save them with np.savez(file, features=x, ...)")
    schema = pa.schema(
        [
            (name, _npz_arrow_type(shape, dtype, name == labels))
            for name, (shape, dtype) in headers.items()
        ]
    )
    label_shape = headers[labels][0] if labels in headers else ()
    hint = label_shape[1] if len(label_shape) == 2 else None

    def read(columns: Sequence[str], textual: Sequence[str]) -> Iterator[pa.RecordBatch]:
        lengths = {c: headers[c][0][0] if headers[c][0] else 0 for c in columns}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{c!r}: {n}" for c, n in lengths.items())
            raise DataError(f"{path}: arrays differ in length ({listed}); give each N rows")
        with zipfile.ZipFile(path) as archive:
            streams = [_npy_chunks(path, archive, c, batch_rows) for c in columns]
            start = 0
            for chunks in zip(*streams, strict=True):
                arrays = [
                    _npz_to_arrow(path, c, chunk, c == labels, start)
                    for c, chunk in zip(columns, chunks, strict=True)
                ]
                yield pa.RecordBatch.from_arrays(arrays, names=list(columns))
                start += len(chunks[0])

    return _Table(path, schema, read, _NPZ_DEFAULTS, hint)


def _npy_read_header(fh: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    return np.lib.format.read_array_header_2_0(fh)


def _npy_header(archive: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
    with archive.open(member) as fh:
        shape, _, dtype = _npy_read_header(fh)
    return shape, dtype


def _npz_arrow_type(shape: tuple[int, ...], dtype: np.dtype, is_labels: bool) -> pa.DataType:
    """The Arrow type an ``.npz`` array is read as (null: not readable, said when read)."""
    if dtype.hasobject or len(shape) not in (1, 2):
        return pa.null()
    if dtype.kind in "US":
        return pa.string() if len(shape) == 1 else pa.null()
    if len(shape) == 2:
        return pa.list_(pa.int32()) if is_labels else pa.list_(pa.from_numpy_dtype(dtype), shape[1])
    return pa.from_numpy_dtype(dtype)


def _npy_chunks(
    path: Path, archive: zipfile.ZipFile, name: str, batch_rows: int
) -> Iterator[np.ndarray]:
    """``(k, ...)`` row chunks of the member ``name.npy``, read without loading the whole."""
    with archive.open(name + ".npy") as fh:
        shape, fortran, dtype = _npy_read_header(fh)
        if dtype.hasobject:
            raise DataError(
                f"{path}: array {name!r} holds Python objects; save it with a fixed-width "
                f"dtype, e.g. np.asarray({name}, dtype=str)"
            )
        if len(shape) not in (1, 2):
            raise DataError(f"{path}: array {name!r} has shape {shape}; use (N,) or (N, D) arrays")
        if fortran and len(shape) > 1:
            raise DataError(
                f"{path}: array {name!r} is saved in Fortran order; save "
                f"np.ascontiguousarray({name}) instead"
            )
        row_bytes = dtype.itemsize * math.prod(shape[1:])
        for start in range(0, shape[0], batch_rows):
            rows = min(batch_rows, shape[0] - start)
            data = fh.read(rows * row_bytes)
            if len(data) != rows * row_bytes:
                raise DataError(f"{path}: array {name!r} is truncated; re-save the file")
            yield np.frombuffer(data, dtype=dtype).reshape(rows, *shape[1:])


def _npz_to_arrow(
    path: Path, name: str, chunk: np.ndarray, is_labels: bool, start: int
) -> pa.Array:
    if chunk.dtype.kind == "S":
        chunk = chunk.astype(str)
    if chunk.ndim == 1:
        return pa.array(chunk)
    if not is_labels:
        return pa.FixedSizeListArray.from_arrays(pa.array(chunk.reshape(-1)), chunk.shape[1])
    bad = (chunk != 0) & (chunk != 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"{path}: row {start + int(row)}: array {name!r} is a (N, C) multi-hot matrix but "
            f"holds {chunk[row, col]!r} at class {int(col)}; use 0/1 values or (N,) class ids"
        )
    rows, cols = np.nonzero(chunk)
    offsets = np.zeros(chunk.shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=chunk.shape[0]), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(cols.astype(np.int32)))


# --------------------------------------------------------------------------- columns


def _available(names: Sequence[str], shown: int = 20) -> str:
    """The column names for an error message, cut short for wide tables."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])}, ... ({len(names)} columns)"


def _column(path: Path, table: _Table, name: str, what: str) -> str:
    if name not in table.schema.names:
        raise DataError(
            f"{path}: no {what} column {name!r}; available: {_available(table.schema.names)}"
        )
    return name


def _optional_column(
    path: Path, table: _Table, name: str | None, what: str, default: str
) -> str | None:
    if name is not None:
        return _column(path, table, name, what)
    return default if default in table.defaults and default in table.schema.names else None


def _feature_columns(
    path: Path, schema: pa.Schema, features: str | Sequence[str], others: Sequence[str]
) -> list[str]:
    names = list(schema.names)
    if isinstance(features, str) and set(features) & set("*?["):
        found = [n for n in names if n not in others and fnmatch.fnmatchcase(n, features)]
        if not found:
            raise DataError(
                f"{path}: no feature column matches {features!r}; available: {_available(names)}"
            )
        wanted = found
    elif isinstance(features, str):
        wanted = [features] if features in names else [f.strip() for f in features.split(",")]
    else:
        wanted = list(features)
    if not wanted:
        raise DataError(f"{path}: no feature columns given; name a column or a glob like 'f*'")
    for name in wanted:
        if name not in names:
            raise DataError(f"{path}: no feature column {name!r}; available: {_available(names)}")
        if name in others:
            raise DataError(
                f"{path}: column {name!r} is named both as features and as label/id/group/text;"
                " name each column once"
            )
        if len(wanted) > 1 and not _is_numeric(schema.field(name).type):
            raise DataError(
                f"{path}: feature column {name!r} has type {schema.field(name).type}; several "
                "feature columns must each hold one number a row (or name one list column)"
            )
    return wanted


def _is_numeric(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_null(t)
    )


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _row_ids(path: Path, record: pa.RecordBatch, id_col: str | None, start: int) -> list[str]:
    """Row ids as strings: the id column, else the row numbers ``start, start + 1, ...``."""
    if id_col is None:
        return [str(i) for i in range(start, start + record.num_rows)]
    column = record.column(id_col)
    if column.null_count:
        row = start + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{path}: row {row}: id column {id_col!r} is empty; give every row an id")
    return [str(v) for v in pc.cast(column, pa.string()).to_pylist()]


def _strings(
    path: Path, record: pa.RecordBatch, name: str | None, ids: Sequence[str], fill: str | None
) -> list[str] | None:
    """A group/text column as strings; empty cells become ``fill`` (None: they are an error)."""
    if name is None:
        return None
    column = pc.cast(record.column(name), pa.string())
    if column.null_count:
        if fill is None:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(
                f"{path}: row {ids[row]!r}: column {name!r} is empty; fill it in or drop the row"
            )
        column = column.fill_null(fill)
    return [str(v) for v in column.to_pylist()]


# --------------------------------------------------------------------------- features


def _feature_dim(table: _Table, columns: Sequence[str], id_col: str | None) -> int:
    """Values a row: the number of scalar columns, else the length of the first row's list."""
    if len(columns) > 1:
        return len(columns)
    name = columns[0]
    kind = table.schema.field(name).type
    if _is_numeric(kind):
        return 1
    if pa.types.is_fixed_size_list(kind):
        return int(kind.list_size)
    if not (_is_list(kind) or _is_text(kind)):
        raise DataError(
            f"{table.path}: feature column {name!r} has type {kind}; use a numeric column, a "
            "list column or several numeric columns"
        )
    textual = [id_col] if id_col else []
    for record in table.read([name, *textual], textual):
        if record.num_rows:
            ids = _row_ids(table.path, record.slice(0, 1), id_col, 0)
            first = _as_lists(table.path, record.column(name).slice(0, 1), name, ids)
            length = pc.list_value_length(first)[0].as_py()
            return int(length) if length is not None else 0
    raise DataError(f"{table.path}: holds no rows; nothing was written (check the input file)")


def _as_lists(path: Path, column: pa.Array, name: str, ids: Sequence[str]) -> pa.Array:
    """A feature column as a list array; text cells like ``"[0.1, 2e-3 4]"`` are parsed."""
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(
            f"{path}: row {ids[row]!r}: feature column {name!r} is empty; fill it in or drop "
            "the row"
        )
    if not _is_text(column.type):
        return column
    trimmed = pc.utf8_trim(pc.cast(column, pa.string()), characters="[]() \t\r\n")
    empty = pc.equal(pc.utf8_length(trimmed), 0).to_numpy(zero_copy_only=False)
    if empty.any():
        raise DataError(
            f"{path}: row {ids[int(np.flatnonzero(empty)[0])]!r}: feature column {name!r} is "
            "empty; fill it in or drop the row"
        )
    lists = pc.split_pattern_regex(trimmed, r"[\s,;]+")
    tokens = lists.flatten()
    try:
        numbers = pc.cast(tokens, pa.float64())
    except pa.ArrowInvalid:
        bad = next(i for i, t in enumerate(tokens.to_pylist()) if not _parses(t, float))
        row = _row_of(pc.list_value_length(lists).to_numpy(), bad)
        raise DataError(
            f"{path}: row {ids[row]!r}: feature column {name!r} holds {tokens[bad].as_py()!r}, "
            "which is not a number; write vectors as numbers separated by spaces or commas"
        ) from None
    return pa.ListArray.from_arrays(lists.offsets, numbers)


def _parses(token: str, kind: Callable[[str], object]) -> bool:
    try:
        kind(token)
    except ValueError:
        return False
    return True


def _row_of(lengths: np.ndarray, flat_index: int) -> int:
    """The row that holds element ``flat_index`` of a list column with these row lengths."""
    return int(np.searchsorted(np.cumsum(lengths), flat_index, side="right"))


def _feature_matrix(
    path: Path, record: pa.RecordBatch, columns: Sequence[str], dim: int, ids: Sequence[str]
) -> np.ndarray:
    """``(n_rows, dim)`` features of one record batch (dtype as read; the store converts)."""
    first = record.column(columns[0])
    if len(columns) > 1 or _is_numeric(first.type):
        parts = []
        for name in columns:
            column = record.column(name)
            if column.null_count:
                row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
                raise DataError(
                    f"{path}: row {ids[row]!r}: feature column {name!r} is empty; fill it in "
                    "or drop the row"
                )
            parts.append(column.to_numpy(zero_copy_only=False))
        return np.column_stack(parts)
    lists = _as_lists(path, first, columns[0], ids)
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    ragged = np.flatnonzero(lengths != dim)
    if ragged.size:
        row = int(ragged[0])
        raise DataError(
            f"{path}: row {ids[row]!r}: feature column {columns[0]!r} has {int(lengths[row])} "
            f"values but the first row has {dim}; give every row the same dimension"
        )
    values = lists.flatten()
    if not _is_numeric(values.type):
        raise DataError(
            f"{path}: feature column {columns[0]!r} holds {values.type} values; use numbers"
        )
    if values.null_count:
        missing = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(
            f"{path}: row {ids[missing // dim]!r}: feature column {columns[0]!r} has an empty "
            "value; fill it in or drop the row"
        )
    return values.to_numpy(zero_copy_only=False).reshape(len(ids), dim)


# --------------------------------------------------------------------------- labels


def read_class_names(classes: str | Path | Sequence[str]) -> tuple[str, ...]:
    """Class names in id order, from a text file (one name a line) or a sequence of names.

    Parameters
    ----------
    classes
        Path of the file (blank lines and surrounding whitespace are ignored), or the names.

    Returns
    -------
    tuple of str
        The distinct class names; class ``i`` is ``names[i]``.
    """
    if isinstance(classes, str | Path):
        path = Path(classes)
        try:
            names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(
                f"{path}: cannot read the classes file ({err}); check --classes"
            ) from None
        where = str(path)
    else:
        names, where = tuple(str(c) for c in classes), "the class list"
    if not names:
        raise DataError(f"{where} holds no class names; give one name a line")
    if len(set(names)) != len(names):
        dupe = next(n for n, count in Counter(names).items() if count > 1)
        raise DataError(f"{where} lists class {dupe!r} twice; give each class once")
    return names


def _label_tokens(
    record: pa.RecordBatch, name: str, sep: str | None
) -> tuple[np.ndarray, pa.Array]:
    """``(lengths (n_rows,), tokens)``: the labels of each row, flattened, empty ones dropped."""
    column = record.column(name)
    if _is_list(column.type):
        lists = column
    elif _is_text(column.type) and sep:
        lists = pc.split_pattern(column, sep)
    else:
        offsets = pa.array(np.arange(len(column) + 1, dtype=np.int32))
        lists = pa.ListArray.from_arrays(offsets, column)
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
    tokens = lists.flatten()
    if _is_text(tokens.type):
        tokens = pc.utf8_trim_whitespace(tokens).fill_null("")
        keep = pc.not_equal(pc.utf8_length(tokens), 0)
    else:
        keep = pc.is_valid(tokens)
    mask = keep.to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(len(column)), lengths)
    return np.bincount(rows[mask], minlength=len(column)), tokens.filter(keep)


@dataclass(frozen=True)
class _Labeler:
    """Turns a label column into class ids: ``int`` tokens are ids, ``name`` tokens look up."""

    path: Path
    column: str
    mode: Literal["int", "name"]
    sep: str | None
    task: Task
    n_classes: int
    class_names: tuple[str, ...] | None

    @classmethod
    def build(
        cls,
        table: _Table,
        column: str,
        id_col: str | None,
        names: tuple[str, ...] | None,
        n_classes: int | None,
        label_type: LabelType,
        sep: str | None,
        task: Task,
    ) -> _Labeler:
        """Settle the label type and the classes, scanning the labels once if they are unknown."""
        path = table.path
        mode = _label_mode(table, column, sep) if label_type == "auto" else label_type
        if mode not in ("int", "name"):
            raise DataError(f"label type {label_type!r} is unknown; use auto, int or name")
        n_given = n_classes if n_classes is not None else table.n_classes_hint
        if names is None and mode == "name":
            names = tuple(sorted(_scan_names(table, column, id_col, sep)))
        elif names is None and n_given is None:
            n_given = _scan_max_id(table, column, id_col, sep) + 1
        if names is not None:
            if n_given is not None and n_given != len(names):
                raise DataError(
                    f"{path}: {len(names)} class names but n_classes is {n_given}; "
                    "drop --num-classes or give one name per class"
                )
            n_given = len(names)
        assert n_given is not None
        return cls(path, column, mode, sep, task, n_given, names)

    def labels(self, record: pa.RecordBatch, ids: Sequence[str]) -> list[np.ndarray]:
        """Class ids of each row of ``record`` (range checks are left to the store)."""
        lengths, tokens = _label_tokens(record, self.column, self.sep)
        if not self.task.multilabel and (lengths != 1).any():
            row = int(np.flatnonzero(lengths != 1)[0])
            raise DataError(
                f"{self.path}: row {ids[row]!r}: {int(lengths[row])} labels in column "
                f"{self.column!r} but the task is multiclass (exactly one a row); fix the row "
                "or use --task multilabel"
            )
        if self.mode == "int":
            values = _int_labels(self.path, self.column, lengths, tokens, ids)
        else:
            assert self.class_names is not None
            text = pc.cast(tokens, pa.string())
            found = pc.index_in(text, value_set=pa.array(self.class_names, pa.string()))
            if found.null_count:
                bad = int(np.flatnonzero(found.is_null().to_numpy(zero_copy_only=False))[0])
                raise DataError(
                    f"{self.path}: row {ids[_row_of(lengths, bad)]!r}: label "
                    f"{text[bad].as_py()!r} is not in the class list ({self.n_classes} "
                    "classes); add it to the classes file or fix the row"
                )
            values = found.to_numpy(zero_copy_only=False).astype(np.int64)
        return np.split(values, np.cumsum(lengths)[:-1])


def _int_labels(
    path: Path, column: str, lengths: np.ndarray, tokens: pa.Array, ids: Sequence[str]
) -> np.ndarray:
    """Label tokens (text, int or float) as int64 class ids; a non-integer names its row."""
    if _is_text(tokens.type):
        try:
            return pc.cast(tokens, pa.int64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            bad = next(i for i, t in enumerate(tokens.to_pylist()) if not _parses(t, int))
            raise DataError(
                f"{path}: row {ids[_row_of(lengths, bad)]!r}: label {tokens[bad].as_py()!r} in "
                f"column {column!r} is not an integer class id; fix the row, or pass "
                "--label-type name for class names"
            ) from None
    values = tokens.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f":
        fractional = np.flatnonzero(values != np.round(values))
        if fractional.size:
            bad = int(fractional[0])
            raise DataError(
                f"{path}: row {ids[_row_of(lengths, bad)]!r}: label {values[bad]!r} in column "
                f"{column!r} is not an integer class id; fix the row"
            )
    return values.astype(np.int64)


def _scan(
    table: _Table, column: str, id_col: str | None, sep: str | None
) -> Iterator[tuple[np.ndarray, pa.Array, list[str]]]:
    """First pass over the label (and id) column: ``(lengths, tokens, ids)`` per batch."""
    columns = [column] + ([id_col] if id_col else [])
    start = 0
    for record in table.read(columns, columns):
        ids = _row_ids(table.path, record, id_col, start)
        yield (*_label_tokens(record, column, sep), ids)
        start += record.num_rows
    if start == 0:
        raise DataError(f"{table.path}: holds no rows; nothing was written (check the file)")


def _no_labels(table: _Table, column: str) -> DataError:
    return DataError(
        f"{table.path}: label column {column!r} holds no labels; check --labels and "
        "--label-sep, or give --num-classes"
    )


def _scan_max_id(table: _Table, column: str, id_col: str | None, sep: str | None) -> int:
    """The largest class id in the label column (every token checked to be an integer); an id
    that would make more than `MAX_SCANNED_CLASSES` classes is refused, naming its row."""
    largest: int | None = None
    for lengths, tokens, ids in _scan(table, column, id_col, sep):
        values = _int_labels(table.path, column, lengths, tokens, ids)
        if values.size:
            top = int(values.max())
            if top >= MAX_SCANNED_CLASSES:
                row = ids[_row_of(lengths, int(np.argmax(values)))]
                raise DataError(
                    f"{table.path}: row {row!r}: label {top} in column {column!r} would make "
                    f"{top + 1:,} classes (more than {MAX_SCANNED_CLASSES:,}); fix the row, or "
                    "give --num-classes if the dataset really has that many"
                )
            largest = top if largest is None else max(largest, top)
    if largest is None:
        raise _no_labels(table, column)
    return largest


def _scan_names(table: _Table, column: str, id_col: str | None, sep: str | None) -> set[str]:
    """The set of class names in the label column."""
    found: set[str] = set()
    for _, tokens, _ in _scan(table, column, id_col, sep):
        found.update(pc.unique(pc.cast(tokens, pa.string())).to_pylist())
    if not found:
        raise _no_labels(table, column)
    return found


def _label_mode(table: _Table, column: str, sep: str | None) -> Literal["int", "name"]:
    """``auto`` label type: numeric columns hold ids; text holds ids if its first label does."""
    kind = table.schema.field(column).type
    value = kind.value_type if _is_list(kind) else kind
    if not (_is_text(value) or pa.types.is_null(value)):
        return "int"
    for record in table.read([column], [column]):
        _, tokens = _label_tokens(record, column, sep)
        if len(tokens):
            return "int" if _parses(str(tokens[0].as_py()), int) else "name"
    return "int"
