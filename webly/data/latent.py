"""The hidden class structure of generated benchmarks: class frequencies, per-class latent
prototypes, and a fixed random nonlinear map from latents to observed features."""

from __future__ import annotations

import numpy as np


def zipf_prior(n_classes: int, exponent: float = 1.0) -> np.ndarray:
    """``(n_classes,)`` float64 probabilities ``p_c ∝ (c + 1) ** -exponent``, summing to 1."""
    weights = (np.arange(n_classes, dtype=np.float64) + 1.0) ** -exponent
    return weights / weights.sum()


def class_prototypes(
    n_classes: int,
    dim: int,
    rng: np.random.Generator,
    pair_similarity: float | None = None,
) -> np.ndarray:
    """``(n_classes, dim)`` float32 unit-norm latent prototypes, one per class.

    With ``pair_similarity`` the classes come in fine-grained pairs ``(2i, 2i + 1)`` whose
    prototypes have cosine similarity of about that value (a shared direction plus a private
    one), as near-duplicate products or sibling categories do.
    """
    protos = rng.normal(size=(n_classes, dim))
    if pair_similarity is not None:
        shared = rng.normal(size=((n_classes + 1) // 2, dim))[np.arange(n_classes) // 2]
        protos = _unit(shared) * np.sqrt(pair_similarity) + _unit(protos) * np.sqrt(
            1.0 - pair_similarity
        )
    return _unit(protos).astype(np.float32)


class RandomFeatureMap:
    """A fixed random two-layer tanh network mapping latents to features.

    The map is nonlinear, so classes that are separable in the latent space are not linearly
    separable in feature space to the same degree: a linear model does not saturate the task and
    deeper models gain. Outputs are bounded by ``scale`` (inside YouTube-8M's quantisation range
    [-2, 2] for ``scale <= 2``).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        rng: np.random.Generator,
        hidden: int = 256,
        scale: float = 1.0,
    ) -> None:
        self.w1 = (rng.normal(size=(in_dim, hidden)) / np.sqrt(in_dim)).astype(np.float32)
        self.b1 = rng.normal(scale=0.5, size=hidden).astype(np.float32)
        self.w2 = (rng.normal(size=(hidden, out_dim)) / np.sqrt(hidden)).astype(np.float32)
        self.scale = np.float32(scale)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """``(N, in_dim)`` latents -> ``(N, out_dim)`` float32 features in ``(-scale, scale)``."""
        hidden = np.tanh(z.astype(np.float32, copy=False) @ self.w1 + self.b1)  # (N, hidden)
        return (self.scale * np.tanh(hidden @ self.w2)).astype(np.float32, copy=False)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
