"""What a deployable model costs to run: milliseconds a row with ONNX Runtime on this machine.

`network_latency` exports a saved network to ONNX (`webly.deploy.export.export_onnx`, no
weights file) and times ONNX Runtime's CPU provider on a batch of stored rows; `trees_latency`
times a LightGBM member's fold model (which an export ships as it is); `ms_per_row` times any
callable. A batch is timed `REPEATS` times after one warm-up call and the fastest
run counts (the others measure the machine's other work); the figure is its seconds over the
batch's rows. The batch is `LATENCY_ROWS` rows, as a serving micro-batch holds them: one row at
a time costs more a row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from webly.data.store import Dataset
from webly.deploy.export import export_onnx
from webly.deploy.inputs import store_batches
from webly.models.gbdt import LgbmModel

LATENCY_ROWS, REPEATS = 256, 3


def ms_per_row(run: Callable[[], object], n_rows: int, repeats: int = REPEATS) -> float:
    """Milliseconds a row of ``run()`` (which handles ``n_rows`` rows): the fastest of
    ``repeats`` timed calls after a warm-up call."""
    run()
    best = min(_seconds(run) for _ in range(repeats))
    return 1000.0 * best / max(n_rows, 1)


def _seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def network_latency(network_folder: Path, store: Dataset, rows: np.ndarray, work: Path) -> float:
    """Milliseconds a row of the network saved in ``network_folder`` (plain or compressed),
    exported to ONNX in ``work`` (replaced) and run on ``rows`` of ``store`` (the store it was
    trained on) in one batch."""
    exported = export_onnx(
        network_folder, work, layout=store.layout, overwrite=True, ship_weights=False
    )
    (batch,) = store_batches(store.subset(rows), exported.features, max(len(rows), 1))
    return ms_per_row(lambda: exported.predict(batch.groups, batch.lengths), len(rows))


def trees_latency(folder: Path, store: Dataset, rows: np.ndarray) -> float:
    """Milliseconds a row of the LightGBM model saved in ``folder`` on ``rows`` of ``store``
    (the store it was trained on), its groups read and concatenated as an export feeds them."""
    model = LgbmModel.load(folder)
    x = store.features(rows, tuple(model.input_dims))  # (len(rows), D) float32
    return ms_per_row(lambda: model.predict(x), len(rows))
