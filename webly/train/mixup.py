"""Mixup (Zhang et al. 2018): convex combinations of a batch with a shuffled copy of itself.

The mixing weight and the shuffle come from a generator the caller owns, never the global RNG.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from webly.errors import ConfigError


class Mixed(NamedTuple):
    """A mixed batch; fields not given to `mixup` stay None."""

    x: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor | None
    teacher: torch.Tensor | None
    sample_weight: torch.Tensor | None
    lam: float


def mixup(
    x: torch.Tensor,
    targets: torch.Tensor,
    rng: np.random.Generator,
    alpha: float = 0.4,
    *,
    lengths: torch.Tensor | None = None,
    teacher: torch.Tensor | None = None,
    sample_weight: torch.Tensor | None = None,
) -> Mixed:
    """Mix each sample with a random partner: ``lam * a + (1 - lam) * a[perm]``.

    Parameters
    ----------
    x : (B, D) features, or (B, T, D) zero-padded frames
    targets : (B, C) float targets in [0, 1]
    rng : the generator that draws ``lam ~ Beta(alpha, alpha)`` and the permutation
    alpha : float > 0
    lengths : (B,) frames per row of a frame batch; the mixed row keeps the longer of the two
    teacher : (B, C) soft targets, mixed like ``targets``
    sample_weight : (B,) weights, mixed like ``targets``

    Returns
    -------
    Mixed
        The mixed tensors (same shapes) and ``lam``.
    """
    if alpha <= 0:
        raise ConfigError(f"mixup alpha is {alpha}; use a value > 0 (or turn mixup off)")
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(x.shape[0])).to(x.device)

    def mix(a: torch.Tensor) -> torch.Tensor:
        return lam * a + (1.0 - lam) * a[perm]

    return Mixed(
        mix(x),
        mix(targets),
        None if lengths is None else torch.maximum(lengths, lengths[perm]),
        None if teacher is None else mix(teacher),
        None if sample_weight is None else mix(sample_weight),
        lam,
    )
