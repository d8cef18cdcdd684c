"""Batch prediction with an exported model: data store or TFRecord files in, top-k file out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from webly.compress.export import ExportedModel, load_exported
from webly.compress.inputs import row_batches
from webly.compress.outputs import OutputFormat, topk_file
from webly.data.yt8m import Names
from webly.errors import ConfigError
from webly.metrics.ranking import select_top_k


@dataclass(frozen=True)
class PredictSummary:
    """What `predict` wrote: rows, classes a row, and the wall time (seconds)."""

    out: Path
    rows: int
    k: int
    seconds: float

    def __str__(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"wrote the top {self.k} classes of {self.rows:,} rows to {self.out} in "
            f"{self.seconds:.1f} s ({rate:,.0f} rows/s)"
        )


def predict(
    model: str | Path | ExportedModel,
    source: str | Path,
    out: str | Path,
    *,
    top_k: int = 20,
    fmt: OutputFormat = "csv",
    batch_size: int = 256,
    names: Names = "2018",
) -> PredictSummary:
    """Predict every row of ``source`` with an exported model and write each row's top classes.

    Parameters
    ----------
    model : an `webly.compress.export_onnx` folder, or one already loaded
    source : a data store folder, or a glob of YouTube-8M TFRecord files (video- or
        frame-level, as the model reads; ``names`` picks the 2018 or 2017 field names)
    out : the file to write, replaced in one step once every row is written (untouched on error)
    top_k : classes kept a row, best first (Kaggle's YouTube-8M submission: 20)
    fmt : ``csv`` (Kaggle submission), ``parquet`` or ``jsonl``; see `webly.compress.outputs`
    batch_size : rows per ONNX Runtime call; memory holds one batch
    """
    if top_k < 1:
        raise ConfigError(f"top-k is {top_k}; use 1 or more (--top-k)")
    started = time.perf_counter()
    exported = model if isinstance(model, ExportedModel) else load_exported(model)
    k = min(top_k, exported.n_classes)
    batches = row_batches(source, exported.features, exported.level, batch_size, names)
    rows = 0
    with topk_file(out, fmt, exported.class_names) as write:
        for batch in batches:
            probs = exported.predict(batch.groups, batch.lengths)  # (B, n_classes)
            classes, scores = select_top_k(probs, k, sort=True)
            write(batch.ids, classes, scores)
            rows += len(batch.ids)
    return PredictSummary(Path(out), rows, k, time.perf_counter() - started)
