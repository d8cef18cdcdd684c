"""``zoo.time_limit``: seconds for the whole zoo, spread over its fold models.

As AutoGluon's ``time_limit`` does for bagged models, each fold model that starts gets an equal
share of what is left: ``(deadline - now) / fold models still to train``, so what one member
leaves unused (it stopped early) goes to the ones after it. `fit` stops a model before an epoch
that would end past its share (``TrainConfig.time_limit``). Before anything trains,
`check_time_limit` refuses a limit that cannot fit one epoch of every member x fold, estimated
from timed training steps of each member on one batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from webly.data.store import Dataset
from webly.errors import ConfigError
from webly.train.losses import classification_loss
from webly.train.zoo import Member

_TIMED_STEPS = 2


@dataclass(frozen=True)
class TimeBudget:
    """A wall-clock ``deadline`` (``time.time()`` seconds) shared by the fold models saved to
    ``workdirs/model`` (one folder per fold model of the call, trained or not)."""

    deadline: float
    workdirs: tuple[Path, ...]

    @classmethod
    def start(cls, seconds: float, workdirs: Sequence[Path]) -> TimeBudget:
        return cls(time.time() + seconds, tuple(workdirs))

    def share(self) -> float:
        """Seconds for the fold model starting now: what is left over those still unsaved
        (this one included), at least one second."""
        left = sum(not (w / "model").is_dir() for w in self.workdirs)
        return max(1.0, (self.deadline - time.time()) / max(1, left))


def epoch_seconds(member: Member, train: Dataset, n_rows: int) -> float:
    """Estimated seconds of one training epoch of ``member`` over ``n_rows`` rows of ``train``
    on this machine: the mean of `_TIMED_STEPS` timed steps (forward, backward, optimizer) on
    one batch, after one untimed; 0 for a gbdt member (LightGBM keeps no epochs)."""
    if not member.trains_with_epochs:
        return 0.0
    config = member.train
    rows = np.arange(min(config.batch_size, len(train)))
    model = member.network(train.n_classes, 0)
    model.train()
    labels = torch.from_numpy(train.labels[rows].toarray().astype(np.float32))
    if member.takes_frames:
        frames, lengths = train.frames(rows, member.groups, max_frames=config.max_frames)
        x, n_frames = torch.from_numpy(frames), torch.from_numpy(lengths)
    else:
        x, n_frames = torch.from_numpy(train.features(rows, member.groups)), None
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with torch.random.fork_rng():
        times = []
        for _ in range(_TIMED_STEPS + 1):
            began = time.perf_counter()
            logits = model(x) if n_frames is None else model(x, n_frames)
            loss = classification_loss(logits, labels, train.task)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - began)
    per_row = float(np.mean(times[1:])) / rows.size
    return per_row * n_rows


def check_time_limit(
    time_limit: float, members: Sequence[Member], train: Dataset, folds: int
) -> dict[str, float]:
    """Refuse (`ConfigError`) a ``time_limit`` in seconds that cannot fit one epoch of every
    member in each of ``folds`` fold models; returns each member's estimated epoch seconds."""
    n_rows = len(train) * (folds - 1) // folds if folds > 1 else len(train)
    estimates = {member.id: epoch_seconds(member, train, n_rows) for member in members}
    needed = folds * sum(estimates.values())
    if needed > time_limit:
        slowest = max(estimates, key=lambda m: estimates[m])
        raise ConfigError(
            f"zoo.time_limit is {time_limit:g} s, but one epoch of every member x fold takes "
            f"about {needed:.0f} s here ({len(members)} members x {folds} folds; the slowest, "
            f"{slowest}, {estimates[slowest]:.1f} s an epoch); raise zoo.time_limit to at least "
            f"{math.ceil(needed * 3)} or leave it out"
        )
    return estimates
