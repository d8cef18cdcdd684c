"""Compress, export and predict: the deployable end of a webly run.

- `compress_network`: partial 8-bit (the YouTube-8M 2018 winners'), float16 or k-means
  compression of a saved network's big tensors, with a per-tensor report; `open_network` loads
  a plain or compressed network folder.
- `choose_under_budget`: among a run's final network (plain and compressed), member subsets,
  blends and stacker (members as stored and in 8-bit), the most accurate on validation rows
  within a size (and latency) budget, with the accuracy/size/latency frontier.
- `export_best` / `export_choice`: that choice exported whole (a network, a blend or the
  stacker), one folder `load_exported` runs (`webly.compress.deploy`).
- `export_onnx`: an ONNX graph from stored features (uint8 codes included) to probabilities,
  with ``weights.safetensors`` and ``model.json``; `export_run` exports a run's final network
  with the run's figures; `load_exported` checks and opens one.
- `predict`: a data store or YouTube-8M TFRecord files through an exported model into a
  Kaggle submission, Parquet or JSON lines of top-k classes, with the test-time views and
  group aggregation the model asks for (`PredictOptions`).
"""

from webly.compress.budget import BudgetResult, Candidate, choose_under_budget
from webly.compress.deploy import export_best, export_candidate, export_choice
from webly.compress.export import export_onnx
from webly.compress.exported import ExportedModel, load_exported
from webly.compress.options import PredictOptions
from webly.compress.predict import PredictSummary, predict
from webly.compress.quantize import (
    CompressionResult,
    QuantizedState,
    TensorReport,
    compress_network,
    is_compressed,
    open_network,
    quantize_state,
)
from webly.compress.run import export_run

__all__ = [
    "BudgetResult",
    "Candidate",
    "CompressionResult",
    "ExportedModel",
    "PredictOptions",
    "PredictSummary",
    "QuantizedState",
    "TensorReport",
    "choose_under_budget",
    "compress_network",
    "export_best",
    "export_candidate",
    "export_choice",
    "export_onnx",
    "export_run",
    "is_compressed",
    "load_exported",
    "open_network",
    "predict",
    "quantize_state",
]
