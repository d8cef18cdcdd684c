"""webly: accurate, compact classifiers from large datasets with noisy labels.

The names below are imported on first use (PEP 562), so ``import webly`` and the CLI start
without loading PyTorch, LightGBM or pandas::

    from webly import Predictor, Dataset, find_noisy_labels, gap_at_k
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from webly._lazy import lazy_names

__version__ = "0.1.0"

_WHERE = {
    "Predictor": "webly.predictor",
    "Dataset": "webly.data.store",
    "import_table": "webly.data.tables",
    "import_yt8m": "webly.data.yt8m",
    "find_noisy_labels": "webly.clean.detect",
    "gap_at_k": "webly.metrics.ranking",
    "TopK": "webly.core",
    "fit_stacker": "webly.ensemble.stack",
    "load_recipe": "webly.config",
    "run_pipeline": "webly.pipeline",
    "load_exported": "webly.deploy.exported",
}
"""Each public name and the module that owns it."""

__all__ = ["__version__", *_WHERE]

if TYPE_CHECKING:
    from webly.clean.detect import find_noisy_labels as find_noisy_labels
    from webly.config import load_recipe as load_recipe
    from webly.core import TopK as TopK
    from webly.data.store import Dataset as Dataset
    from webly.data.tables import import_table as import_table
    from webly.data.yt8m import import_yt8m as import_yt8m
    from webly.deploy.exported import load_exported as load_exported
    from webly.ensemble.stack import fit_stacker as fit_stacker
    from webly.metrics.ranking import gap_at_k as gap_at_k
    from webly.pipeline import run_pipeline as run_pipeline
    from webly.predictor import Predictor as Predictor


__getattr__, __dir__ = lazy_names(__name__, _WHERE)
