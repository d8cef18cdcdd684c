"""The model registry: variants are data, not copies.

A backbone builder is registered once under a name and a level::

    @register_model("resnet_av", level="video")
    def resnet_av(input_dims: dict[str, int], *, blocks: int = 1, inner: int = 1024) -> Backbone

and `create_model` composes any backbone with the options every network shares (input feature
subsets, embedding + BNNeck, context gating, the classifier) into a `webly.models.network.Network`.
Non-neural models (level ``gbdt``) are built as they are.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from webly.errors import ConfigError
from webly.validate import check_values, did_you_mean

Level = Literal["video", "frame", "gbdt"]
Builder = TypeVar("Builder", bound=Callable[..., Any])


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder, level and the hyper-parameters it takes (with defaults)."""

    name: str
    level: Level
    builder: Callable[..., Any]
    defaults: Mapping[str, Any]

    @property
    def takes_frames(self) -> bool:
        """Whether the model reads frame sequences ``(B, T, D)`` rather than one vector a row."""
        return self.level == "frame"

    @property
    def trains_with_epochs(self) -> bool:
        """Whether the model is a network trained by epochs (`webly.train.loop.fit`): it takes
        network options and train settings, soft targets, graded sample weights and
        pseudo-labels, and ends in a linear classifier. False for gradient-boosted trees, which
        take their hyper-parameters only, 0/1 labels and 0/1 sample weights."""
        return self.level != "gbdt"


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, level: Level) -> Callable[[Builder], Builder]:
    """Register ``builder`` under ``name``; its keyword-only parameters are its hyper-parameters."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ConfigError(f"model name {name!r} is registered twice; pick another name")
        params = inspect.signature(builder).parameters.values()
        defaults = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        _REGISTRY[name] = ModelEntry(name, level, builder, defaults)
        return builder

    return decorate


def model_entry(name: str) -> ModelEntry:
    """The entry of ``name``; an unknown name lists the known ones."""
    _load_builtin_models()
    if name not in _REGISTRY:
        known = list_models()
        raise ConfigError(
            f"unknown model {name!r}; {did_you_mean(name, known)}known models: {', '.join(known)}"
        )
    return _REGISTRY[name]


def list_models(level: Level | None = None) -> list[str]:
    """Registered model names (of one ``level``), sorted."""
    _load_builtin_models()
    return sorted(n for n, e in _REGISTRY.items() if level is None or e.level == level)


def check_hparams(entry: ModelEntry, hparams: Mapping[str, Any], where: str = "hparams") -> None:
    """Refuse a hyper-parameter the model does not take (naming the nearest and the accepted
    ones) or a value of another type than its builder's annotation; ``where`` starts the
    message (e.g. ``zoo.members[3].hparams``)."""
    unknown = sorted(set(hparams) - set(entry.defaults))
    if unknown:
        accepted = sorted(entry.defaults)
        raise ConfigError(
            f"{where}.{unknown[0]}: model {entry.name!r} takes no such hyper-parameter; "
            f"{did_you_mean(unknown[0], accepted)}it accepts: {', '.join(accepted) or 'none'}"
        )
    check_values(hparams, entry.builder, where)


def _load_builtin_models() -> None:
    """Import the modules that register webly's own models (once)."""
    from webly.models import frame_pooling, frame_sequence, gbdt, video  # noqa: F401
