"""Top-k predictions streamed to a file: Kaggle submission CSV, Parquet or JSON lines.

- ``csv``: YouTube-8M's submission format, ``VideoId,LabelConfidencePairs`` then one line a
  row, ``id,class score class score ...`` best first, scores with 6 decimals (as
  `webly.io.write_submission`, which reads back with `webly.io.read_submission`);
- ``parquet``: columns ``id`` (string), ``classes`` (list<int32>), ``scores`` (list<float32>),
  ``names`` (list<string>, the class names), one row group per batch;
- ``jsonl``: one object a line, ``{"id", "classes", "scores", "names"}``.

The file is written to a temporary file beside the target and renamed over it at the end, so
on error nothing partial is left.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from webly._fs import replaced_file
from webly.errors import ConfigError, DataError
from webly.io import HEADER

OutputFormat = Literal["csv", "parquet", "jsonl"]
FORMATS: tuple[str, ...] = get_args(OutputFormat)
WriteRows = Callable[[Sequence[str], np.ndarray, np.ndarray], None]
"""``write(ids (B,), classes (B, k) int, scores (B, k) float)``, best first in each row."""

_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("classes", pa.list_(pa.int32()), nullable=False),
        pa.field("scores", pa.list_(pa.float32()), nullable=False),
        pa.field("names", pa.list_(pa.string()), nullable=False),
    ]
)


@contextlib.contextmanager
def topk_file(
    path: str | Path, fmt: OutputFormat, class_names: Sequence[str]
) -> Iterator[WriteRows]:
    """Yield a function writing rows of top-k predictions into ``path`` in format ``fmt``;
    ``path`` is replaced when the ``with`` block ends normally and untouched when it raises."""
    if fmt not in FORMATS:
        raise ConfigError(f"output format {fmt!r} is unknown; use one of {', '.join(FORMATS)}")
    names = np.asarray(class_names, dtype=object)
    with replaced_file(Path(path), "wb" if fmt == "parquet" else "w") as fh:
        if fmt == "csv":
            fh.write(HEADER + "\n")
            yield lambda ids, classes, scores: _write_csv(fh, ids, classes, scores)
        elif fmt == "jsonl":
            yield lambda ids, classes, scores: _write_jsonl(fh, ids, classes, scores, names)
        else:
            writer = pq.ParquetWriter(fh, _SCHEMA)
            yield lambda ids, classes, scores: _write_parquet(writer, ids, classes, scores, names)
            writer.close()


def _check_ids(ids: Sequence[str]) -> None:
    for row_id in ids:
        if "," in row_id or "\n" in row_id or "\r" in row_id:
            raise DataError(
                f"id {row_id!r} holds a comma or line break; the submission CSV needs plain ids, "
                "write --format jsonl or parquet instead"
            )


def _write_csv(fh: IO[Any], ids: Sequence[str], classes: np.ndarray, scores: np.ndarray) -> None:
    _check_ids(ids)
    lines = []
    for row_id, row_classes, row_scores in zip(ids, classes.tolist(), scores.tolist(), strict=True):
        pairs = " ".join(f"{c} {s:.6f}" for c, s in zip(row_classes, row_scores, strict=True))
        lines.append(f"{row_id},{pairs}\n")
    fh.write("".join(lines))


def _write_jsonl(
    fh: IO[Any], ids: Sequence[str], classes: np.ndarray, scores: np.ndarray, names: np.ndarray
) -> None:
    lines = []
    for row_id, row_classes, row_scores in zip(ids, classes, scores, strict=True):
        record = {
            "id": row_id,
            "classes": row_classes.tolist(),
            "scores": [round(s, 6) for s in row_scores.tolist()],
            "names": names[row_classes].tolist(),
        }
        lines.append(json.dumps(record) + "\n")
    fh.write("".join(lines))


def _write_parquet(
    writer: pq.ParquetWriter,
    ids: Sequence[str],
    classes: np.ndarray,
    scores: np.ndarray,
    names: np.ndarray,
) -> None:
    n, k = classes.shape
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    columns = [
        pa.array(list(ids), pa.string()),
        pa.ListArray.from_arrays(offsets, pa.array(classes.ravel().astype(np.int32))),
        pa.ListArray.from_arrays(offsets, pa.array(scores.ravel().astype(np.float32))),
        pa.ListArray.from_arrays(offsets, pa.array(names[classes.ravel()], pa.string())),
    ]
    writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=_SCHEMA))
