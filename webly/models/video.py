"""Video-level backbones: one feature vector per video, ``(B, D) -> (B, out_dim)``.

``D`` is the concatenation of the feature groups of ``input_dims`` in their order (e.g. 1024-d
``mean_rgb`` then 128-d ``mean_audio`` for YouTube-8M). `webly.models.network.Network` adds the
options every network shares and the classifier; a backbone never owns a classifier, except
`moe`, whose mixture of experts *is* the classifier (it offers it through ``make_classifier``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from webly.errors import ConfigError
from webly.models._registry import register_model

AUDIO = "audio"
"""resnet_av's audio stream takes the group ``audio`` and every group named ``*_audio`` (the
video-level ``mean_audio`` of a YouTube-8M import of either level)."""
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


class Identity(nn.Module):
    """The input as it is: ``(B, D) -> (B, D)``, ``out_dim = D``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_model("logistic", level="video")
def logistic(input_dims: Mapping[str, int]) -> Identity:
    """Logistic regression: no hidden layer; the network's linear classifier sees the features."""
    return Identity(sum(input_dims.values()))


class MLP(nn.Module):
    """Hidden layers ``Linear -> [BatchNorm] -> activation -> [Dropout]``, ``(B, D) -> (B, H)``."""

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int],
        activation: str,
        dropout: float,
        batchnorm: bool,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers.append(nn.Linear(dim, width))
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            dim = width
        self.layers = nn.Sequential(*layers)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register_model("mlp", level="video")
def mlp(
    input_dims: Mapping[str, int],
    *,
    hidden: Sequence[int] = (1024,),
    activation: str = "relu",
    dropout: float = 0.0,
    batchnorm: bool = False,
) -> MLP:
    """A multi-layer perceptron.

    Parameters
    ----------
    input_dims : feature group -> width, concatenated in this order.
    hidden : widths of the hidden layers, first to last (at least one).
    activation : one of ``relu``, ``gelu``, ``silu``, ``tanh``.
    dropout : drop probability after each hidden layer, in [0, 1).
    batchnorm : BatchNorm after each hidden linear layer.
    """
    hidden = [int(h) for h in hidden]
    if not hidden or min(hidden) < 1:
        raise ConfigError(
            f"mlp hidden is {hidden}; give one or more positive widths, e.g. [1024] "
            "(or use the logistic model for none)"
        )
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"mlp activation is {activation!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    _check_dropout("mlp", dropout)
    return MLP(sum(input_dims.values()), hidden, activation, dropout, batchnorm)


class ResidualLayer(nn.Module):
    """``x + Dropout(ReLU(BN(Linear(x))))``, ``(B, W) -> (B, W)``."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class AVBlock(nn.Module):
    """One residual layer per modality, then a residual layer mixing all modalities.

    ``streams`` is a list of ``(B, inner)`` tensors, one per modality, returned likewise.
    """

    def __init__(self, n_streams: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.own = nn.ModuleList(ResidualLayer(inner, dropout) for _ in range(n_streams))
        self.mix = ResidualLayer(n_streams * inner, dropout)

    def forward(self, streams: list[torch.Tensor]) -> list[torch.Tensor]:
        own = [layer(h) for layer, h in zip(self.own, streams, strict=True)]  # each (B, inner)
        mixed = self.mix(torch.cat(own, dim=-1))  # (B, n_streams * inner)
        return list(mixed.chunk(len(streams), dim=-1))


class ResNetAV(nn.Module):
    """The 2nd-place YouTube-8M video-level network; see `resnet_av`.

    ``(B, D) -> (B, n_streams * inner)``, the streams being the visual and audio modalities
    present among ``input_dims``.
    """

    def __init__(
        self, input_dims: Mapping[str, int], blocks: int, inner: int, dropout: float
    ) -> None:
        super().__init__()
        self.sizes = list(input_dims.values())
        names = list(input_dims)
        audio = [i for i, name in enumerate(names) if _is_audio(name)]
        visual = [i for i in range(len(names)) if i not in audio]
        self.streams = [members for members in (visual, audio) if members]
        self.stems = nn.ModuleList(
            nn.Sequential(
                nn.Linear(sum(self.sizes[i] for i in members), inner),
                nn.BatchNorm1d(inner),
                nn.ReLU(),
                nn.Dropout(dropout),
            )
            for members in self.streams
        )
        self.blocks = nn.ModuleList(
            AVBlock(len(self.streams), inner, dropout) for _ in range(blocks)
        )
        self.out_dim = len(self.streams) * inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.split(self.sizes, dim=-1)  # each (B, D_group)
        streams = [
            stem(torch.cat([groups[i] for i in members], dim=-1))  # (B, inner)
            for stem, members in zip(self.stems, self.streams, strict=True)
        ]
        for block in self.blocks:
            streams = block(streams)
        return torch.cat(streams, dim=-1)  # (B, n_streams * inner)


@register_model("resnet_av", level="video")
def resnet_av(
    input_dims: Mapping[str, int],
    *,
    blocks: int = 1,
    inner: int = 1024,
    dropout: float = 0.3,
) -> ResNetAV:
    """ResNet-like network with separate audio and visual streams (2nd place, YouTube-8M 2018).

    The Samsung AI Center team's best first-level model; they tuned the number of "AV blocks",
    the inner size and the dropout over 90+ variants. Here:

    - a stem per modality, ``Linear -> BN -> ReLU -> Dropout`` to ``inner`` units: one for the
      audio groups (``audio``, ``*_audio``), one for the visual groups (every other group, e.g.
      ``rgb`` or ``mean_rgb``, concatenated);
    - ``blocks`` AV blocks, each a residual layer ``h + Dropout(ReLU(BN(Linear(h))))`` per
      modality, then the same kind of residual layer over the concatenated modalities, which
      lets them exchange information while every stream keeps an identity path;
    - output: the streams concatenated, ``out_dim = n_modalities * inner``.

    With one modality (e.g. ``groups=("mean_audio",)``) the network is a single residual stream.

    Parameters
    ----------
    input_dims : feature group -> width, concatenated in this order.
    blocks : number of AV blocks (0 keeps only the stems).
    inner : width of each modality's stream.
    dropout : drop probability after every layer, in [0, 1).
    """
    if blocks < 0 or inner < 1:
        raise ConfigError(
            f"resnet_av got blocks={blocks}, inner={inner}; use blocks >= 0 and inner >= 1"
        )
    _check_dropout("resnet_av", dropout)
    return ResNetAV(input_dims, blocks, inner, dropout)


def _is_audio(group: str) -> bool:
    return group == AUDIO or group.endswith(f"_{AUDIO}")


class MixtureOfExperts(nn.Module):
    """The YouTube-8M starter code's mixture-of-experts classifier, ``(B, D) -> (B, C)`` logits.

    Per class ``c``, a softmax gate over ``experts + 1`` choices (the last a dummy expert that
    always says "no") weighs ``experts`` logistic experts:
    ``p_c = sum_e gate_ce * sigmoid(expert_ce)``. The output is ``logit(p_c)``, computed in log
    space (``sigmoid(output) == p_c`` without overflow), so the usual losses on logits apply.
    As in the starter code the gates have no bias.
    """

    def __init__(self, dim: int, n_classes: int, experts: int) -> None:
        super().__init__()
        self.n_classes, self.experts = n_classes, experts
        self.gate = nn.Linear(dim, n_classes * (experts + 1), bias=False)
        self.expert = nn.Linear(dim, n_classes * experts)

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Log gate weights ``(B, C, experts + 1)``; they exponentiate to sum 1 per class."""
        logits = self.gate(x).view(-1, self.n_classes, self.experts + 1)  # (B, C, E + 1)
        return F.log_softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_gate = self.gate_weights(x)  # (B, C, E + 1)
        z = self.expert(x).view(-1, self.n_classes, self.experts)  # (B, C, E)
        experts, dummy = log_gate[..., :-1], log_gate[..., -1:]  # (B, C, E), (B, C, 1)
        log_p = torch.logsumexp(experts + F.logsigmoid(z), dim=-1)  # (B, C) log p
        # 1 - p = dummy + sum_e gate_e * (1 - sigmoid(z_e)), as the gates sum to 1
        log_q = torch.logsumexp(torch.cat([dummy, experts + F.logsigmoid(-z)], -1), -1)  # (B, C)
        return log_p - log_q


class MoEInput(Identity):
    """The `moe` backbone: the features as they are, and the mixture of experts as classifier."""

    def __init__(self, dim: int, experts: int) -> None:
        super().__init__(dim)
        self.experts = experts

    def make_classifier(self, width: int, n_classes: int) -> MixtureOfExperts:
        """The classifier `Network` puts on top of this backbone (and its neck)."""
        return MixtureOfExperts(width, n_classes, self.experts)


@register_model("moe", level="video")
def moe(input_dims: Mapping[str, int], *, experts: int = 2) -> MoEInput:
    """Mixture of experts over the video-level features (the YouTube-8M starter code's model).

    Parameters
    ----------
    input_dims : feature group -> width, concatenated in this order.
    experts : logistic experts per class (plus the dummy expert).
    """
    if experts < 1:
        raise ConfigError(f"moe experts is {experts}; use 1 or more (the starter code uses 2)")
    return MoEInput(sum(input_dims.values()), experts)


def _check_dropout(model: str, dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{model} dropout is {dropout}; use a probability in [0, 1)")
