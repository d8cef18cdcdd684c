"""In-memory data into a webly store: `dataset_from_arrays` (numpy) and `dataset_from_pandas`.

What a notebook holds (a feature matrix and a label vector, padded frames and their lengths, a
DataFrame with a label column) is written to a store folder, or to a temporary one removed when
the interpreter exits, and opened as a `Dataset`; `Dataset.from_arrays` and
`Dataset.from_pandas` are these functions.

Labels and the task they imply:

- ``(n_samples,)`` integer class ids, or class names (any strings): multi-class, one label a row;
- ``(n_samples, n_classes)`` 0/1 (dense or sparse), or a list of label lists: multi-label;
- ``None``: unlabeled rows (every row's label list is empty); ``n_classes`` or ``class_names``
  then says how many classes the predictions cover.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from webly.core import Task, canonical_labels
from webly.data.store import Batch, Dataset, DatasetWriter, Dtype, FeatureSpec, Layout
from webly.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

FeaturesLike = np.ndarray | Mapping[str, np.ndarray]
FramesLike = Sequence[np.ndarray] | tuple[np.ndarray, np.ndarray]

DEFAULT_GROUP = "x"
"""The feature group's name when features come as one matrix."""
BATCH_ROWS = 8192
"""Rows written a record batch."""

_TEMPORARY: list[Path] = []


@atexit.register
def _remove_temporary() -> None:
    for folder in _TEMPORARY:
        shutil.rmtree(folder, ignore_errors=True)


def dataset_from_arrays(
    features: FeaturesLike | None = None,
    labels: Any = None,
    *,
    ids: Sequence[str] | None = None,
    frames: Mapping[str, FramesLike] | None = None,
    texts: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    task: Task | None = None,
    n_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    path: str | Path | None = None,
    dtype: Dtype = "float32",
    overwrite: bool = False,
) -> Dataset:
    """Write arrays to a store and open it.

    Parameters
    ----------
    features : (n_samples, dim) array, or ``{group: (n_samples, dim)}``
        Video-level (one vector a row) features; one matrix becomes the group ``x``.
    labels : see the module docstring; None for unlabeled rows
    ids : n_samples unique row ids (default ``row0``, ``row1``, ...)
    frames : ``{group: frames}``, frame-level features, each either a list of n_samples
        ``(T_i, dim)`` arrays or a pair ``(padded, lengths)``: ``(n_samples, T, dim)`` and
        ``(n_samples,)`` ints, row i's frames ``padded[i, :lengths[i]]``. Every group gives a row
        the same number of frames.
    texts, groups : n_samples strings each (a text a row; the group a row belongs to, e.g. the
        product of several images)
    task : "multiclass" or "multilabel"; inferred from ``labels`` when None
    n_classes : classes (default: from ``labels`` or ``class_names``)
    class_names : a name a class; class-name labels default to their sorted set
    path : the store folder to create; a temporary one (removed at exit) when None
    dtype : how features are stored ("float32", "float16" or "uint8" YouTube-8M codes)
    overwrite : replace a dataset already at ``path``

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Shapes that disagree, non-finite features, labels of an unknown form.
    ConfigError
        Neither features nor frames, unlabeled rows without a class count.
    """
    video = _video_groups(features)
    sequences = {name: _frames(name, value) for name, value in (frames or {}).items()}
    if not video and not sequences:
        raise ConfigError("no features given; pass features=(n_samples, dim) or frames={...}")
    n = _row_count(video, sequences)
    rows, names, inferred = _label_rows(labels, n, n_classes, class_names)
    task = Task.parse(task) if task else inferred
    if not task.multilabel and any(len(r) > 1 for r in rows):
        raise DataError("task is multiclass but some rows hold several labels; pass one a row")
    ids = _ids(ids, n)
    for what, column in (("texts", texts), ("groups", groups)):
        if column is not None and len(column) != n:
            raise DataError(f"{what} holds {len(column)} values for {n} rows; give one a row")
    specs = [FeatureSpec(name, x.shape[1], dtype) for name, x in video.items()]
    specs += [FeatureSpec(name, seq[0].shape[1], dtype, "frame") for name, seq in sequences.items()]
    layout = Layout(
        features=tuple(specs),
        n_classes=len(names) if names is not None else _n_classes(rows, n_classes),
        task=task,
        class_names=tuple(names) if names is not None else None,
        has_group=groups is not None,
        has_text=texts is not None,
    )
    out = _destination(path)
    with DatasetWriter(out, layout, overwrite=overwrite, source={"input": "arrays"}) as writer:
        for start in range(0, max(n, 1), BATCH_ROWS):
            at = slice(start, min(start + BATCH_ROWS, n))
            writer.write_batch(
                Batch(
                    ids=ids[at],
                    labels=rows[at],
                    features={name: x[at] for name, x in video.items()},
                    frames={name: seq[at] for name, seq in sequences.items()},
                    groups=list(groups[at]) if groups is not None else None,
                    texts=list(texts[at]) if texts is not None else None,
                ),
                source="arrays",
            )
    return Dataset.open(out)


def dataset_from_pandas(
    frame: pd.DataFrame,
    label: str | None = "label",
    *,
    features: Sequence[str] | None = None,
    id_column: str | None = None,
    text_column: str | None = None,
    group_column: str | None = None,
    **options: Any,
) -> Dataset:
    """Write a DataFrame to a store and open it (`dataset_from_arrays` for the rest).

    Parameters
    ----------
    frame : one row a sample
    label : the label column (ints or names: multi-class; lists: multi-label); None or a
        column absent from ``frame`` with ``features`` given: unlabeled rows
    features : the numeric feature columns (default: every numeric column but the others named)
    id_column, text_column, group_column : optional columns of row ids, texts and groups
    options : `dataset_from_arrays` keywords (task, class_names, path, dtype, overwrite, ...)
    """
    named = [c for c in (label, id_column, text_column, group_column) if c is not None]
    for column in named:
        if column not in frame.columns and not (column == label and features is not None):
            raise DataError(
                f"column {column!r} is not in the DataFrame (it has: "
                f"{', '.join(map(str, frame.columns[:20]))}); pass the right name"
            )
    if features is None:
        features = [
            c for c in frame.columns if c not in named and np.issubdtype(frame[c].dtype, np.number)
        ]
        if not features:
            raise DataError(
                "the DataFrame has no numeric feature columns besides the named ones; pass "
                "features=[...]"
            )
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise DataError(f"feature column {missing[0]!r} is not in the DataFrame; check features=")
    values = frame[list(features)].to_numpy(dtype=np.float32)
    labels = None
    if label is not None and label in frame.columns:
        column = frame[label]
        first = column.iloc[0] if len(column) else None
        is_list = isinstance(first, list | tuple | np.ndarray)
        labels = [list(v) for v in column] if is_list else column.to_numpy()
    return dataset_from_arrays(
        values,
        labels,
        ids=[str(v) for v in frame[id_column]] if id_column else None,
        texts=[str(v) for v in frame[text_column]] if text_column else None,
        groups=[str(v) for v in frame[group_column]] if group_column else None,
        **options,
    )


def infer_task(labels: Any) -> Task:
    """ "multilabel" for a 0/1 matrix or label lists, "multiclass" for one id or name a row."""
    if sp.issparse(labels):
        return Task.MULTILABEL
    if isinstance(labels, np.ndarray):
        return Task.MULTILABEL if labels.ndim == 2 else Task.MULTICLASS
    first = next(iter(labels), None)
    several = isinstance(first, list | tuple | np.ndarray | set)
    return Task.MULTILABEL if several else Task.MULTICLASS


# --------------------------------------------------------------------------- internals


def _video_groups(features: FeaturesLike | None) -> dict[str, np.ndarray]:
    if features is None:
        return {}
    given = features if isinstance(features, Mapping) else {DEFAULT_GROUP: features}
    groups = {}
    for name, value in given.items():
        x = np.asarray(value)
        if x.ndim != 2:
            raise DataError(
                f"features {name!r} have shape {x.shape}; pass (n_samples, dim) (frames go "
                "in frames=)"
            )
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise DataError(f"features {name!r} hold non-numeric or non-finite values; fix them")
        groups[str(name)] = x
    return groups


def _frames(name: str, value: FramesLike) -> list[np.ndarray]:
    """A frame group as a list of ``(T_i, dim)`` arrays."""
    if isinstance(value, tuple) and len(value) == 2 and np.ndim(value[0]) == 3:
        padded, lengths = np.asarray(value[0]), np.asarray(value[1])
        if lengths.shape != (padded.shape[0],) or not np.issubdtype(lengths.dtype, np.integer):
            raise DataError(
                f"frames {name!r}: lengths have shape {lengths.shape}; pass one int a row "
                f"({padded.shape[0]},)"
            )
        if (lengths < 0).any() or (lengths > padded.shape[1]).any():
            raise DataError(
                f"frames {name!r}: lengths must lie in [0, {padded.shape[1]}] (the padded frames)"
            )
        sequences = [padded[i, : int(t)] for i, t in enumerate(lengths)]
    else:
        sequences = [np.asarray(v) for v in value]
    dims = {s.shape[1] if s.ndim == 2 else -1 for s in sequences}
    if len(dims) != 1 or -1 in dims:
        raise DataError(
            f"frames {name!r}: every row must be a (frames, dim) array of one dim; found dims "
            f"{sorted(dims)[:5]}"
        )
    if not all(np.isfinite(s).all() for s in sequences):
        raise DataError(f"frames {name!r} hold non-finite values; fix them")
    return sequences


def _row_count(video: dict[str, np.ndarray], sequences: dict[str, list[np.ndarray]]) -> int:
    counts = {name: len(x) for name, x in video.items()}
    counts |= {name: len(seq) for name, seq in sequences.items()}
    if len(set(counts.values())) != 1:
        raise DataError(f"feature groups hold different row counts {counts}; give one a row each")
    return next(iter(counts.values()))


def _label_rows(
    labels: Any, n: int, n_classes: int | None, class_names: Sequence[str] | None
) -> tuple[list[np.ndarray], list[str] | None, Task]:
    """Each row's class ids, the class names (None when not known) and the inferred task."""
    names = [str(c) for c in class_names] if class_names is not None else None
    if labels is None:
        if n_classes is None and names is None:
            raise ConfigError(
                "unlabeled rows need the class count: pass n_classes= or class_names="
            )
        return [np.zeros(0, np.int64)] * n, names, Task.MULTILABEL
    task = infer_task(labels)
    if not task.multilabel:
        values = np.asarray(labels)
        if values.shape != (n,):
            raise DataError(f"labels have shape {values.shape} for {n} rows; pass ({n},)")
        if not np.issubdtype(values.dtype, np.integer):
            if np.issubdtype(values.dtype, np.floating) and np.all(values == np.round(values)):
                values = values.astype(np.int64)
            else:
                names = names or sorted({str(v) for v in values})
                index = {c: i for i, c in enumerate(names)}
                unknown = next((str(v) for v in values if str(v) not in index), None)
                if unknown is not None:
                    raise DataError(f"label {unknown!r} is not in class_names; add it")
                values = np.array([index[str(v)] for v in values], np.int64)
        if values.size and values.min() < 0:
            raise DataError(f"labels hold class id {int(values.min())}; ids must be >= 0")
        return list(values.astype(np.int64)[:, None]), names, task
    if isinstance(labels, np.ndarray) or sp.issparse(labels):
        if labels.shape[0] != n:
            raise DataError(f"labels hold {labels.shape[0]} rows for {n}; give one a row")
        matrix = canonical_labels(labels, n_classes=n_classes)
        return list(np.split(matrix.indices, matrix.indptr[1:-1])), names, task
    lists = [np.asarray(list(row), dtype=np.int64) for row in labels]
    if len(lists) != n:
        raise DataError(f"labels hold {len(lists)} rows for {n}; give one label list a row")
    if any(row.size and row.min() < 0 for row in lists):
        raise DataError("labels hold a negative class id; ids must be >= 0")
    return lists, names, task


def _n_classes(rows: list[np.ndarray], n_classes: int | None) -> int:
    largest = max((int(r.max()) for r in rows if r.size), default=-1) + 1
    if n_classes is not None and n_classes < largest:
        raise DataError(f"labels hold class id {largest - 1} but n_classes is {n_classes}")
    return n_classes if n_classes is not None else max(largest, 1)


def _ids(ids: Sequence[str] | None, n: int) -> list[str]:
    if ids is None:
        return [f"row{i}" for i in range(n)]
    given = [str(i) for i in ids]
    if len(given) != n:
        raise DataError(f"ids holds {len(given)} values for {n} rows; give one a row")
    return given


def _destination(path: str | Path | None) -> Path:
    if path is not None:
        return Path(path)
    folder = Path(tempfile.mkdtemp(prefix="webly-dataset-"))
    _TEMPORARY.append(folder)
    return folder / "store"
