"""Compress, export and predict: the deployable end of a webly run.

- `compress_network`: partial 8-bit (the YouTube-8M 2018 winners'), float16 or k-means
  compression of a saved network's big tensors, with a per-tensor report; `open_network` loads
  a plain or compressed network folder.
- `export_onnx`: an ONNX graph from stored features (uint8 codes included) to probabilities,
  with ``weights.safetensors`` and ``model.json``; `load_exported` checks and opens one.
- `predict`: a data store or YouTube-8M TFRecord files through an exported model into a
  Kaggle submission, Parquet or JSON lines of top-k classes.
"""

from webly.compress.export import ExportedModel, export_onnx, load_exported
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

__all__ = [
    "CompressionResult",
    "ExportedModel",
    "PredictSummary",
    "QuantizedState",
    "TensorReport",
    "compress_network",
    "export_onnx",
    "is_compressed",
    "load_exported",
    "open_network",
    "predict",
    "quantize_state",
]
