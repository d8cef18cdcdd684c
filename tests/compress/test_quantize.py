"""Weight compression: the quantizers' error bounds, the partial threshold, the safetensors
format, compressed network folders and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.deploy.conftest import save_model
from webly.compress import compress_network, quantize_state
from webly.compress.quantize import REPORT_FILE, kmeans_codes, uniform_codes
from webly.data import Layout
from webly.deploy.export import torch_probabilities
from webly.errors import ConfigError, DataError
from webly.models import load_network
from webly.models.quantized import QUANTIZED_FILE, QuantizedState, is_compressed, open_network


def normal(*shape: int) -> torch.Tensor:
    """Seeded standard normal values of ``shape``."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(len(shape)))


def test_uniform_codes_are_min_max_levels_within_half_a_step() -> None:
    x = normal(300, 70)
    codes, table = uniform_codes(x, levels=256)
    assert codes.dtype == torch.uint8 and codes.shape == x.shape and table.shape == (256,)
    assert table[0] == x.min() and torch.isclose(table[-1], x.max())
    step = float(x.max() - x.min()) / 255
    assert float((table[codes.long()] - x).abs().max()) <= step / 2 + 1e-6
    few, few_table = uniform_codes(x, levels=16)
    assert int(few.max()) == 15 and few_table.shape == (16,)
    constant, constant_table = uniform_codes(torch.full((5, 5), 0.25))
    assert torch.equal(constant_table[constant.long()], torch.full((5, 5), 0.25))


def test_kmeans_codebook_beats_uniform_levels_on_heavy_tails() -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_t(2.0, 40_000) * 0.01)  # heavy-tailed weights
    codes, table = kmeans_codes(x, clusters=64, sample_size=20_000, seed=0)
    assert codes.dtype == torch.uint8 and table.numel() <= 64
    assert torch.all(table[1:] > table[:-1])  # increasing centroids
    kmeans_rms = float((table[codes.long()] - x).pow(2).mean().sqrt())
    u_codes, u_table = uniform_codes(x, levels=64)
    uniform_rms = float((u_table[u_codes.long()] - x).pow(2).mean().sqrt())
    assert kmeans_rms < uniform_rms / 3
    exact_codes, exact_table = kmeans_codes(torch.tensor([0.5, -1.0, 0.5, 2.0]), clusters=8)
    assert exact_table.tolist() == [-1.0, 0.5, 2.0]
    assert exact_table[exact_codes.long()].tolist() == [0.5, -1.0, 0.5, 2.0]


def test_only_tensors_above_the_threshold_are_compressed() -> None:
    state = {
        "big": normal(200, 100),  # 20,000 elements
        "edge": normal(170, 100),  # 17,000: not more than the threshold
        "small": normal(10),
        "count": torch.tensor(7),
    }
    for method, kind in (("int8_partial", "int8"), ("fp16", "fp16"), ("kmeans", "kmeans")):
        quantized, report = quantize_state(state, method, sample_size=4096)  # type: ignore[arg-type]
        assert [r.method for r in report] == [kind, "fp32", "fp32", "as is"]
        assert set(quantized.tables) == ({"big"} if kind != "fp16" else set())
        restored = quantized.dequantize()
        for name in ("edge", "small", "count"):
            assert torch.equal(restored[name], state[name])
        assert restored["big"].dtype == torch.float32 and restored["big"].shape == (200, 100)
        big = report[0]
        assert big.bytes_before == 80_000
        assert big.bytes_after == (40_000 if kind == "fp16" else 20_000 + 4 * 256)
        error = restored["big"] - state["big"]
        assert big.max_abs_error == pytest.approx(float(error.abs().max()), rel=1e-5)
        rel = float(error.pow(2).mean().sqrt() / state["big"].pow(2).mean().sqrt())
        assert big.rel_rms_error == pytest.approx(rel, rel=1e-5)
        assert 0 < big.rel_rms_error < (1e-3 if kind == "fp16" else 2e-2)
    everything, _ = quantize_state(state, "int8_partial", min_elements=0)
    assert set(everything.tables) == {"big", "edge", "small"}


def test_bad_options_are_refused() -> None:
    state = {"w": normal(10)}
    with pytest.raises(ConfigError, match="unknown; use one of"):
        quantize_state(state, "int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="levels is 300"):
        quantize_state(state, levels=300)
    with pytest.raises(ConfigError, match="min_elements is -1"):
        quantize_state(state, min_elements=-1)


def test_state_round_trips_through_safetensors_without_pickle(tmp_path: Path) -> None:
    state = {"w": normal(300, 100), "b": normal(300), "n": torch.tensor(3)}
    quantized, _ = quantize_state(state, "int8_partial", min_elements=1000)
    quantized.save(tmp_path / "q.safetensors")
    raw = (tmp_path / "q.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert header["__metadata__"]["format"] == "webly-quantized-state"
    assert header["w"]["dtype"] == "U8" and header["w#table"]["shape"] == [256]
    assert b"pickle" not in raw and not raw.startswith(b"\x80")
    loaded = QuantizedState.load(tmp_path / "q.safetensors")
    for name, tensor in quantized.dequantize().items():
        assert torch.equal(loaded.dequantize()[name], tensor)
    assert loaded.method == "int8_partial" and loaded.min_elements == 1000
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"cut\.safetensors: unreadable quantized weights"):
        QuantizedState.load(tmp_path / "cut.safetensors")


def test_compressed_network_loads_and_predicts_like_the_original(
    tmp_path: Path, video_layout: Layout
) -> None:
    source = save_model(tmp_path / "net", "resnet_av", video_layout, ("rgb", "audio"), inner=256)
    result = compress_network(source, tmp_path / "int8")
    assert sorted(p.name for p in (tmp_path / "int8").iterdir()) == sorted(
        ["model.json", QUANTIZED_FILE, REPORT_FILE]
    )
    assert is_compressed(tmp_path / "int8") and not is_compressed(source)
    assert 0.24 < result.ratio < 0.30  # the big tensors dominate: about a quarter
    assert json.loads((tmp_path / "int8" / REPORT_FILE).read_text())["method"] == "int8_partial"
    assert {t.method for t in result.tensors} == {"int8", "fp32", "as is"}
    original, compressed = open_network(source), open_network(tmp_path / "int8")
    assert not compressed.training
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (64, 16), dtype=np.uint8), rng.normal(size=(64, 4))]
    specs = video_layout.features
    want = torch_probabilities(original, specs, arrays, None, multilabel=True)
    got = torch_probabilities(compressed, specs, arrays, None, multilabel=True)
    assert 0 < np.abs(got - want).max() < 0.02
    with pytest.raises(DataError, match="not a saved webly model"):
        load_network(tmp_path / "int8")  # plain loading needs open_network; see the README


def test_compress_errors_write_nothing(tmp_path: Path, video_layout: Layout) -> None:
    source = save_model(tmp_path / "net", "mlp", video_layout, ("rgb", "audio"))
    with pytest.raises(ConfigError, match="unknown"):
        compress_network(source, tmp_path / "out", "int4")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="not a saved webly model"):
        compress_network(tmp_path / "nowhere", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]
    compress_network(source, tmp_path / "out", "fp16")
    with pytest.raises(DataError, match="already compressed"):
        compress_network(tmp_path / "out", tmp_path / "again")
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        compress_network(source, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net", "out"]
