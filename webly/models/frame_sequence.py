"""Order-aware frame-level backbones: recurrent nets, a transformer encoder, time-distributed
convolutions.

Same contract as `webly.models.frame_pooling`: ``forward(x (B, T, D), mask (B, T)) ->
(B, out_dim)`` with padded frames ignored (packed sequences for the recurrent nets, a key
padding mask for the transformer, zeroed padding for the convolutions).
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from webly.errors import ConfigError
from webly.models._registry import register_model
from webly.models.frame_pooling import check_choice, check_positive, hidden_layer
from webly.models.layers import masked_max, masked_mean, masked_softmax, per_frame, top_k_pool


class RecurrentReadout(nn.Module):
    """An LSTM or GRU (Hochreiter & Schmidhuber 1997; Cho et al. 2014) over the real frames
    (packed sequences), read out as its state at each row's last real frame — for a
    bidirectional net the forward state there and the backward state at the first frame — or
    as an attention-weighted mean of its outputs over real frames ("LSTM-Bi-Attention",
    Ostyakov et al. 2018). ``(B, T, D) -> (B, directions * hidden)``. A row without real
    frames is read from its first frame.
    """

    def __init__(
        self, cell: str, dim: int, hidden: int, layers: int, bidirectional: bool, readout: str
    ) -> None:
        super().__init__()
        rnn_class = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_class(
            dim, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=True
        )
        self.directions = 2 if bidirectional else 1
        self.out_dim = self.directions * hidden
        self.score = nn.Linear(self.out_dim, 1) if readout == "attention" else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1).clamp_min(1).cpu()  # (B,)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        outputs, state = self.rnn(packed)  # packed (N, dirs * H); (layers * dirs, B, H)
        if self.score is None:
            final = state[0] if isinstance(state, tuple) else state  # (layers * dirs, B, H)
            last_layer = final[-self.directions :]  # (dirs, B, H)
            return last_layer.transpose(0, 1).flatten(1)  # (B, dirs * H)
        steps, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.shape[1])
        weights = masked_softmax(self.score(steps), mask)  # (B, T, 1)
        return (weights * steps).sum(dim=1)  # (B, dirs * H)


def _recurrent(
    cell: str,
    input_dims: dict[str, int],
    hidden: int,
    layers: int,
    bidirectional: bool,
    readout: str,
) -> RecurrentReadout:
    """Check the hyper-parameters of a recurrent backbone and build it."""
    check_positive(cell, hidden=hidden, layers=layers)
    check_choice(cell, "readout", readout, ("last", "attention"))
    return RecurrentReadout(cell, sum(input_dims.values()), hidden, layers, bidirectional, readout)


@register_model("lstm", level="frame")
def lstm(
    input_dims: dict[str, int],
    *,
    hidden: int = 128,
    layers: int = 1,
    bidirectional: bool = False,
    readout: str = "last",
) -> RecurrentReadout:
    """LSTM over the frames; ``readout`` is ``"last"`` or ``"attention"``."""
    return _recurrent("lstm", input_dims, hidden, layers, bidirectional, readout)


@register_model("gru", level="frame")
def gru(
    input_dims: dict[str, int],
    *,
    hidden: int = 128,
    layers: int = 1,
    bidirectional: bool = False,
    readout: str = "last",
) -> RecurrentReadout:
    """GRU over the frames; ``readout`` is ``"last"`` or ``"attention"``."""
    return _recurrent("gru", input_dims, hidden, layers, bidirectional, readout)


def sinusoidal_positions(n_frames: int, dim: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal position encodings (Vaswani et al. 2017) ``(T, dim)``, ``dim`` even."""
    position = torch.arange(n_frames, device=device, dtype=torch.float32)[:, None]  # (T, 1)
    rate = torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(10000.0) / dim))
    angle = position * rate[None, :]  # (T, dim / 2)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)  # (T, dim)


class TransformerPool(nn.Module):
    """Transformer encoder over the frames (Vaswani et al. 2017; the "self-attention" model of
    Ostyakov et al. 2018), padded frames hidden by a key padding mask, mean-pooled over real
    frames: ``(B, T, D) -> (B, dim)``. Pre-norm layers; positions are optional because video
    labels barely depend on frame order.
    """

    def __init__(
        self, in_dim: int, dim: int, heads: int, layers: int, dropout: float, positions: bool
    ) -> None:
        super().__init__()
        self.project = nn.Linear(in_dim, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        self.positions = positions
        self.out_dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.project(x)  # (B, T, dim)
        if self.positions:
            h = h + sinusoidal_positions(x.shape[1], self.out_dim, x.device).to(h.dtype)
        h = self.encoder(h, src_key_padding_mask=~mask)  # (B, T, dim)
        return masked_mean(h, mask)  # (B, dim)


@register_model("transformer", level="frame")
def transformer(
    input_dims: dict[str, int],
    *,
    dim: int = 128,
    heads: int = 4,
    layers: int = 2,
    dropout: float = 0.1,
    positions: bool = False,
) -> TransformerPool:
    """Transformer encoder + masked mean pooling; ``dim`` must divide into ``heads``."""
    check_positive("transformer", dim=dim, heads=heads, layers=layers)
    if dim % heads or (positions and dim % 2):
        raise ConfigError(
            f"transformer: dim is {dim} with heads {heads}; use a dim divisible by heads "
            "(and even with positions)"
        )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"transformer: dropout is {dropout}; use a value in [0, 1)")
    return TransformerPool(sum(input_dims.values()), dim, heads, layers, dropout, positions)


class TimeDistributedConv(nn.Module):
    """Time-distributed 1-d convolutions (kernel 1: dense layers) with BatchNorm + ReLU, then
    max pooling or sort pooling (the top ``top_k`` values of each channel) over real frames,
    then a hidden layer (Ostyakov et al. 2018: "Time Distributed Convolutions", "... Dense
    Sorting", "... Dense Max Pooling"). ``(B, T, D) -> (B, hidden)``.

    Padded frames are zeroed before every convolution, so a row's real frames see exactly the
    zero padding they would see unpadded.
    """

    def __init__(
        self,
        dim: int,
        channels: int,
        kernel: int,
        layers: int,
        pooling: str,
        top_k: int,
        hidden: int,
    ) -> None:
        super().__init__()
        widths = [dim] + [channels] * layers
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, kernel, padding=kernel // 2) for a, b in pairwise(widths)
        )
        self.norms = nn.ModuleList(
            nn.Sequential(nn.BatchNorm1d(channels), nn.ReLU()) for _ in range(layers)
        )
        self.top_k = top_k if pooling == "sort" else 1
        self.pooling = pooling
        self.hidden = hidden_layer(self.top_k * channels, hidden)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = x * mask.unsqueeze(-1)  # (B, T, D)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = conv(h.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
            h = per_frame(norm, h, mask)  # (B, T, C), zeros on padding
        if self.pooling == "max":
            pooled = masked_max(h, mask)  # (B, C)
        else:
            pooled = top_k_pool(h, mask, self.top_k).flatten(1)  # (B, k * C)
        return self.hidden(pooled)


@register_model("td_conv", level="frame")
def td_conv(
    input_dims: dict[str, int],
    *,
    channels: int = 256,
    kernel: int = 3,
    layers: int = 2,
    pooling: str = "max",
    top_k: int = 4,
    hidden: int = 256,
) -> TimeDistributedConv:
    """Time-distributed conv layers + ``"max"`` or ``"sort"`` pooling (``top_k`` for sort)."""
    check_positive(
        "td_conv", channels=channels, kernel=kernel, layers=layers, top_k=top_k, hidden=hidden
    )
    check_choice("td_conv", "pooling", pooling, ("max", "sort"))
    if kernel % 2 == 0:
        raise ConfigError(f"td_conv: kernel is {kernel}; use an odd kernel so time stays centred")
    return TimeDistributedConv(
        sum(input_dims.values()), channels, kernel, layers, pooling, top_k, hidden
    )
