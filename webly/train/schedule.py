"""Learning-rate schedules of `webly.train.fit`: the multiplier of the base rate at each step.

Four schedules, as users of PyTorch know them:

- ``constant``: the base rate throughout (the plain loop's);
- ``cosine``: a cosine from the base rate to 0 at the last planned step (``epochs`` of them);
- ``step``: times ``lr_decay`` every ``decay_every`` epochs (`torch.optim.lr_scheduler.StepLR`);
- ``plateau``: times ``lr_decay`` after ``decay_patience`` epochs without a better validation
  metric (`ReduceLROnPlateau`; the training loss stands in without validation data).

Each may start with a linear warm-up. The epoch-level part of ``step`` and ``plateau`` is a pure
function of the finished epochs' metrics (`epoch_scale`), so a resumed run follows the schedule
of an uninterrupted one without state of its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

Schedule = Literal["constant", "cosine", "step", "plateau"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)


def lr_factor(
    step: int,
    warmup_steps: int,
    total_steps: int,
    schedule: Schedule = "cosine",
    scale: float = 1.0,
) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    A linear warm-up from ``1 / warmup_steps`` to 1 over the first ``warmup_steps``; then 1 for
    ``constant``, a cosine from 1 to 0 at step ``total_steps - 1`` for ``cosine``, and the
    epoch-level ``scale`` (`epoch_scale`) for ``step`` and ``plateau``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps * (scale if schedule in ("step", "plateau") else 1.0)
    if schedule == "cosine":
        span = max(1, total_steps - 1 - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))
    if schedule == "constant":
        return 1.0
    return scale


def epoch_scale(
    schedule: Schedule,
    scores: Sequence[float],
    lr_decay: float,
    decay_every: int,
    decay_patience: int,
) -> float:
    """The epoch-level multiplier of ``step`` and ``plateau`` after the finished epochs whose
    scores (higher is better: the validation metric, or the negated training loss) are
    ``scores``, in order; 1 for the other schedules."""
    if schedule == "step":
        return lr_decay ** (len(scores) // decay_every)
    if schedule != "plateau":
        return 1.0
    scale, best, waited = 1.0, -math.inf, 0
    for score in scores:
        if score > best:
            best, waited = score, 0
            continue
        waited += 1
        if waited >= decay_patience:
            scale, waited = scale * lr_decay, 0
    return scale
