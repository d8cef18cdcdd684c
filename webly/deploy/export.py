"""ONNX export of a saved network: stored features in, class probabilities out.

`export_onnx` writes a folder holding

- ``model.onnx`` (opset >= 17): one input per feature group, named after it, in the group's
  *stored* dtype: ``(B, D)`` for a video-level model, ``(B, T, D)`` plus ``lengths (B,)`` int64
  for a frame-level one (batch and time are dynamic). The graph dequantizes uint8 codes with
  YouTube-8M's arithmetic (`webly.data.store.dequantize_uint8`), casts float16 to float32,
  ignores frames at or beyond ``lengths`` (they are zeroed, and the network masks them),
  concatenates the groups and runs the network; its output ``probabilities`` ``(B, n_classes)``
  is the sigmoid (multi-label) or softmax (multi-class) of the logits. The groups are separate
  inputs because they may be stored in different dtypes (uint8 ``rgb`` beside float32
  ``audio``). A compressed network (`webly.compress.compress_network`) keeps its uint8 codes
  and tables, or float16 values, in the graph and expands them there, so the file is as small as
  the compressed weights.
- ``weights.safetensors``: the weights as the source folder stores them (float32, or the
  `webly.models.quantized.QuantizedState` of a compressed network), no pickle;
- ``model.json``: format and webly version, level, task, classes (names and descriptions when
  the data store has them), the feature groups (dim, dtype, quantization range), the
  preprocessing, the network config, metrics given at export, how to predict
  (`webly.deploy.options.PredictOptions`: test-time views, group aggregation), the run it
  came from (`webly.compress.run.export_run`: run folder, training store, what its metrics
  were measured on), a frame-level network's training ``max_frames`` (None when unknown), and
  the size and SHA-256 of both files.

`webly.deploy.exported.load_exported` opens the folder for ONNX Runtime after checking all
of it. LightGBM models
(``lgbm``) are not exported to ONNX (that needs onnxmltools, not a dependency): their own text
model files (``lgbm.json`` and one booster file each) are already a pickle-free deployable
format, loaded with `webly.models.gbdt.LgbmModel.load`.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

import webly
from webly._fs import atomic_output, fsync_path, sha256_file, write_json
from webly._optional import require
from webly.core import Task
from webly.data.store import FeatureSpec, Layout
from webly.data.store import Level as StoreLevel
from webly.deploy.exported import (
    EXPORT,
    EXPORT_WEIGHTS,
    FORMAT,
    FORMAT_VERSION,
    LENGTHS,
    MANIFEST,
    ONNX_FILE,
    OUTPUT,
    ExportedModel,
    load_exported,
)
from webly.deploy.options import PredictOptions
from webly.deploy.traceable import traceable
from webly.errors import ConfigError, DataError
from webly.models.layers import frame_mask
from webly.models.network import WEIGHTS_FILE, Network
from webly.models.quantized import (
    QUANTIZED_FILE,
    QuantizedState,
    is_compressed,
    open_network,
    refuse_lightgbm,
)

MIN_OPSET = 17
TOLERANCE = 1e-4
"""Largest difference in probability allowed between ONNX Runtime and PyTorch."""


# --------------------------------------------------------------------------- the graph


def decode_inputs(
    features: Sequence[FeatureSpec], arrays: Sequence[np.ndarray], lengths: np.ndarray | None
) -> np.ndarray:
    """What the exported graph feeds its network, computed with numpy: the groups decoded to
    float32 (`FeatureSpec.decode`), concatenated, frames at or beyond ``lengths`` zeroed.

    Returns ``(B, sum(dims))`` or ``(B, T, sum(dims))`` float32.
    """
    x = np.concatenate([spec.decode(a) for spec, a in zip(features, arrays, strict=True)], -1)
    if lengths is not None:
        x[np.arange(x.shape[1])[None, :] >= lengths[:, None]] = 0.0
    return x


def torch_probabilities(
    network: Network,
    features: Sequence[FeatureSpec],
    arrays: Sequence[np.ndarray],
    lengths: np.ndarray | None,
    multilabel: bool,
) -> np.ndarray:
    """PyTorch eager probabilities ``(B, n_classes)`` of ``network`` (in eval mode) on stored
    inputs: the reference an export is checked against."""
    x = torch.from_numpy(decode_inputs(features, arrays, lengths))
    with torch.no_grad():
        if lengths is None:
            logits = network(x)
        else:
            logits = network(x, torch.from_numpy(lengths.astype(np.int64)))
    probs = logits.sigmoid() if multilabel else logits.softmax(dim=1)
    return probs.numpy()


class FeatureGraph(nn.Module):
    """Stored feature groups -> probabilities; see the module docstring.

    ``forward(*groups)`` for a video-level network, ``forward(*groups, lengths)`` for a
    frame-level one, the groups in the order of ``features``. ``stored`` is the compressed
    state of a compressed network: its coded and float16 tensors replace the network's own
    (which are removed from its copy), expanded at every call.
    """

    def __init__(
        self,
        network: Network,
        features: Sequence[FeatureSpec],
        multilabel: bool,
        stored: QuantizedState | None = None,
    ) -> None:
        super().__init__()
        self.network = traceable(network)
        self.frame_level = network.level == "frame"
        self.multilabel = multilabel
        self.features = list(features)
        self.replaced: list[str] = []
        if stored is None:
            return
        for name, value in stored.values.items():
            table = stored.tables.get(name)
            if table is None and value.dtype != torch.float16:
                continue  # kept in float32: the network's own tensor
            index = len(self.replaced)
            self.register_buffer(f"stored_{index}", value.clone())
            if table is not None:
                self.register_buffer(f"table_{index}", table.clone())
            owner, _, attribute = name.rpartition(".")
            delattr(self.network.get_submodule(owner), attribute)  # set by `_expand_weights`
            self.replaced.append(name)

    def _expand_weights(self) -> None:
        """Set every replaced tensor of the network from its stored form: ``table[codes]`` or
        float16 -> float32 (traced, so the graph holds the stored form and expands it)."""
        for index, name in enumerate(self.replaced):
            value = getattr(self, f"stored_{index}")
            table = getattr(self, f"table_{index}", None)
            owner, _, attribute = name.rpartition(".")
            weight = value.float() if table is None else table[value.long()]
            setattr(self.network.get_submodule(owner), attribute, weight)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        groups = inputs[:-1] if self.frame_level else inputs
        parts = [self._decode(spec, x) for spec, x in zip(self.features, groups, strict=True)]
        x = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]  # (B, [T,] D)
        args: tuple[torch.Tensor, ...] = (x,)
        if self.frame_level:
            lengths = inputs[-1]  # (B,)
            real = frame_mask(lengths, x.shape[1])  # (B, T)
            x = x.masked_fill(~real.unsqueeze(-1), 0.0)  # (B, T, D)
            args = (x, lengths)
        self._expand_weights()
        logits = self.network(*args)  # (B, n_classes)
        return logits.sigmoid() if self.multilabel else logits.softmax(dim=1)

    @staticmethod
    def _decode(spec: FeatureSpec, x: torch.Tensor) -> torch.Tensor:
        """Stored values -> float32 with `FeatureSpec.decode`'s float32 arithmetic."""
        if spec.dtype != "uint8":
            return x.to(torch.float32)
        span = spec.quant_max - spec.quant_min
        scale = float(np.float32(span / 255.0))
        offset = float(np.float32(span / 512.0 + spec.quant_min))
        return x.to(torch.float32) * scale + offset


# --------------------------------------------------------------------------- export


def model_features(network: Network, layout: Layout | None) -> list[FeatureSpec]:
    """The feature groups ``network`` reads, in its input order, as ``layout`` stores them
    (float32 of the network's dims without a layout)."""
    level: StoreLevel = "frame" if network.level == "frame" else "video"
    specs = []
    for name, dim in network.config["input_dims"].items():
        if layout is None:
            specs.append(FeatureSpec(name, int(dim), "float32", level))
            continue
        spec = layout.feature(name)
        if spec.level != level or spec.dim != dim:
            raise DataError(
                f"feature group {name!r}: the model reads {dim} {level}-level values, the store "
                f"has {spec.dim} {spec.level}-level ones; export against the store the model "
                "was trained on"
            )
        specs.append(spec)
    return specs


def export_onnx(
    network_folder: str | Path,
    out_folder: str | Path,
    *,
    layout: Layout | None = None,
    metrics: Mapping[str, float] | None = None,
    predict_options: PredictOptions | None = None,
    run: Mapping[str, Any] | None = None,
    opset: int = MIN_OPSET,
    overwrite: bool = False,
    max_frames: int | None = None,
    ship_weights: bool = True,
) -> ExportedModel:
    """Export the network saved at ``network_folder`` (plain or compressed) to ``out_folder``.

    Parameters
    ----------
    network_folder : a folder written by `webly.models.save_network` (e.g. a zoo's
        ``<member>/fold-<f>/model``) or by `webly.compress.compress_network`.
    out_folder : the export folder to create; built in a temporary folder and renamed into
        place, so nothing is left there on error.
    layout : the layout of the data store the network was trained on: stored dtypes and
        quantization ranges of its feature groups, task and class names. Without it the inputs
        are float32 and the model multi-label with classes named by their index.
    metrics : figures to record in ``model.json`` (e.g. ``{"gap@20": 0.81}``).
    predict_options : how `webly.deploy.predict` predicts with it (test-time views, group
        aggregation); each row predicted once if None. Views take a frame-level network.
    run : where the network came from, recorded as ``model.json``'s ``run`` (see
        `webly.compress.run.export_run`).
    opset : ONNX opset, >= 17.
    overwrite : replace an existing ``out_folder``.
    max_frames : a frame-level network's training ``max_frames``, recorded in ``model.json``
        (`webly serve` takes no longer rows by default); None: the ``config.json`` of the zoo
        member the network belongs to (`training_max_frames`), when it has one.
    ship_weights : also ship ``weights.safetensors`` (the graph holds the weights already; an
        ensemble's fold models leave it out so their bytes count once).

    Returns
    -------
    ExportedModel
        The export, loaded back through `load_exported` (so every check has passed). Before
        it is written, ONNX Runtime's probabilities on random stored inputs of two batch sizes
        and frame counts are checked to equal PyTorch's within 1e-4.
    """
    network_folder = Path(network_folder)
    require("onnx", "ONNX export")  # torch.onnx.export's own failure is a traceback
    refuse_lightgbm(network_folder, "ONNX export")
    if opset < MIN_OPSET:
        raise ConfigError(f"opset is {opset}; use {MIN_OPSET} or later")
    network = open_network(network_folder)
    options = predict_options or PredictOptions()
    options.check_level(network.level, str(network.config["name"]))
    features = model_features(network, layout)
    n_classes = int(network.config["n_classes"])
    if layout is not None and layout.n_classes != n_classes:
        raise DataError(
            f"the model predicts {n_classes} classes, the store has {layout.n_classes}; export "
            "against the store the model was trained on"
        )
    task = Task.MULTILABEL if layout is None else layout.task
    multilabel = task.multilabel
    compressed = is_compressed(network_folder)
    stored = QuantizedState.load(network_folder / QUANTIZED_FILE) if compressed else None
    graph = FeatureGraph(network, features, multilabel, stored).eval()
    frame_level = network.level == "frame"
    names = [spec.name for spec in features] + ([LENGTHS] if frame_level else [])
    axes: dict[str, dict[int, str]] = {
        spec.name: {0: "batch", 1: "time"} if frame_level else {0: "batch"} for spec in features
    }
    axes |= {LENGTHS: {0: "batch"}} if frame_level else {}
    axes[OUTPUT] = {0: "batch"}
    trace_inputs = example_inputs(features, frame_level, batch=3, frames=7, seed=0)
    with atomic_output(
        out_folder, overwrite=overwrite, kind=EXPORT, inputs=[network_folder]
    ) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and exporter deprecation chatter
            torch.onnx.export(
                graph,
                tuple(torch.from_numpy(a) for a in trace_inputs),
                str(tmp / ONNX_FILE),
                input_names=names,
                output_names=[OUTPUT],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
                do_constant_folding=not compressed,  # folding would expand the codes
            )
        fsync_path(tmp / ONNX_FILE)
        _check_against_torch(tmp / ONNX_FILE, network, features, names, multilabel)
        if ship_weights:
            source = network_folder / (QUANTIZED_FILE if compressed else WEIGHTS_FILE)
            shutil.copyfile(source, tmp / EXPORT_WEIGHTS)
            fsync_path(tmp / EXPORT_WEIGHTS)
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "webly_version": webly.__version__,
            "exported_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": str(network_folder),
            "level": network.level,
            "task": task,
            "n_classes": n_classes,
            "class_names": _class_names(layout, n_classes),
            "class_descriptions": _descriptions(layout),
            "features": [asdict(spec) for spec in features],
            "inputs": names,
            "output": OUTPUT,
            "opset": opset,
            "preprocessing": _preprocessing(features, frame_level, multilabel),
            "network": network.config,
            "weights_format": stored.method if stored is not None else "float32",
            "metrics": dict(metrics) if metrics is not None else None,
            "predict": options.to_json(),
            "run": dict(run) if run is not None else None,
            "max_frames": (
                (max_frames or training_max_frames(network_folder)) if frame_level else None
            ),
            "files": {
                name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
                for name in (ONNX_FILE, EXPORT_WEIGHTS)
                if (tmp / name).is_file()
            },
        }
        write_json(tmp / MANIFEST, info)
    return load_exported(out_folder)


def training_max_frames(network_folder: Path) -> int | None:
    """The ``max_frames`` a zoo member's network trained with, from the member's
    ``config.json`` (``OUT/<member>/config.json`` above ``fold-<f>/model`` and ``full/model``,
    `webly.train.oof`); None without one."""
    try:
        record = json.loads((network_folder.parent.parent / "config.json").read_text())
        value = record["config"]["train"]["max_frames"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if type(value) is int and value >= 1 else None


def example_inputs(
    features: Sequence[FeatureSpec], frame_level: bool, batch: int, frames: int, seed: int
) -> list[np.ndarray]:
    """Random stored inputs: one array per group (uint8 codes or normal floats, padded frames
    included), then ``lengths`` ``(batch,)`` int64 for frame level (the first row full)."""
    rng = np.random.default_rng(seed)
    arrays: list[np.ndarray] = []
    for spec in features:
        shape = (batch, frames, spec.dim) if frame_level else (batch, spec.dim)
        if spec.dtype == "uint8":
            arrays.append(rng.integers(0, 256, shape, dtype=np.uint8))
        else:
            arrays.append(rng.normal(size=shape).astype(spec.dtype))
    if frame_level:
        lengths = rng.integers(1, frames + 1, batch)
        lengths[0] = frames
        arrays.append(lengths.astype(np.int64))
    return arrays


def _check_against_torch(
    path: Path,
    network: Network,
    features: Sequence[FeatureSpec],
    names: Sequence[str],
    multilabel: bool,
) -> None:
    """Raise if ONNX Runtime's probabilities leave PyTorch's by more than `TOLERANCE`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    frame_level = network.level == "frame"
    for batch, frames, seed in ((5, 11, 1), (2, 1, 2)):
        arrays = example_inputs(features, frame_level, batch, frames, seed)
        got = session.run([OUTPUT], dict(zip(names, arrays, strict=True)))[0]
        groups, lengths = (arrays[:-1], arrays[-1]) if frame_level else (arrays, None)
        want = torch_probabilities(network, features, groups, lengths, multilabel)
        gap = float(np.abs(got - want).max())
        if not gap <= TOLERANCE:
            raise RuntimeError(
                f"the ONNX graph of {network.config['name']} differs from PyTorch by {gap:.2e} "
                f"(> {TOLERANCE}) at batch {batch}, {frames} frames; this is a webly bug"
            )


def _class_names(layout: Layout | None, n_classes: int) -> list[str]:
    if layout is not None and layout.class_names is not None:
        return list(layout.class_names)
    return [str(c) for c in range(n_classes)]


def _descriptions(layout: Layout | None) -> list[str] | None:
    if layout is None or layout.class_descriptions is None:
        return None
    return list(layout.class_descriptions)


def _preprocessing(
    features: Sequence[FeatureSpec], frame_level: bool, multilabel: bool
) -> dict[str, str]:
    """How the graph turns stored inputs into the network's input, in words."""
    steps = {
        "inputs": (
            "one per feature group in its stored dtype, "
            + ("(batch, time, dim), plus lengths (batch,) int64" if frame_level else "(batch, dim)")
        ),
        "uint8": "x = code * (quant_max - quant_min) / 255 + (quant_max - quant_min) / 512 "
        "+ quant_min, float32 (YouTube-8M's dequantization), in the graph",
        "float16": "cast to float32, in the graph",
        "concatenation": " + ".join(spec.name for spec in features),
        "output": "sigmoid of the logits (multi-label)"
        if multilabel
        else "softmax of the logits (multi-class)",
    }
    if frame_level:
        steps["frames"] = (
            "frames at or beyond lengths[b] are ignored (zeroed, then masked by the network); "
            "pass every frame of a video"
        )
    return steps
