"""The parts of a `webly.models.Network` the long-tail methods touch: its final linear
classifier (``network.classifier``, ``(B, width) -> (B, n_classes)``) and its input groups."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from webly.errors import ConfigError


def linear_classifier(network: nn.Module) -> nn.Linear:
    """``network.classifier`` when it is an ``nn.Linear`` with weight ``(n_classes, width)``.

    A backbone may bring its own output layer (``moe``'s mixture of experts); its weights are
    not one vector per class, so tau-normalisation and cRT refuse it.
    """
    classifier = getattr(network, "classifier", None)
    if not isinstance(classifier, nn.Linear):
        name = getattr(network, "config", {}).get("name", type(network).__name__)
        found = "no classifier" if classifier is None else f"a {type(classifier).__name__}"
        raise ConfigError(
            f"model {name!r} has {found} as its final classifier, not a linear layer; "
            "tau-normalization and classifier re-training need one (use a model other than moe)"
        )
    return classifier


def network_groups(network: nn.Module, groups: Sequence[str] | None) -> tuple[str, ...]:
    """The feature groups to feed ``network``: ``groups`` if given, else every group of its
    ``config["input_dims"]``, in order (the concatenation the network was built for)."""
    if groups is not None:
        return tuple(groups)
    dims = getattr(network, "config", {}).get("input_dims")
    if not dims:
        raise ConfigError(
            f"cannot tell which feature groups {type(network).__name__} reads; pass groups="
        )
    return tuple(dims)
