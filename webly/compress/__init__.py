"""Compress, export and predict: the deployable end of a webly run.

- `compress_network`: partial 8-bit (the YouTube-8M 2018 winners'), float16 or k-means
  compression of a saved network's big tensors, with a per-tensor report; `open_network` loads
  a plain or compressed network folder.
- `choose_under_budget`: among a run's final network (plain and compressed), member subsets,
  blends and stacker, the most accurate within a size budget, with the accuracy/size frontier.
- `export_onnx`: an ONNX graph from stored features (uint8 codes included) to probabilities,
  with ``weights.safetensors`` and ``model.json``; `export_run` exports a run's final network
  with the run's figures; `load_exported` checks and opens one.
- `predict`: a data store or YouTube-8M TFRecord files through an exported model into a
  Kaggle submission, Parquet or JSON lines of top-k classes, with the test-time views and
  group aggregation the model asks for (`PredictOptions`).
"""

from webly.compress.budget import BudgetResult, Candidate, choose_under_budget
from webly.compress.export import ExportedModel, export_onnx, load_exported
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
    "export_onnx",
    "export_run",
    "is_compressed",
    "load_exported",
    "open_network",
    "predict",
    "quantize_state",
]
