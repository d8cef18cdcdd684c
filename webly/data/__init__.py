"""Datasets: the memory-mapped Arrow store, importers, folds."""

from webly.data.folds import assign_folds
from webly.data.store import (
    Batch,
    Dataset,
    DatasetWriter,
    FeatureSpec,
    Layout,
    ShardInfo,
    ShardWriter,
    dequantize_uint8,
    quantize_uint8,
)

__all__ = [
    "Batch",
    "Dataset",
    "DatasetWriter",
    "FeatureSpec",
    "Layout",
    "ShardInfo",
    "ShardWriter",
    "assign_folds",
    "dequantize_uint8",
    "quantize_uint8",
]
