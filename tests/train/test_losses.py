"""classification_loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from webly.errors import ConfigError
from webly.train import classification_loss


def _bce(z: float, t: float) -> float:
    p = 1.0 / (1.0 + math.exp(-z))
    return -(t * math.log(p) + (1.0 - t) * math.log(1.0 - p))


LOGITS = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
TARGETS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_bce_sums_classes_and_averages_samples() -> None:
    expected = (_bce(2, 1) + _bce(-1, 0) + _bce(0.5, 0) + _bce(0, 1)) / 2
    got = classification_loss(LOGITS, TARGETS, "multilabel")
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_bce_smoothing_sample_and_class_weights() -> None:
    s = 0.2
    hi, lo = 1 - s / 2, s / 2
    row0 = 2.0 * _bce(2, hi) + 0.5 * _bce(-1, lo)
    row1 = 2.0 * _bce(0.5, lo) + 0.5 * _bce(0, hi)
    expected = (3.0 * row0 + 1.0 * row1) / 2
    got = classification_loss(
        LOGITS, TARGETS, "multilabel", smoothing=s,
        sample_weight=torch.tensor([3.0, 1.0]), class_weight=torch.tensor([2.0, 0.5]),
    )  # fmt: skip
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_softmax_ce_with_smoothing() -> None:
    s = 0.1
    logp = torch.log_softmax(LOGITS, dim=1)
    smooth = TARGETS * (1 - s) + s / 2
    expected = -(smooth * logp).sum(1).mean()
    got = classification_loss(LOGITS, TARGETS, "multiclass", smoothing=s)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    row0 = -(0.95 * math.log(math.exp(2) / (math.exp(2) + math.exp(-1))))
    row0 -= 0.05 * math.log(math.exp(-1) / (math.exp(2) + math.exp(-1)))
    assert -(smooth[0] * logp[0]).sum().item() == pytest.approx(row0, rel=1e-6)


@pytest.mark.parametrize("task", ["multilabel", "multiclass"])
def test_distillation_mix(task: str) -> None:
    teacher = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
    labels = classification_loss(LOGITS, TARGETS, task)  # type: ignore[arg-type]
    soft = classification_loss(LOGITS, teacher, task)  # type: ignore[arg-type]
    mixed = classification_loss(LOGITS, TARGETS, task, teacher=teacher, lam=0.25)  # type: ignore[arg-type]
    assert mixed.item() == pytest.approx(0.25 * labels.item() + 0.75 * soft.item(), rel=1e-6)
    default = classification_loss(LOGITS, TARGETS, task, teacher=teacher)  # type: ignore[arg-type]
    assert default.item() == pytest.approx(0.5 * (labels.item() + soft.item()), rel=1e-6)


def test_gradient_flows() -> None:
    logits = LOGITS.clone().requires_grad_()
    classification_loss(logits, TARGETS, "multilabel").backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="task is 'x'; use multilabel or multiclass"):
        classification_loss(LOGITS, TARGETS, "x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"smoothing is 1\.0"):
        classification_loss(LOGITS, TARGETS, "multilabel", smoothing=1.0)
    with pytest.raises(ConfigError, match="must both be"):
        classification_loss(LOGITS, TARGETS[:1], "multilabel")
    with pytest.raises(ConfigError, match="class_weight"):
        classification_loss(LOGITS, TARGETS, "multilabel", class_weight=torch.ones(3))
    with pytest.raises(ConfigError, match="sample_weight"):
        classification_loss(LOGITS, TARGETS, "multilabel", sample_weight=torch.ones(3))
