from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from webly.data.latent import RandomFeatureMap, class_prototypes, zipf_prior
from webly.data.noise import confusable_classes, inject, realized_rates
from webly.errors import ConfigError


def multilabel(n: int, n_classes: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows = [rng.choice(n_classes, size=rng.integers(1, 5), replace=False) for _ in range(n)]
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])])
    data = np.ones(indptr[-1], np.float32)
    return sp.csr_matrix((data, np.concatenate(rows), indptr), shape=(n, n_classes))


def multiclass(n: int, n_classes: int, seed: int = 0) -> sp.csr_matrix:
    y = np.random.default_rng(seed).integers(0, n_classes, size=n)
    return sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), y)), shape=(n, n_classes))


def test_missing_and_spurious_hit_the_requested_rates() -> None:
    clean = multilabel(3000, 40)
    noisy = inject(clean, "missing", 0.3, 0)
    rates = realized_rates(noisy, clean)
    assert abs(rates["missing"] - 0.3) < 1e-3 and rates["spurious"] == 0.0
    table = confusable_classes(np.random.default_rng(1).normal(size=(40, 8)))
    noisy = inject(clean, "spurious", 0.1, 0, confusable=table)
    assert noisy.nnz == clean.nnz + round(0.1 * clean.nnz)
    added = noisy - clean
    assert added.min() >= 0  # nothing true was removed
    # Added labels are confusable classes of the row's true labels (uniform only as a fallback).
    rows = np.flatnonzero(added.getnnz(axis=1))
    near = [set(table[clean[r].indices].ravel()) for r in rows]
    hits = [c in n for r, n in zip(rows, near, strict=True) for c in added[r].indices]
    assert np.mean(hits) > 0.95


@pytest.mark.parametrize("kind", ["symmetric", "pair"])
def test_flips_change_the_requested_share_of_rows(kind: str) -> None:
    clean = multiclass(5000, 10)
    table = confusable_classes(np.random.default_rng(2).normal(size=(10, 4)))
    noisy = inject(clean, kind, 0.25, 3, confusable=table)  # type: ignore[arg-type]
    assert (noisy.getnnz(axis=1) == 1).all()
    rates = realized_rates(noisy, clean)
    assert rates["rows_changed"] == pytest.approx(0.25, abs=1e-3)
    changed = np.flatnonzero(noisy.indices != clean.indices)
    if kind == "pair":
        np.testing.assert_array_equal(noisy.indices[changed], table[clean.indices[changed], 0])
    else:  # uniform over the other classes
        counts = np.bincount((noisy.indices[changed] - clean.indices[changed]) % 10, minlength=10)
        assert counts[0] == 0 and counts[1:].min() > 0.6 * counts[1:].mean()


def test_instance_noise_falls_on_hard_rows() -> None:
    clean = multiclass(20000, 10)
    difficulty = np.random.default_rng(4).exponential(size=20000)
    noisy = inject(clean, "instance", 0.2, 5, difficulty=difficulty)
    changed = noisy.indices != clean.indices
    assert changed.mean() == pytest.approx(0.2, abs=1e-4)
    hard = difficulty > np.median(difficulty)
    assert changed[hard].mean() > 3 * changed[~hard].mean()


def test_same_seed_same_noise_and_clean_at_rate_zero() -> None:
    clean = multilabel(500, 20)
    a, b = inject(clean, "missing", 0.4, 7), inject(clean, "missing", 0.4, 7)
    assert (a != b).nnz == 0 and (a != inject(clean, "missing", 0.4, 8)).nnz > 0
    assert (inject(clean, "symmetric", 0.0, 0) != clean).nnz == 0


def test_bad_requests() -> None:
    clean = multiclass(50, 5)
    with pytest.raises(ConfigError, match=r"rate 1\.0 is outside \[0, 1\)"):
        inject(clean, "pair", 1.0, 0)
    with pytest.raises(ConfigError, match="noise kind 'flip' is unknown; use one of missing"):
        inject(clean, "flip", 0.1, 0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"needs difficulty of shape \(50,\)"):
        inject(clean, "instance", 0.1, 0)
    with pytest.raises(ConfigError, match="needs at least 2 classes"):
        inject(sp.csr_matrix(np.ones((5, 1))), "symmetric", 0.1, 0)


def test_confusable_classes_are_the_nearest_in_blocks() -> None:
    protos = class_prototypes(50, 16, np.random.default_rng(0), pair_similarity=0.9)
    table = confusable_classes(protos, m=2, block=7)
    np.testing.assert_array_equal(table[:, 0], np.arange(50) ^ 1)  # each pair's sibling
    sims = protos @ protos.T
    np.fill_diagonal(sims, -np.inf)
    np.testing.assert_array_equal(table[:, 1], np.argsort(-sims, axis=1)[:, 1])


def test_latent_structure() -> None:
    prior = zipf_prior(100, 1.0)
    assert prior.sum() == pytest.approx(1.0) and prior[0] / prior[-1] == pytest.approx(100)
    rng = np.random.default_rng(0)
    protos = class_prototypes(10, 32, rng, pair_similarity=0.8)
    np.testing.assert_allclose(np.linalg.norm(protos, axis=1), 1.0, rtol=1e-5)
    assert np.mean([protos[2 * i] @ protos[2 * i + 1] for i in range(5)]) > 0.6
    feature_map = RandomFeatureMap(32, 64, rng, scale=2.0)
    x = feature_map(protos)
    assert x.shape == (10, 64) and x.dtype == np.float32 and np.abs(x).max() < 2.0


def test_rows_holding_every_class_gain_and_swap_nothing() -> None:
    full = sp.csr_matrix(np.ones((4, 3), np.float32))
    assert (inject(full, "spurious", 0.5, 0) != full).nnz == 0
    assert (inject(full, "symmetric", 0.5, 0) != full).nnz == 0
