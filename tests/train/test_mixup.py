"""mixup: convex combinations from the passed generator only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from webly.errors import ConfigError
from webly.train import mixup


def test_mixes_with_beta_weight_and_permutation_from_generator() -> None:
    x = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    y = torch.eye(4)
    mixed = mixup(x, y, np.random.default_rng(5), alpha=0.4)
    ref = np.random.default_rng(5)
    lam, perm = ref.beta(0.4, 0.4), ref.permutation(4)
    assert mixed.lam == pytest.approx(lam)
    assert torch.allclose(mixed.x, lam * x + (1 - lam) * x[perm])
    assert torch.allclose(mixed.targets, lam * y + (1 - lam) * y[perm])
    assert torch.allclose(mixed.targets.sum(1), torch.ones(4))
    assert mixed.lengths is None and mixed.teacher is None and mixed.sample_weight is None


def test_global_rngs_untouched_and_reproducible() -> None:
    before_torch, before_np = torch.get_rng_state(), np.random.get_state()[1].copy()
    x, y = torch.randn(6, 2), torch.rand(6, 3)
    before_torch = torch.get_rng_state()
    a = mixup(x, y, np.random.default_rng(1))
    b = mixup(x, y, np.random.default_rng(1))
    assert torch.equal(torch.get_rng_state(), before_torch)
    assert np.array_equal(np.random.get_state()[1], before_np)
    assert torch.equal(a.x, b.x) and a.lam == b.lam


def test_frames_take_longer_length_and_mix_teacher_and_weights() -> None:
    x = torch.randn(3, 5, 2)  # (B, T, D)
    lengths = torch.tensor([5, 2, 3])
    teacher, weight = torch.rand(3, 4), torch.tensor([1.0, 2.0, 3.0])
    mixed = mixup(x, torch.rand(3, 4), np.random.default_rng(0), 1.0, lengths=lengths,
                  teacher=teacher, sample_weight=weight)  # fmt: skip
    perm = np.random.default_rng(0)
    perm.beta(1.0, 1.0)
    p = torch.from_numpy(perm.permutation(3))
    assert torch.equal(mixed.lengths, torch.maximum(lengths, lengths[p]))  # type: ignore[arg-type]
    lam = mixed.lam
    assert torch.allclose(mixed.teacher, lam * teacher + (1 - lam) * teacher[p])  # type: ignore[arg-type]
    assert torch.allclose(mixed.sample_weight, lam * weight + (1 - lam) * weight[p])  # type: ignore[arg-type]
    assert mixed.x.shape == x.shape


def test_alpha_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="alpha is 0"):
        mixup(torch.zeros(2, 2), torch.zeros(2, 2), np.random.default_rng(0), alpha=0)
