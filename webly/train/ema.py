"""An exponential moving average (EMA) of a model's weights, used for evaluation and export."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from webly.errors import ConfigError


class EMA:
    """A shadow copy of ``model.state_dict()`` updated as ``shadow = d * shadow + (1 - d) * w``.

    Floating-point entries (weights and BatchNorm running statistics) are averaged; the others
    (e.g. ``num_batches_tracked``) are copied. With ``warmup`` the decay after ``n`` updates is
    ``min(decay, (1 + n) / (10 + n))`` (TensorFlow's ``ExponentialMovingAverage`` with
    ``num_updates``), so early random weights fade quickly.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"ema decay is {decay}; use a value in (0, 1), e.g. 0.999")
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """The decay the next `update` uses."""
        if not self.warmup:
            return self.decay
        n = self.updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow towards the model's current weights."""
        d = self.current_decay()
        for key, value in model.state_dict().items():
            shadow = self.shadow[key]
            if shadow.is_floating_point():
                shadow.mul_(d).add_(value.detach(), alpha=1.0 - d)
            else:
                shadow.copy_(value)
        self.updates += 1

    @contextlib.contextmanager
    def swap(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block ``model`` holds the EMA weights; its own are restored after."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(own)

    def copy_to(self, model: nn.Module) -> None:
        """Load the EMA weights into ``model`` for good (e.g. before export)."""
        model.load_state_dict(self.shadow)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "warmup": self.warmup, "updates": self.updates,
                "shadow": self.shadow}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.warmup = float(state["decay"]), bool(state["warmup"])
        self.updates = int(state["updates"])
        for key, value in state["shadow"].items():
            self.shadow[key].copy_(value)
