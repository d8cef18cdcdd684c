"""Orderless frame-level backbones: bags of frames, VLAD / Fisher-vector and attention pooling.

Every frame-level builder (here and in `webly.models.frame_sequence`) takes ``input_dims``
(feature group -> width; the frames are their concatenation, ``D = sum(input_dims.values())``)
and returns a module with ``out_dim`` whose ``forward(x (B, T, D), mask (B, T) bool, True on
real frames) -> (B, out_dim)`` ignores padded frames: they enter no pooling, softmax,
normalisation statistic or recurrence, so in eval mode a row gives the same output however
much it is padded. The masked helpers shared by both modules live here.

The families are those of the YouTube-8M winners (Miech et al. 2017, "Learnable pooling with
Context Gating for video classification"; Skalic et al. 2018; Ostyakov et al. 2018, 2nd place).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from webly.errors import ConfigError
from webly.models._registry import register_model
from webly.models.layers import (
    masked_max,
    masked_mean,
    masked_softmax,
    per_frame,
)


def check_positive(model: str, **values: int) -> None:
    """Refuse a size hyper-parameter below 1."""
    for key, value in values.items():
        if value < 1:
            raise ConfigError(f"{model}: {key} is {value}; it must be >= 1")


def check_choice(model: str, key: str, value: str, options: Sequence[str]) -> None:
    """Refuse a hyper-parameter value outside ``options``."""
    if value not in options:
        raise ConfigError(f"{model}: {key} is {value!r}; choose one of {', '.join(options)}")


def hidden_layer(in_dim: int, out_dim: int) -> nn.Sequential:
    """The fully connected layer after pooling: Linear + BatchNorm + ReLU."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU())


class DBoF(nn.Module):
    """Deep bag of frames (Abu-El-Haija et al. 2016, "YouTube-8M", the starter code's DBoF).

    Each real frame is projected to ``cluster_size`` units (Linear + BatchNorm + ReLU), the
    projections are max- or mean-pooled over time, then one hidden layer.
    """

    def __init__(self, dim: int, cluster_size: int, hidden: int, pooling: str) -> None:
        super().__init__()
        self.frames = nn.Sequential(
            nn.Linear(dim, cluster_size), nn.BatchNorm1d(cluster_size), nn.ReLU()
        )
        self.pool = masked_max if pooling == "max" else masked_mean
        self.hidden = hidden_layer(cluster_size, hidden)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        frames = per_frame(self.frames, x, mask)  # (B, T, cluster_size)
        return self.hidden(self.pool(frames, mask))


@register_model("dbof", level="frame")
def dbof(
    input_dims: dict[str, int], *, cluster_size: int = 1024, hidden: int = 256, pooling: str = "max"
) -> DBoF:
    """Deep bag of frames; ``pooling`` is ``"max"`` or ``"mean"``."""
    check_positive("dbof", cluster_size=cluster_size, hidden=hidden)
    check_choice("dbof", "pooling", pooling, ("max", "mean"))
    return DBoF(sum(input_dims.values()), cluster_size, hidden, pooling)


class NetVLAD(nn.Module):
    """Learnable VLAD pooling (Arandjelović et al. 2016, "NetVLAD"; Miech et al. 2017).

    Each frame is softly assigned to ``clusters`` learned centres; the assignment-weighted
    residuals to each centre are summed over real frames, L2-normalised per cluster
    (intra-normalisation) and then as a whole: ``(B, T, D) -> (B, clusters * D)``.
    """

    def __init__(self, dim: int, clusters: int) -> None:
        super().__init__()
        self.assign_logits = nn.Linear(dim, clusters)
        self.centers = nn.Parameter(torch.randn(clusters, dim) / math.sqrt(dim))  # (K, D)
        self.out_dim = clusters * dim

    def assignment(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Soft assignment ``(B, T, K)``: sums to 1 over clusters on real frames, 0 on padding."""
        weights = self.assign_logits(x).softmax(dim=-1)  # (B, T, K)
        return weights * mask.unsqueeze(-1)  # (B, T, K)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = self.assignment(x, mask)  # (B, T, K)
        mass = weights.sum(dim=1).unsqueeze(-1)  # (B, K, 1)
        vlad = weights.transpose(1, 2) @ x - mass * self.centers  # (B, K, D)
        vlad = F.normalize(vlad, dim=-1)  # (B, K, D)
        return F.normalize(vlad.flatten(1), dim=-1)  # (B, K * D)


class PooledHead(nn.Module):
    """A pooling layer followed by the hidden layer.

    Context gating of the hidden layer (Miech et al.) is the network option
    ``create_model(..., context_gating=True)``, which gates exactly this output.
    """

    def __init__(self, pool: NetVLAD | NetFV | NeXtVLAD | AttentionPool, hidden: int) -> None:
        super().__init__()
        self.pool = pool
        self.hidden = hidden_layer(pool.out_dim, hidden)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x, mask)  # (B, pool.out_dim)
        return self.hidden(pooled)


@register_model("netvlad", level="frame")
def netvlad(
    input_dims: dict[str, int],
    *,
    clusters: int = 16,
    hidden: int = 256,
) -> PooledHead:
    """NetVLAD pooling + hidden layer (gate it with the network option ``context_gating``)."""
    check_positive("netvlad", clusters=clusters, hidden=hidden)
    return PooledHead(NetVLAD(sum(input_dims.values()), clusters), hidden)


class NetFV(nn.Module):
    """Learnable Fisher-vector pooling (Miech et al. 2017, "NetFV").

    Soft assignment to ``clusters`` Gaussians with learned means and diagonal scales; the
    first-order (``sum a (x - c) / s``) and second-order (``sum a ((x - c)^2 / s^2 - 1)``)
    statistics over real frames are intra-normalised, concatenated and L2-normalised:
    ``(B, T, D) -> (B, 2 * clusters * D)``.
    """

    def __init__(self, dim: int, clusters: int) -> None:
        super().__init__()
        self.assign_logits = nn.Linear(dim, clusters)
        self.centers = nn.Parameter(torch.randn(clusters, dim) / math.sqrt(dim))  # (K, D)
        self.log_scale = nn.Parameter(torch.zeros(clusters, dim))  # (K, D)
        self.out_dim = 2 * clusters * dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = self.assign_logits(x).softmax(dim=-1) * mask.unsqueeze(-1)  # (B, T, K)
        mass = weights.sum(dim=1).unsqueeze(-1)  # (B, K, 1)
        moment1 = weights.transpose(1, 2) @ x  # (B, K, D)
        moment2 = weights.transpose(1, 2) @ (x * x)  # (B, K, D)
        scale = self.log_scale.exp()  # (K, D)
        first = (moment1 - mass * self.centers) / scale  # (B, K, D)
        centered = moment2 - 2 * self.centers * moment1 + mass * self.centers**2  # (B, K, D)
        second = centered / scale**2 - mass  # (B, K, D)
        stats = torch.cat([F.normalize(first, dim=-1), F.normalize(second, dim=-1)], dim=1)
        return F.normalize(stats.flatten(1), dim=-1)  # (B, 2 * K * D)


@register_model("netfv", level="frame")
def netfv(
    input_dims: dict[str, int],
    *,
    clusters: int = 8,
    hidden: int = 256,
) -> PooledHead:
    """NetFV pooling + hidden layer (gate it with the network option ``context_gating``)."""
    check_positive("netfv", clusters=clusters, hidden=hidden)
    return PooledHead(NetFV(sum(input_dims.values()), clusters), hidden)


class NeXtVLAD(nn.Module):
    """NeXtVLAD pooling (Lin et al. 2018, "NeXtVLAD", YouTube-8M 2018).

    Frames are expanded ``expansion`` times, split into ``groups`` lower-dimensional parts, and
    each part is VLAD-aggregated into shared ``clusters`` with its soft assignment weighted by a
    sigmoid attention of its group; residuals are intra-normalised:
    ``(B, T, D) -> (B, clusters * expansion * D / groups)``.
    """

    def __init__(self, dim: int, clusters: int, groups: int, expansion: int) -> None:
        super().__init__()
        wide = expansion * dim
        self.groups, self.clusters, self.part = groups, clusters, wide // groups
        self.expand = nn.Linear(dim, wide)
        self.attend = nn.Linear(wide, groups)
        self.assign_logits = nn.Linear(wide, groups * clusters)
        self.centers = nn.Parameter(torch.randn(clusters, self.part) / math.sqrt(self.part))
        self.out_dim = clusters * self.part

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, n_frames, _ = x.shape
        wide = self.expand(x)  # (B, T, E), E = expansion * D
        attention = torch.sigmoid(self.attend(wide)) * mask.unsqueeze(-1)  # (B, T, G)
        logits = self.assign_logits(wide).view(batch, n_frames, self.groups, self.clusters)
        weights = logits.softmax(dim=-1) * attention.unsqueeze(-1)  # (B, T, G, K)
        weights = weights.reshape(batch, n_frames * self.groups, self.clusters)  # (B, T*G, K)
        parts = wide.reshape(batch, n_frames * self.groups, self.part)  # (B, T*G, E/G)
        mass = weights.sum(dim=1).unsqueeze(-1)  # (B, K, 1)
        vlad = weights.transpose(1, 2) @ parts - mass * self.centers  # (B, K, E/G)
        return F.normalize(vlad, dim=-1).flatten(1)  # (B, K * E/G)


@register_model("nextvlad", level="frame")
def nextvlad(
    input_dims: dict[str, int],
    *,
    clusters: int = 32,
    n_groups: int = 8,
    expansion: int = 2,
    hidden: int = 256,
) -> PooledHead:
    """NeXtVLAD pooling + hidden layer; ``expansion * D`` must divide into ``n_groups`` (the
    paper's "groups"; named apart from the network option ``groups``, the feature groups)."""
    dim = sum(input_dims.values())
    check_positive(
        "nextvlad", clusters=clusters, n_groups=n_groups, expansion=expansion, hidden=hidden
    )
    if (expansion * dim) % n_groups:
        raise ConfigError(
            f"nextvlad: n_groups is {n_groups} but expansion * D = {expansion * dim} does not "
            "divide into it; pick n_groups dividing it"
        )
    return PooledHead(NeXtVLAD(dim, clusters, n_groups, expansion), hidden)


class AttentionPool(nn.Module):
    """Attention pooling over frames (Lin et al. 2017, "A Structured Self-attentive Sentence
    Embedding"; the "AttentionNet" of Ostyakov et al. 2018).

    Each of ``heads`` scores every frame with a small tanh MLP; a softmax over the real frames
    turns the scores into weights and each head returns its weighted mean of the frames:
    ``(B, T, D) -> (B, heads * D)``.
    """

    def __init__(self, dim: int, heads: int, attention_dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(
            nn.Linear(dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, heads)
        )
        self.out_dim = heads * dim

    def weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, T, heads)``: sum to 1 over real frames, 0 on padding."""
        return masked_softmax(self.score(x), mask)  # (B, T, H)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = self.weights(x, mask)  # (B, T, H)
        pooled = weights.transpose(1, 2) @ x  # (B, H, D)
        return pooled.flatten(1)  # (B, H * D)


@register_model("attention_pool", level="frame")
def attention_pool(
    input_dims: dict[str, int],
    *,
    heads: int = 4,
    attention_dim: int = 128,
    hidden: int = 256,
) -> PooledHead:
    """Multi-head attention pooling + hidden layer."""
    check_positive("attention_pool", heads=heads, attention_dim=attention_dim, hidden=hidden)
    pool = AttentionPool(sum(input_dims.values()), heads, attention_dim)
    return PooledHead(pool, hidden)
