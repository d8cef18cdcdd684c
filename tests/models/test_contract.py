"""Contract tests over the registry: every registered model builds, trains and round-trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from webly.errors import ConfigError
from webly.models import (
    Network,
    create_model,
    list_models,
    load_network,
    model_entry,
    register_model,
    save_network,
)

N_CLASSES = 7
INPUT_DIMS = {"rgb": 24, "audio": 8}
WIDTH = sum(INPUT_DIMS.values())
LENGTHS = [6, 3, 1, 5]  # frames a row, one row of a single frame
# Smaller than the defaults, to keep the tests fast; models not named use their defaults.
SMALL: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": (16,)},
    "resnet_av": {"inner": 16},
    "lgbm": {"n_estimators": 5, "num_leaves": 4, "min_child_samples": 3},
}
NEURAL = [n for n in list_models() if model_entry(n).trains_with_epochs]
FRAME = list_models("frame")
OPTIONS: dict[str, dict[str, Any]] = {
    "audio_only": {"groups": ("audio",)},
    "subsample": {"feature_subsample": 0.5},
    "bnneck": {"embedding": 16, "bnneck": True},
    "gating": {"context_gating": True},
}


def build(name: str, **options: Any) -> Network:
    torch.manual_seed(0)
    model = create_model(name, N_CLASSES, INPUT_DIMS, **options, **SMALL.get(name, {}))
    assert isinstance(model, Network)
    return model


def batch(level: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A small input: ``(B, D)``, or ``(B, T, D)`` zero-padded frames and ``(B,)`` lengths."""
    generator = torch.Generator().manual_seed(1)
    if level == "video":
        return torch.randn(len(LENGTHS), WIDTH, generator=generator), None
    lengths = torch.tensor(LENGTHS)
    x = torch.randn(len(LENGTHS), max(LENGTHS), WIDTH, generator=generator)  # (B, T, D)
    real = torch.arange(max(LENGTHS))[None, :] < lengths[:, None]  # (B, T)
    return x * real.unsqueeze(-1), lengths


def forward_backward(model: Network) -> None:
    x, lengths = batch(model.level)
    model.train()
    logits = model(x, lengths)  # (B, C)
    assert logits.shape == (len(LENGTHS), N_CLASSES)
    assert torch.isfinite(logits).all()
    targets = torch.zeros_like(logits)
    targets[:, 0] = 1.0
    torch.nn.functional.binary_cross_entropy_with_logits(logits, targets).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", NEURAL)
def test_forward_backward(name: str) -> None:
    forward_backward(build(name))


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("name", NEURAL)
def test_network_options(name: str, option: str) -> None:
    forward_backward(build(name, **OPTIONS[option]))


@pytest.mark.parametrize("name", FRAME)
def test_eval_output_ignores_padding(name: str) -> None:
    model = build(name).eval()
    x, lengths = batch("frame")
    padded = torch.cat([x, torch.zeros(x.shape[0], 4, x.shape[2])], dim=1)  # (B, T + 4, D)
    with torch.no_grad():
        torch.testing.assert_close(model(padded, lengths), model(x, lengths))


@pytest.mark.parametrize("name", NEURAL)
def test_save_load_round_trip(name: str, tmp_path: Path) -> None:
    model = build(name, embedding=16, bnneck=True)
    x, lengths = batch(model.level)
    model.train()
    with torch.no_grad():
        model(x, lengths)  # moves BatchNorm running statistics off their initial values
    model.eval()
    save_network(model, tmp_path)
    loaded = load_network(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x, lengths), model(x, lengths))


@pytest.mark.parametrize("name", list_models("gbdt"))
def test_gbdt_fit_predict_save_load(name: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, WIDTH)).astype(np.float32)
    classes = x[:, :N_CLASSES].argmax(axis=1)
    labels = sp.csr_matrix((np.ones(70), (np.arange(70), classes)), shape=(70, N_CLASSES))
    model = create_model(name, N_CLASSES, INPUT_DIMS, **SMALL.get(name, {}))
    model.fit(x, labels)
    scores = model.predict(x)
    assert scores.shape == (70, N_CLASSES) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    model.save(tmp_path)
    assert np.array_equal(type(model).load(tmp_path).predict(x), scores)


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown model 'resnet'; did you mean 'resnet_av'\? known models: .*resnet_av",
    ):
        create_model("resnet", N_CLASSES, INPUT_DIMS)


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("mlp", "activation, batchnorm, dropout, hidden"), ("lgbm", "early_stopping_rounds")],
)
def test_unknown_hyper_parameter_names_accepted_ones(name: str, accepted: str) -> None:
    with pytest.raises(
        ConfigError,
        match=f"hparams.widht: model .* takes no such hyper-parameter; it accepts: .*{accepted}",
    ):
        create_model(name, N_CLASSES, INPUT_DIMS, widht=3)


def test_duplicate_registration_raises() -> None:
    assert "logistic" in list_models()
    with pytest.raises(ConfigError, match="'logistic' is registered twice"):
        register_model("logistic", level="video")(lambda input_dims: None)


def test_list_models_by_level() -> None:
    video = list_models("video")
    assert {"logistic", "mlp", "moe", "resnet_av"} <= set(video)
    assert "lgbm" in list_models("gbdt")
    assert sorted([*video, *list_models("frame"), *list_models("gbdt")]) == list_models()
