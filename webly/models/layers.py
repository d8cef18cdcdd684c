"""Layers shared by the zoo's networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ContextGating(nn.Module):
    """Context gating (Miech et al., YouTube-8M 2017 winner): ``y = x * sigmoid(W x + b)``.

    Re-weights each feature by a learned function of all of them; ``(B, D) -> (B, D)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.gate(x))


def frame_mask(lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
    """``(B,)`` frame counts -> ``(B, T)`` bool mask, True on real (not padded) frames."""
    return torch.arange(n_frames, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of ``(B, T, D)`` where ``mask`` ``(B, T)`` is True -> ``(B, D)``."""
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over time of ``(B, T, D)`` where ``mask`` ``(B, T)`` is True -> ``(B, D)``."""
    return x.masked_fill(~mask.unsqueeze(-1), torch.finfo(x.dtype).min).amax(dim=1)


def per_frame(layer: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Apply ``layer`` ``(N, D) -> (N, C)`` to the real frames of ``x`` ``(B, T, D)`` only.

    Padded frames come out as zeros and never reach ``layer``, so a BatchNorm inside it takes
    its statistics from real frames alone. Returns ``(B, T, C)``.
    """
    frames = layer(x[mask])  # (N, C), N real frames
    out = frames.new_zeros(*mask.shape, frames.shape[-1])  # (B, T, C)
    out[mask] = frames  # (B, T, C)
    return out


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over time of ``scores`` ``(B, T, H)`` restricted to real frames -> ``(B, T, H)``."""
    fill = torch.finfo(scores.dtype).min
    return scores.masked_fill(~mask.unsqueeze(-1), fill).softmax(dim=1)  # (B, T, H)


def top_k_pool(x: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` largest values over real frames of each channel, sorted descending.

    ``x`` ``(B, T, C)`` -> ``(B, k, C)``; a row with fewer than ``k`` real frames has its
    missing places filled with zeros (Ostyakov et al. 2018, "Time Distributed Dense Sorting").
    """
    lengths = mask.sum(dim=1)  # (B,)
    kept = min(k, x.shape[1])
    fill = torch.finfo(x.dtype).min
    top = x.masked_fill(~mask.unsqueeze(-1), fill).topk(kept, dim=1).values  # (B, kept, C)
    missing = torch.arange(kept, device=x.device)[None, :] >= lengths[:, None]  # (B, kept)
    top = top.masked_fill(missing.unsqueeze(-1), 0.0)  # (B, kept, C)
    return F.pad(top, (0, 0, 0, k - kept))  # (B, k, C)
