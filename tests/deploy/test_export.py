"""ONNX export: ONNX Runtime equals PyTorch for every registered network, video and frame
level, plain and compressed; model.json; and every way a model folder can be bad."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.deploy.conftest import save_model
from webly.compress import compress_network
from webly.data import Dataset, FeatureSpec, Layout
from webly.deploy import export_onnx, load_exported
from webly.deploy.export import example_inputs, torch_probabilities
from webly.errors import ConfigError, DataError
from webly.models import create_model, list_models, model_entry
from webly.models.quantized import open_network

BIG_DBOF = {"cluster_size": 512, "hidden": 128}
NETWORKS = [n for n in list_models() if model_entry(n).level != "gbdt"]
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("lstm", {"layers": 2, "bidirectional": True, "readout": "attention"}),
    ("gru", {"bidirectional": True}),
    ("td_conv", {"pooling": "sort", "top_k": 4}),
    ("transformer", {"positions": True}),
    ("mlp", {"embedding": 8, "bnneck": True, "context_gating": True}),
    ("dbof", {"feature_subsample": 0.5}),
]


def layout_of(level: str, task: str = "multilabel") -> Layout:
    """uint8 ``rgb`` beside float16 ``audio`` at ``level``, 6 classes."""
    return Layout(
        features=(
            FeatureSpec("rgb", 12, "uint8", level, quant_min=-1.5, quant_max=2.5),  # type: ignore[arg-type]
            FeatureSpec("audio", 4, "float16" if level == "video" else "uint8", level),  # type: ignore[arg-type]
        ),
        n_classes=6,
        task=task,  # type: ignore[arg-type]
    )


def assert_matches_torch(
    folder: Path, network_folder: Path, rows: int = 9, frames: int = 13
) -> None:
    """ONNX Runtime's probabilities equal PyTorch eval's to 1e-4 on fresh inputs of another
    batch size and number of frames than the export traced, lengths from 1 to ``frames``."""
    exported = load_exported(folder)
    network = open_network(network_folder)
    frame_level = exported.level == "frame"
    arrays = example_inputs(exported.features, frame_level, rows, frames, seed=7)
    groups, lengths = (arrays[:-1], arrays[-1]) if frame_level else (arrays, None)
    if lengths is not None:
        lengths[1], lengths[2] = 1, frames - 1
    feeds = {spec.name: a for spec, a in zip(exported.features, groups, strict=True)}
    got = exported.predict(feeds, lengths)
    multilabel = exported.info["task"] == "multilabel"
    want = torch_probabilities(network, exported.features, groups, lengths, multilabel)
    assert got.shape == (rows, exported.n_classes)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "hparams"), [(n, {}) for n in NETWORKS] + VARIANTS, ids=lambda v: str(v)
)
def test_onnx_runtime_equals_pytorch(tmp_path: Path, name: str, hparams: dict[str, Any]) -> None:
    layout = layout_of(model_entry(name).level)
    source = save_model(tmp_path / "net", name, layout, ("rgb", "audio"), **hparams)
    export_onnx(source, tmp_path / "export", layout=layout)
    assert_matches_torch(tmp_path / "export", source)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["int8_partial", "fp16", "kmeans"])
@pytest.mark.parametrize("level", ["video", "frame"])
def test_compressed_exports_keep_the_small_weights(tmp_path: Path, method: str, level: str) -> None:
    layout = layout_of(level)
    name, hparams = ("resnet_av", {"inner": 128}) if level == "video" else ("dbof", BIG_DBOF)
    source = save_model(tmp_path / "net", name, layout, ("rgb", "audio"), **hparams)
    compress_network(source, tmp_path / "small", method, min_elements=1000, sample_size=2048)  # type: ignore[arg-type]
    plain = export_onnx(source, tmp_path / "plain", layout=layout)
    small = export_onnx(tmp_path / "small", tmp_path / "export", layout=layout)
    assert_matches_torch(tmp_path / "export", tmp_path / "small")
    ratio = small.info["files"]["model.onnx"]["bytes"] / plain.info["files"]["model.onnx"]["bytes"]
    assert ratio < (0.6 if method == "fp16" else 0.35)
    assert small.info["weights_format"] == method


def test_multiclass_models_output_a_softmax(tmp_path: Path) -> None:
    layout = layout_of("video", task="multiclass")
    source = save_model(tmp_path / "net", "mlp", layout, ("rgb", "audio"))
    exported = export_onnx(source, tmp_path / "export", layout=layout)
    assert_matches_torch(tmp_path / "export", source)
    arrays = example_inputs(exported.features, False, 5, 1, seed=3)
    probs = exported.predict(dict(zip(["rgb", "audio"], arrays, strict=True)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_model_json_describes_the_export(tmp_path: Path, frame_store: Dataset) -> None:
    source = save_model(tmp_path / "net", "netvlad", frame_store.layout, ("rgb", "audio"))
    exported = export_onnx(
        source, tmp_path / "export", layout=frame_store.layout, metrics={"gap@20": 0.5}
    )
    info = json.loads((tmp_path / "export" / "model.json").read_text())
    assert info == exported.info
    assert (info["format"], info["format_version"], info["webly_version"]) == (
        "webly-export", 1, "0.1.0",
    )  # fmt: skip
    assert info["level"] == "frame" and info["task"] == "multilabel" and info["opset"] == 17
    assert info["inputs"] == ["rgb", "audio", "lengths"] and info["output"] == "probabilities"
    assert info["class_names"][3] == "class-3" and info["class_descriptions"][3] == "the 3th class"
    assert info["features"][1] == {
        "name": "audio", "dim": 4, "dtype": "uint8", "level": "frame",
        "quant_min": -1.0, "quant_max": 3.0,
    }  # fmt: skip
    assert info["metrics"] == {"gap@20": 0.5} and info["network"]["name"] == "netvlad"
    assert "frames" in info["preprocessing"] and "uint8" in info["preprocessing"]
    assert set(info["files"]) == {"model.onnx", "weights.safetensors"}
    assert len(info["files"]["model.onnx"]["sha256"]) == 64
    weights = (tmp_path / "export" / "weights.safetensors").read_bytes()
    assert weights == (source / "weights.safetensors").read_bytes()  # as stored, no pickle


def test_without_a_store_inputs_are_float32(tmp_path: Path) -> None:
    layout = layout_of("video")
    source = save_model(tmp_path / "net", "logistic", layout, ("rgb", "audio"))
    exported = export_onnx(source, tmp_path / "export")
    assert [s.dtype for s in exported.features] == ["float32", "float32"]
    assert exported.class_names == [str(c) for c in range(6)]
    assert_matches_torch(tmp_path / "export", source)


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    layout = layout_of("video")
    source = save_model(tmp_path / "net", "mlp", layout, ("rgb", "audio"))
    export_onnx(source, tmp_path / "export", layout=layout)
    return tmp_path / "export"


def test_a_truncated_model_is_refused(exported: Path) -> None:
    onnx = exported / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"model.onnx: \d+ bytes, model.json records \d+; the file"):
        load_exported(exported)


def test_a_corrupt_model_is_refused(exported: Path) -> None:
    weights = exported / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(
        DataError, match=r"weights\.safetensors: SHA-256 mismatch; the file is corrupt"
    ):
        load_exported(exported)


def test_a_model_of_another_version_is_refused(exported: Path) -> None:
    info = json.loads((exported / "model.json").read_text())
    info |= {"format_version": 2, "webly_version": "9.0.0"}
    (exported / "model.json").write_text(json.dumps(info))
    with pytest.raises(
        DataError, match=r"written by webly 9\.0\.0 in export format v2; webly 0\.1\.0"
    ):
        load_exported(exported)
    (exported / "model.json").write_text("{not json")
    with pytest.raises(DataError, match=r"model\.json: unreadable"):
        load_exported(exported)
    with pytest.raises(DataError, match=r"no model\.json \(it does not exist"):
        load_exported(exported.parent / "missing")


def test_a_string_format_version_is_said_to_need_an_integer(exported: Path) -> None:
    info = json.loads((exported / "model.json").read_text())
    (exported / "model.json").write_text(json.dumps(info | {"format_version": "1"}))
    with pytest.raises(DataError, match=r"format_version is '1' \(str\); it must be the integer 1"):
        load_exported(exported)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, r"'files' does not list model\.onnx"),
        (None, r"no 'files' key"),
        ([], r"'files' is list"),
        ({"model.onnx": {"bytes": 1}}, r"'files' has no size and SHA-256 for model\.onnx"),
        ("drop weights", r"'files' does not list weights\.safetensors"),
        ("add other", r"'files' lists '\.\./other'"),
    ],
)
def test_the_integrity_check_cannot_be_skipped(exported: Path, files: Any, message: str) -> None:
    info = json.loads((exported / "model.json").read_text())
    if files == "drop weights":
        del info["files"]["weights.safetensors"]
    elif files == "add other":
        info["files"]["../other"] = info["files"]["model.onnx"]
    elif files is None:
        del info["files"]
    else:
        info["files"] = files
    (exported / "model.json").write_text(json.dumps(info))
    weights = exported / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-3] + b"xyz")  # corrupt, but not listed
    with pytest.raises(DataError, match=message) as error:
        load_exported(exported)
    assert "\n" not in str(error.value) and "re-export" in str(error.value)


def test_inputs_of_the_wrong_shape_are_refused(exported: Path) -> None:
    model = load_exported(exported)
    audio = np.zeros((2, 4), np.float16)
    with pytest.raises(DataError, match="'rgb': the model expects 12 values per row, got 10"):
        model.predict({"rgb": np.zeros((2, 10), np.uint8), "audio": audio})
    with pytest.raises(DataError, match="'rgb' is float32; the model reads uint8"):
        model.predict({"rgb": np.zeros((2, 12), np.float32), "audio": audio})
    with pytest.raises(DataError, match="'audio' is missing"):
        model.predict({"rgb": np.zeros((2, 12), np.uint8)})


def test_export_errors_write_nothing(tmp_path: Path, frame_store: Dataset) -> None:
    wide = Layout(features=(FeatureSpec("rgb", 20, "uint8", "frame"),), n_classes=9)
    source = save_model(tmp_path / "net", "dbof", wide, ("rgb",))
    with pytest.raises(DataError, match="'rgb': the model reads 20 frame-level values, the store"):
        export_onnx(source, tmp_path / "export", layout=frame_store.layout)
    with pytest.raises(ConfigError, match="opset is 13; use 17 or later"):
        export_onnx(source, tmp_path / "export", opset=13)
    lgbm = create_model("lgbm", 3, {"x": 4}, n_estimators=2)
    rng = np.random.default_rng(0)
    lgbm.fit(rng.normal(size=(60, 4)), rng.integers(0, 3, 60))
    lgbm.save(tmp_path / "lgbm")
    refusal = "lgbm members are exported as LightGBM text models .*; ONNX export takes networks"
    with pytest.raises(ConfigError, match=refusal) as raised:
        export_onnx(tmp_path / "lgbm", tmp_path / "export")
    assert "\n" not in str(raised.value)
    with pytest.raises(ConfigError, match=r"LightGBM text models .*; compression takes networks"):
        compress_network(tmp_path / "lgbm", tmp_path / "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "lgbm", "net"]
