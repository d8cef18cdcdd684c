"""Export-friendly twins of the backbones that torch's ONNX tracer cannot record faithfully.

`torch.onnx.export` (TorchScript exporter) records one run of the model. Three backbones do
something in that run that does not hold for every batch size and number of frames:

- `RecurrentReadout` packs its rows with ``enforce_sorted=False`` and reads the final state;
  the exporter fails on the sort and scatter that inserts, and on a one-layer net whose packed
  outputs go unused. The twin sorts the rows by length itself, packs them sorted (ONNX
  LSTM/GRU with sequence lengths), reads the final states off the outputs and puts the rows
  back in order.
- `TransformerPool`'s ``nn.MultiheadAttention`` bakes the traced batch size into a reshape
  when it gets a key padding mask. The twin computes the same pre-norm encoder layers with
  reshapes whose batch and time stay symbolic.
- `TimeDistributedConv` with sort pooling takes the top ``min(top_k, T)`` frames, a number the
  tracer freezes. The twin appends ``top_k`` padding frames, so there are always at least
  ``top_k`` and the count is the constant ``top_k``; padding is ignored by the backbone, so the
  result is unchanged.

And for speed: `DBoF` and `TimeDistributedConv` run their per-frame layers on the real frames
only (`webly.models.layers.per_frame`), selected by a boolean mask, which the exported graph
gathers and scatters element by element (NonZero and ScatterND over every value: two thirds of
DBoF's time in ONNX Runtime). Their twins select the real frames by row index
(`gathered_per_frame`), which moves whole frames.

Each twin is a subclass of its backbone's class that only overrides ``forward`` and computes
the same function in eval mode; `traceable` gives a copy of a network whose backbone has been
switched to its twin class, so every parameter keeps its name (compressed weights are
substituted by name when a compressed network is exported).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from webly.models.frame_pooling import DBoF
from webly.models.frame_sequence import (
    RecurrentReadout,
    TimeDistributedConv,
    TransformerPool,
    sinusoidal_positions,
)
from webly.models.layers import masked_max, masked_mean, masked_softmax, top_k_pool
from webly.models.network import Network


class SortedRecurrent(RecurrentReadout):
    """`RecurrentReadout` with rows sorted by length before packing; ``(B, T, D), (B, T) ->
    (B, directions * hidden)``."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1).clamp_min(1)  # (B,), a row without frames reads frame 0
        order = torch.argsort(lengths, descending=True)  # (B,)
        restore = torch.argsort(order)  # (B,)
        packed = pack_padded_sequence(
            x.index_select(0, order), lengths.index_select(0, order), batch_first=True
        )
        outputs, _ = self.rnn(packed)
        steps, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.shape[1])
        steps = steps.index_select(0, restore)  # (B, T, dirs * H), zeros on padding
        if self.score is not None:
            weights = masked_softmax(self.score(steps), mask)  # (B, T, 1)
            return (weights * steps).sum(dim=1)  # (B, dirs * H)
        # The final states, read off the outputs (the exporter cannot follow a packed net whose
        # outputs go unused): forward at each row's last real frame, backward at frame 0.
        hidden = self.rnn.hidden_size
        last = (lengths - 1)[:, None, None].expand(-1, 1, hidden)  # (B, 1, H)
        forward = steps[:, :, :hidden].gather(1, last).squeeze(1)  # (B, H)
        if self.directions == 1:
            return forward
        return torch.cat([forward, steps[:, 0, hidden:]], dim=-1)  # (B, 2 * H)


class SymbolicTransformer(TransformerPool):
    """`TransformerPool` computed layer by layer with symbolic shapes; ``(B, T, D), (B, T) ->
    (B, dim)``."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.project(x)  # (B, T, dim)
        if self.positions:
            h = h + sinusoidal_positions(x.shape[1], self.out_dim, x.device).to(h.dtype)
        padding = ~mask[:, None, None, :]  # (B, 1, 1, T), True on padded keys
        for layer in self.encoder.layers:
            h = h + self._attend(layer.self_attn, layer.norm1(h), padding)
            h = h + layer.linear2(layer.activation(layer.linear1(layer.norm2(h))))
        if self.encoder.norm is not None:
            h = self.encoder.norm(h)
        return masked_mean(h, mask)  # (B, dim)

    @staticmethod
    def _attend(
        attn: nn.MultiheadAttention, h: torch.Tensor, padding: torch.Tensor
    ) -> torch.Tensor:
        """Multi-head self-attention of ``h`` ``(B, T, E)`` over its unpadded keys."""
        qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)  # (B, T, 3E)
        q, k, v = (
            part.unflatten(-1, (attn.num_heads, attn.head_dim)).transpose(1, 2)  # (B, H, T, E/H)
            for part in qkv.chunk(3, dim=-1)
        )
        scores = (q @ k.transpose(-2, -1)) * attn.head_dim**-0.5  # (B, H, T, T)
        weights = scores.masked_fill(padding, float("-inf")).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).flatten(2)  # (B, T, E)
        return attn.out_proj(out)


def gathered_per_frame(layer: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`webly.models.layers.per_frame` with row indices instead of a boolean mask.

    ``layer`` ``(N, D) -> (N, C)`` runs on the real frames of ``x`` ``(B, T, D)``, gathered by
    their positions among the ``B * T`` frames; each position then gathers its output row, or a
    zero row for padding -> ``(B, T, C)``. The exported graph moves whole frames (two Gathers),
    where the boolean version finds and scatters every element on its own.
    """
    real = mask.flatten()  # (B * T,)
    frames = layer(x.flatten(0, 1)[real.nonzero().squeeze(1)])  # (N, C)
    frames = F.pad(frames, (0, 0, 0, 1))  # (N + 1, C), a zero row last
    slot = torch.where(real, real.long().cumsum(0) - 1, frames.shape[0] - 1)  # (B * T,)
    # the shape is read off the mask: a convolution's output shape is frozen by the tracer
    return frames[slot].unflatten(0, (mask.shape[0], mask.shape[1]))  # (B, T, C)


class GatheredDBoF(DBoF):
    """`DBoF` with `gathered_per_frame`; ``(B, T, D), (B, T) -> (B, hidden)``."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        frames = gathered_per_frame(self.frames, x, mask)  # (B, T, cluster_size)
        return self.hidden(self.pool(frames, mask))


class GatheredTimeDistributedConv(TimeDistributedConv):
    """`TimeDistributedConv` with `gathered_per_frame`, fed ``top_k`` extra padding frames for
    sort pooling; ``(B, T, D), (B, T) -> (B, hidden)``."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "sort":
            x = F.pad(x, (0, 0, 0, self.top_k))  # (B, T + k, D), zeros
            mask = F.pad(mask, (0, self.top_k), value=False)  # (B, T + k)
        h = x * mask.unsqueeze(-1)  # (B, T, D)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = conv(h.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
            h = gathered_per_frame(norm, h, mask)  # (B, T, C), zeros on padding
        if self.pooling == "max":
            return self.hidden(masked_max(h, mask))  # (B, hidden)
        return self.hidden(top_k_pool(h, mask, self.top_k).flatten(1))  # (B, hidden)


def traceable(network: Network) -> Network:
    """A copy of ``network`` in eval mode whose backbone runs as its twin, when it has one.

    The copy's backbone object is kept and only its class switched to the twin subclass (which
    adds no state), so the module tree and every parameter name stay those of ``network``.
    """
    twin = copy.deepcopy(network).eval()
    backbone = twin.backbone
    if type(backbone) is RecurrentReadout:
        backbone.__class__ = SortedRecurrent
    elif type(backbone) is TransformerPool:
        backbone.__class__ = SymbolicTransformer
    elif type(backbone) is TimeDistributedConv:
        backbone.__class__ = GatheredTimeDistributedConv
    elif type(backbone) is DBoF:
        backbone.__class__ = GatheredDBoF
    return twin
