"""A validation split carved out of a training store before anything trains on it.

Out-of-fold predictions score every training row with a model that did not train on it, but a
model taught by them (a distilled one) learns, through the other rows' predictions, what its
teacher's fold models learnt from every row: no training row is unseen by the teacher. Rows
carved out before the zoo are (bench/RESULTS.md, "A validation split carved before the zoo").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from webly.data.store import Dataset, DatasetWriter
from webly.errors import ConfigError


def valid_rows(train: Dataset, fraction: float, seed: int) -> np.ndarray:
    """``(n_valid,)`` ascending rows of ``train`` to carve out: one of ``round(1 / fraction)``
    folds of `webly.data.folds.assign_folds` (stratified on each row's rarest label, groups
    kept whole), so about ``fraction`` of the rows, and every class that is the rarest label
    of at least that many rows in it.

    ``fraction`` is in (0, 0.5] (``data.valid_fraction``, checked by the recipe). Raises
    `ConfigError` for a store too small to split.
    """
    parts = round(1 / fraction)
    if len(train) < 2 * parts:
        raise ConfigError(
            f"data.valid_fraction {fraction:g}: the training data has {len(train)} rows, too "
            "few to carve a validation split from; leave it out"
        )
    return np.flatnonzero(train.folds(parts, seed) == 0)


def write_rows(data: Dataset, rows: np.ndarray, out: Path) -> Dataset:
    """Write ``rows`` (ascending positions in the whole store ``data``) as a new store at
    ``out`` (which must not exist) and open it; its manifest's source names the store and the
    number of rows it was taken from."""
    source = {"generator": "rows", "input": str(data.path), "of_rows": len(data)}
    with DatasetWriter(out, data.layout, source=source, inputs=[data.path]) as writer:
        for start, chunk in data.iter_chunks():
            lo, hi = np.searchsorted(rows, [start, start + chunk.num_rows])
            if hi > lo:
                taken = chunk.take(pa.array(rows[lo:hi] - start, type=pa.int64()))
                writer.write_record_batch(taken, source=str(data.path))
    return Dataset.open(out)


def carve_valid(train: Path, fraction: float, seed: int, out_train: Path, out_valid: Path) -> None:
    """Split the training store at ``train`` into ``out_train`` (the rows that stay training
    rows) and ``out_valid`` (`valid_rows`), both new stores; ``train`` is only read."""
    data = Dataset.open(train)
    valid = valid_rows(data, fraction, seed)
    write_rows(data, np.setdiff1d(np.arange(len(data)), valid), out_train)
    write_rows(data, valid, out_valid)
