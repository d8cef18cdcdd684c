"""EMA of weights: the averaging rule, warm-up, swap and checkpoint state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from webly.errors import ConfigError
from webly.train import EMA


def _model(value: float) -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
    return model


def test_update_without_warmup() -> None:
    model = _model(0.0)
    ema = EMA(model, decay=0.9, warmup=False)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    ema.update(model)
    ema.update(model)
    # 0 -> 0.1 -> 0.19
    assert torch.allclose(ema.shadow["0.weight"], torch.full((1, 2), 0.19))
    assert ema.shadow["1.num_batches_tracked"].dtype == torch.int64


def test_warmup_decay() -> None:
    ema = EMA(_model(0.0), decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)
    ema.updates = 10_000
    assert ema.current_decay() == 0.999


def test_swap_restores_own_weights_and_state_round_trip() -> None:
    model = _model(0.0)
    ema = EMA(model, decay=0.5, warmup=False)
    with torch.no_grad():
        model[0].weight.fill_(2.0)
    ema.update(model)
    with ema.swap(model):
        assert torch.allclose(model[0].weight, torch.ones(1, 2))
    assert torch.allclose(model[0].weight, torch.full((1, 2), 2.0))
    other = EMA(_model(5.0), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and other.decay == 0.5 and not other.warmup
    assert torch.equal(other.shadow["0.weight"], ema.shadow["0.weight"])
    ema.copy_to(model)
    assert torch.allclose(model[0].weight, torch.ones(1, 2))


def test_bad_decay() -> None:
    with pytest.raises(ConfigError, match=r"ema decay is 1\.0"):
        EMA(_model(0.0), decay=1.0)
