"""Stores of rows derived from training rows (`webly.distill.mixed`, `webly.distill.views`):
written block by block, and reused as they are when their manifest records the same source."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from webly.data.store import Batch, Dataset, DatasetWriter
from webly.train.zoo import manifest_hash

BLOCK_ROWS = 1024


def derived_store(
    train: Dataset,
    out: Path,
    rows: np.ndarray,
    params: Mapping[str, Any],
    block: Callable[[np.ndarray], Batch],
    *,
    overwrite: bool = False,
) -> Dataset:
    """The store ``out`` of one derived row per row of ``rows`` (``(n,)`` int64 positions in
    ``train``), without labels.

    Its manifest's ``source`` is ``params`` (the generator and its settings) with ``input``,
    the training store's hash, and ``rows``, a SHA-256 of ``rows``: a store at ``out`` with
    that source is reused as it is; otherwise it is written (replacing one there only with
    ``overwrite``), ``block(positions)`` giving the `Batch` of the derived rows at
    ``positions`` (``(B,)`` int64 positions in ``rows``, at most `BLOCK_ROWS`, in order) in the
    layout of ``train`` without group, text or clean labels.
    """
    source = {
        **params, "input": manifest_hash(train), "rows": hashlib.sha256(rows.tobytes()).hexdigest()
    }  # fmt: skip
    if (out / "manifest.json").is_file():
        existing = Dataset.open(out)
        if existing.manifest.get("source") == source:
            return existing
    layout = dataclasses.replace(
        train.layout, has_group=False, has_text=False, has_clean_labels=False
    )
    with DatasetWriter(out, layout, overwrite=overwrite, source=source) as writer:
        for start in range(0, rows.size, BLOCK_ROWS):
            writer.write_batch(block(np.arange(start, min(start + BLOCK_ROWS, rows.size))))
    return Dataset.open(out)
