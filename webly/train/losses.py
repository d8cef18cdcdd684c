"""Classification losses on logits: multi-label BCE and multi-class softmax cross-entropy.

Both take soft targets in [0, 1] (hard labels, mixed-up labels or a teacher's probabilities),
label smoothing, per-sample and per-class weights, and the distillation mix
``lam * loss(labels) + (1 - lam) * loss(teacher)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from webly.core import Task
from webly.errors import ConfigError


def classification_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    task: Task,
    *,
    teacher: torch.Tensor | None = None,
    lam: float = 0.5,
    smoothing: float = 0.0,
    sample_weight: torch.Tensor | None = None,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean loss of a batch.

    Parameters
    ----------
    logits : (B, C) float
    targets : (B, C) float in [0, 1]
        Label targets. Smoothing moves them towards the uniform target: ``t * (1 - s) + s / 2``
        per class for ``multilabel``, ``t * (1 - s) + s / C`` for ``multiclass``.
    task : ``"multilabel"`` (per-class sigmoid BCE, summed over classes as the YouTube-8M
        starter code does) or ``"multiclass"`` (softmax cross-entropy ``-sum_c t_c log p_c``).
    teacher : (B, C) float in [0, 1], optional
        A teacher's soft targets; the loss becomes ``lam * loss(targets) + (1 - lam) *
        loss(teacher)``. Smoothing applies to ``targets`` only.
    lam : float in [0, 1]
        Weight of the label loss when ``teacher`` is given.
    smoothing : float in [0, 1)
    sample_weight : (B,) float, optional
        Each sample's loss is multiplied by its weight; the batch loss is the mean over B of the
        weighted losses (not divided by the sum of the weights, so weights averaging 1 keep the
        loss scale and a batch's share of the epoch does not depend on its weights).
    class_weight : (C,) float, optional
        Multiplies each class's term of the per-sample sum.

    Returns
    -------
    () float tensor
    """
    task = Task.parse(task)
    if not 0.0 <= smoothing < 1.0:
        raise ConfigError(f"label smoothing is {smoothing}; use a value in [0, 1)")
    if not 0.0 <= lam <= 1.0:
        raise ConfigError(f"distillation lam is {lam}; use a value in [0, 1]")
    if logits.ndim != 2 or targets.shape != logits.shape:
        raise ConfigError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be (B, C)"
        )
    if teacher is not None and teacher.shape != logits.shape:
        raise ConfigError(f"teacher targets {tuple(teacher.shape)} must be {tuple(logits.shape)}")
    n_classes = logits.shape[1]
    if smoothing:
        uniform = 0.5 if task.multilabel else 1.0 / n_classes
        targets = targets * (1.0 - smoothing) + smoothing * uniform
    per_sample = _per_sample(logits, targets, task, class_weight)  # (B,)
    if teacher is not None:
        per_sample = lam * per_sample + (1.0 - lam) * _per_sample(
            logits, teacher, task, class_weight
        )
    if sample_weight is not None:
        if sample_weight.shape != per_sample.shape:
            raise ConfigError(
                f"sample_weight {tuple(sample_weight.shape)} must be ({logits.shape[0]},)"
            )
        per_sample = per_sample * sample_weight
    return per_sample.mean()


def _per_sample(
    logits: torch.Tensor, targets: torch.Tensor, task: Task, class_weight: torch.Tensor | None
) -> torch.Tensor:
    """``(B, C)`` logits and targets -> ``(B,)`` loss of each sample, summed over classes."""
    if task.multilabel:
        terms = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # (B, C)
    else:
        terms = -targets * F.log_softmax(logits, dim=1)  # (B, C)
    if class_weight is not None:
        if class_weight.shape != (logits.shape[1],):
            raise ConfigError(
                f"class_weight {tuple(class_weight.shape)} must be ({logits.shape[1]},)"
            )
        terms = terms * class_weight
    return terms.sum(dim=1)
