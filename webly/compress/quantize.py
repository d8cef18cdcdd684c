"""Post-training weight compression of a saved network: partial 8-bit, float16, k-means.

The YouTube-8M 2018 winners (Skalic et al., ``seeds/001``) had to fit in 1 GB; they quantized
only the big tensors (more than 17,000 elements: the fully connected weights) to 8 bits with
256 min-max uniform levels and kept everything else, e.g. batch-norm factors, in float32. At
load time each code is looked up in a per-tensor table of 256 float32 values. Here:

- ``int8_partial``: uniform codes over ``[min, max]`` with ``levels`` <= 256 levels;
- ``kmeans``: a per-tensor codebook of ``clusters`` <= 256 centroids fitted by k-means on a
  sample of the tensor's values (non-uniform levels, where the values are dense);
- ``fp16``: float16 values.

Each method applies to the floating tensors of more than ``min_elements`` elements; the others
stay as they are. Every coded tensor is stored as uint8 codes of its shape plus a float32 table
of the value of each code, so dequantizing is one lookup, ``table[codes]``.

The compressed state is a `webly.models.quantized.QuantizedState`; `compress_network` writes
a network folder holding the network's ``model.json`` and that state, which
`webly.models.quantized.open_network` loads back as a float32 `webly.models.Network`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from webly._fs import OutputKind, atomic_output, write_json
from webly.errors import ConfigError, DataError
from webly.models.network import CONFIG_FILE, WEIGHTS_FILE, load_network
from webly.models.quantized import (
    METHODS,
    QUANTIZED_FILE,
    Method,
    QuantizedState,
    refuse_lightgbm,
)

REPORT_FILE = "compression.json"
COMPRESSED = OutputKind("a compressed webly network", QUANTIZED_FILE)
"""What ``webly quantize --overwrite`` replaces."""
MIN_ELEMENTS = 17_000
"""Tensors with more elements than this are compressed (Skalic et al. 2018)."""


@dataclass(frozen=True)
class TensorReport:
    """What compression did to one tensor.

    ``method`` is ``int8``, ``kmeans`` or ``fp16`` for a compressed tensor, ``fp32`` for a
    floating tensor kept as it was, ``as is`` for an integer buffer. Bytes count the stored
    values (and table); errors are of the dequantized values against the originals:
    ``max_abs_error`` the largest absolute difference, ``rel_rms_error`` the RMS difference over
    the RMS of the original (0 for an all-zero tensor).
    """

    name: str
    shape: tuple[int, ...]
    method: str
    bytes_before: int
    bytes_after: int
    max_abs_error: float
    rel_rms_error: float


# --------------------------------------------------------------------------- quantizers


def uniform_codes(x: torch.Tensor, levels: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max uniform quantization.

    Parameters
    ----------
    x : float tensor, any shape
    levels : number of levels, 2..256, evenly spaced from ``x.min()`` to ``x.max()``

    Returns
    -------
    codes : uint8, the shape of ``x``: the nearest level of each value
    table : (levels,) float32, the value of each level
    """
    values = x.detach().double()
    low, high = float(values.min()), float(values.max())
    step = (high - low) / (levels - 1)
    if step == 0.0:  # a constant tensor
        return torch.zeros(x.shape, dtype=torch.uint8), torch.full((levels,), low)
    codes = torch.round((values - low) / step).clamp_(0, levels - 1).to(torch.uint8)
    table = (low + step * torch.arange(levels, dtype=torch.float64)).float()
    return codes, table


def kmeans_codes(
    x: torch.Tensor, clusters: int = 256, sample_size: int = 65_536, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A k-means codebook of the values of ``x``.

    The centroids are fitted with scikit-learn's `KMeans` on a seeded random sample of
    ``sample_size`` values (all of them for a smaller tensor); every value then gets its nearest
    centroid. A tensor with at most ``clusters`` distinct values is coded exactly.

    Returns
    -------
    codes : uint8, the shape of ``x``
    table : (n_centroids,) float32 centroids, increasing, ``n_centroids <= clusters``
    """
    from sklearn.cluster import KMeans

    flat = x.detach().double().reshape(-1).numpy()
    rng = np.random.default_rng(seed)
    sample = flat if flat.size <= sample_size else rng.choice(flat, sample_size, replace=False)
    centroids = np.unique(flat)
    if centroids.size > clusters:
        fitted = KMeans(min(clusters, np.unique(sample).size), n_init=1, random_state=seed)
        centroids = np.unique(fitted.fit(sample.reshape(-1, 1)).cluster_centers_.ravel())
    bounds = (centroids[1:] + centroids[:-1]) / 2  # a value's code: the cell it falls in
    codes = np.searchsorted(bounds, flat).astype(np.uint8).reshape(tuple(x.shape))
    return torch.from_numpy(codes), torch.from_numpy(centroids.astype(np.float32))


def quantize_state(
    state: Mapping[str, torch.Tensor],
    method: Method = "int8_partial",
    *,
    min_elements: int = MIN_ELEMENTS,
    levels: int = 256,
    clusters: int = 256,
    sample_size: int = 65_536,
    seed: int = 0,
) -> tuple[QuantizedState, list[TensorReport]]:
    """Compress the floating tensors of ``state`` with more than ``min_elements`` elements.

    Parameters
    ----------
    state : name -> tensor, e.g. ``model.state_dict()``
    method : ``int8_partial`` (uniform codes), ``kmeans`` (a codebook per tensor) or ``fp16``
    min_elements : only tensors with more elements are compressed (0: every floating tensor)
    levels : levels of ``int8_partial``, 2..256
    clusters : centroids of ``kmeans``, 2..256
    sample_size, seed : values k-means is fitted on, and the seed drawing them

    Returns
    -------
    state : the `QuantizedState`
    report : one `TensorReport` per tensor, in ``state``'s order
    """
    if method not in METHODS:
        raise ConfigError(f"compression method {method!r} is unknown; use one of {METHODS}")
    if min_elements < 0:
        raise ConfigError(f"min_elements is {min_elements}; use 0 or more (default 17000)")
    for what, count in (("levels", levels), ("clusters", clusters)):
        if not 2 <= count <= 256:
            raise ConfigError(f"{what} is {count}; uint8 codes take 2..256 {what}")
    if sample_size < clusters:
        raise ConfigError(f"sample_size is {sample_size}; use at least clusters ({clusters})")
    values: dict[str, torch.Tensor] = {}
    tables: dict[str, torch.Tensor] = {}
    report = []
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        floating = tensor.is_floating_point()
        if not floating or tensor.numel() <= min_elements:
            values[name] = tensor.float() if floating else tensor
            kind = "fp32" if floating else "as is"
        elif method == "fp16":
            values[name], kind = tensor.half(), "fp16"
        elif method == "int8_partial":
            values[name], tables[name] = uniform_codes(tensor, levels)
            kind = "int8"
        else:
            values[name], tables[name] = kmeans_codes(tensor, clusters, sample_size, seed)
            kind = "kmeans"
        report.append(_tensor_report(name, tensor, values[name], tables.get(name), kind))
    quantized = QuantizedState(method, min_elements, values, tables)
    return quantized, report


def _tensor_report(
    name: str, original: torch.Tensor, stored: torch.Tensor, table: torch.Tensor | None, kind: str
) -> TensorReport:
    restored = table[stored.long()] if table is not None else stored
    size_after = stored.numel() * stored.element_size()
    if table is not None:
        size_after += table.numel() * table.element_size()
    max_abs = rel_rms = 0.0
    if original.is_floating_point() and original.numel():
        reference = original.double()
        error = restored.double() - reference
        max_abs = float(error.abs().max())
        scale = float(reference.pow(2).mean().sqrt())
        rel_rms = float(error.pow(2).mean().sqrt()) / scale if scale > 0 else 0.0
    return TensorReport(
        name=name,
        shape=tuple(original.shape),
        method=kind,
        bytes_before=original.numel() * original.element_size(),
        bytes_after=size_after,
        max_abs_error=max_abs,
        rel_rms_error=rel_rms,
    )


# --------------------------------------------------------------------------- network folders


@dataclass(frozen=True)
class CompressionResult:
    """What `compress_network` wrote: the per-tensor report and the sizes of the weight files
    before (``weights.safetensors``) and after (``weights.quantized.safetensors``), in bytes."""

    folder: Path
    method: Method
    tensors: list[TensorReport]
    file_bytes_before: int
    file_bytes_after: int

    @property
    def ratio(self) -> float:
        """Size after over size before."""
        return self.file_bytes_after / self.file_bytes_before

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "file_bytes_before": self.file_bytes_before,
            "file_bytes_after": self.file_bytes_after,
            "tensors": [{**t.__dict__, "shape": list(t.shape)} for t in self.tensors],
        }


def compress_network(
    folder_in: str | Path,
    folder_out: str | Path,
    method: Method = "int8_partial",
    *,
    min_elements: int = MIN_ELEMENTS,
    levels: int = 256,
    clusters: int = 256,
    sample_size: int = 65_536,
    seed: int = 0,
    overwrite: bool = False,
) -> CompressionResult:
    """Compress the saved network at ``folder_in`` into a network folder at ``folder_out``.

    ``folder_out`` gets the network's ``model.json``, the `QuantizedState` as
    ``weights.quantized.safetensors`` and the report as ``compression.json``; it is built in a
    temporary folder and renamed into place, so on error nothing is left there. Load it with
    `webly.models.quantized.open_network`. The options are those of `quantize_state`.
    """
    folder_in, folder_out = Path(folder_in), Path(folder_out)
    refuse_lightgbm(folder_in, "compression")
    if (folder_in / QUANTIZED_FILE).is_file():
        raise DataError(
            f"{folder_in} is already compressed ({QUANTIZED_FILE}); compress the original "
            "network folder (with weights.safetensors)"
        )
    model = load_network(folder_in)
    quantized, report = quantize_state(
        model.state_dict(),
        method,
        min_elements=min_elements,
        levels=levels,
        clusters=clusters,
        sample_size=sample_size,
        seed=seed,
    )
    with atomic_output(folder_out, overwrite=overwrite, kind=COMPRESSED, inputs=[folder_in]) as tmp:
        write_json(tmp / CONFIG_FILE, model.config)
        quantized.save(tmp / QUANTIZED_FILE)
        result = CompressionResult(
            folder=folder_out,
            method=method,
            tensors=report,
            file_bytes_before=(folder_in / WEIGHTS_FILE).stat().st_size,
            file_bytes_after=(tmp / QUANTIZED_FILE).stat().st_size,
        )
        write_json(tmp / REPORT_FILE, result.to_json())
    return result
