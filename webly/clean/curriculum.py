"""`Curriculum`: clean rows first, then the rest with a rising weight (WebVision 2017's winners
trained on the dense, clean clusters of each class before letting in the noisier rows).

Rows judged clean weigh 1 from the first epoch; every other row starts at ``start_weight`` and
rises linearly to 1 over ``ramp_epochs`` epochs. The weights of an epoch are a pure function of
its number, so `webly.train.fit` (which takes a curriculum as its ``sample_weight``) resumes a
killed run exactly, and the checkpoint records `Curriculum.settings`.

Which rows are clean is the caller's choice, e.g. ``~verdict.is_noisy`` of the ``cluster``
method (rows in dense clusters of their class) or ``report.action == KEEP`` of a `NoiseReport`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from webly.errors import ConfigError, DataError


@dataclass(frozen=True, eq=False)
class Curriculum:
    """Per-row loss weights by epoch: clean rows 1, the others rising from ``start_weight``.

    Parameters
    ----------
    clean : (n_samples,) bool
        Rows judged clean.
    ramp_epochs : int >= 0
        Epochs over which the other rows' weight rises to 1; 0 weighs every row 1 throughout.
    start_weight : float in [0, 1]
        The other rows' weight in epoch 1.

    Notes
    -----
    In epoch ``t`` (1-based) a row not judged clean weighs
    ``start_weight + (1 - start_weight) * min(1, (t - 1) / ramp_epochs)``: ``start_weight`` in
    epoch 1, 1 from epoch ``ramp_epochs + 1`` on.
    """

    clean: np.ndarray
    ramp_epochs: int
    start_weight: float = 0.0

    def __post_init__(self) -> None:
        clean = np.asarray(self.clean)
        if clean.ndim != 1 or clean.dtype != bool:
            raise DataError(
                f"curriculum clean has shape {clean.shape} and dtype {clean.dtype}; pass an "
                "(n_samples,) bool array, True for the rows judged clean"
            )
        ramp = self.ramp_epochs
        if isinstance(ramp, bool) or not isinstance(ramp, int | np.integer) or ramp < 0:
            raise ConfigError(f"ramp_epochs is {ramp!r}; pass an integer >= 0 (epochs to rise)")
        start = self.start_weight
        if isinstance(start, bool) or not isinstance(start, int | float) or not 0 <= start <= 1:
            raise ConfigError(f"start_weight is {start!r}; pass a number in [0, 1]")
        object.__setattr__(self, "clean", clean)
        object.__setattr__(self, "ramp_epochs", int(ramp))
        object.__setattr__(self, "start_weight", float(start))

    def __len__(self) -> int:
        return int(self.clean.size)

    def weight_of_others(self, epoch: int) -> float:
        """The weight of the rows not judged clean in epoch ``epoch`` (1-based)."""
        if epoch < 1:
            raise ConfigError(f"epoch is {epoch}; epochs are numbered from 1")
        if self.ramp_epochs == 0:
            return 1.0
        progress = min(1.0, (epoch - 1) / self.ramp_epochs)
        return self.start_weight + (1.0 - self.start_weight) * progress

    def weights(self, epoch: int) -> np.ndarray:
        """(n_samples,) float32 loss weights of epoch ``epoch`` (1-based)."""
        return np.where(self.clean, np.float32(1), np.float32(self.weight_of_others(epoch)))

    def subset(self, rows: np.ndarray) -> Curriculum:
        """The curriculum of ``rows`` (positions), in the order given."""
        return Curriculum(self.clean[np.asarray(rows)], self.ramp_epochs, self.start_weight)

    def settings(self) -> dict[str, Any]:
        """What the weights depend on, JSON-able: the schedule, the rows and a SHA-256 of the
        clean mask."""
        digest = hashlib.sha256(np.packbits(self.clean).tobytes()).hexdigest()
        return {
            "ramp_epochs": self.ramp_epochs,
            "start_weight": self.start_weight,
            "rows": len(self),
            "clean_sha256": digest,
        }
