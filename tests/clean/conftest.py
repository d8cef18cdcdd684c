"""Problems with planted label noise whose truth is known, small enough for fast tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp


@dataclass(frozen=True)
class Planted:
    """Given (noisy) labels, the truth, and out-of-fold probabilities of a model that learned
    the true labels."""

    given: np.ndarray | sp.csr_matrix
    true: np.ndarray | sp.csr_matrix
    probs: np.ndarray


def planted_multiclass(
    n: int = 2000, n_classes: int = 10, rate: float = 0.2, seed: int = 0, pair: bool = False
) -> Planted:
    """Rows whose label was flipped (to a random class, or to true + 1 with ``pair``) with
    probability ``rate``; probabilities are a softmax with the true class boosted."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, n_classes, n)
    flip = rng.random(n) < rate
    shift = np.ones(n, dtype=np.int64) if pair else rng.integers(1, n_classes, n)
    given = np.where(flip, (true + shift) % n_classes, true)
    return Planted(given, true, _softmax(_logits(rng, true, n_classes)))


def member_probs(true: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Another model's probabilities of the same rows (its own noise)."""
    rng = np.random.default_rng(seed)
    return _softmax(_logits(rng, true, n_classes))


def planted_multilabel(n: int = 1500, n_classes: int = 15, seed: int = 0) -> Planted:
    """1-3 true labels a row; 15% of them dropped (missing), 2% of the rest added (spurious);
    independent sigmoid probabilities, high for true labels."""
    rng = np.random.default_rng(seed)
    true = np.zeros((n, n_classes), dtype=bool)
    for row in range(n):
        true[row, rng.choice(n_classes, rng.integers(1, 4), replace=False)] = True
    given = true & (rng.random(true.shape) >= 0.15)
    given |= ~true & (rng.random(true.shape) < 0.02)
    logits = rng.normal(0, 1, true.shape) + np.where(true, 3.0, -3.0)
    probs = 1 / (1 + np.exp(-logits))
    return Planted(sp.csr_matrix(given, dtype=np.float32), sp.csr_matrix(true), probs)


def sparse_rows(probs: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``probs`` with every entry outside ``keep`` (bool, same shape) set to 0; multi-class rows
    (those summing to 1) are renormalised."""
    out = np.where(keep, probs, 0.0)
    sums = probs.sum(axis=1, keepdims=True)
    return np.where(np.isclose(sums, 1), out / out.sum(axis=1, keepdims=True), out)


def _logits(rng: np.random.Generator, true: np.ndarray, n_classes: int) -> np.ndarray:
    logits = rng.normal(0, 1, (true.size, n_classes))
    logits[np.arange(true.size), true] += 3.5
    return logits


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def multiclass() -> Planted:
    return planted_multiclass()


@pytest.fixture(scope="module")
def multilabel() -> Planted:
    return planted_multilabel()
