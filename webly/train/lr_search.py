"""``lr="auto"``: the base learning rate chosen by short trial runs on the validation rows.

Each candidate rate trains the same initial weights for a few hundred optimizer steps at a
constant rate (`webly.train.fit` runs the probes); the rate whose validation metric is then
best is kept, the smaller on a tie. A rate whose training loss turned non-finite, or ended no
lower than where it started, is out. The search never sees a test split: `fit` gets the
fold's own held-out rows, or holds some training rows out (``TrainConfig.valid_fraction``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from webly.errors import DataError


@dataclass(frozen=True)
class Probe:
    """One trial: the validation metric after the probe steps (the negated training loss
    without validation data), and whether it improved on the initial weights: a lower
    training loss or a higher validation metric."""

    score: float
    improved: bool


@dataclass(frozen=True)
class LRSearch:
    """The outcome: the chosen ``lr`` and every rate tried with its score (None: it diverged
    or did not improve on the initial weights)."""

    lr: float
    trials: dict[float, float | None]

    def to_json(self) -> dict[str, object]:
        return {"lr": self.lr, "trials": [[rate, score] for rate, score in self.trials.items()]}

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> LRSearch:
        trials = raw["trials"]
        assert isinstance(trials, list)
        return cls(float(raw["lr"]), {float(r): s for r, s in trials})  # type: ignore[arg-type]


def choose_lr(candidates: Sequence[float], probe: Callable[[float], Probe]) -> LRSearch:
    """Run ``probe`` on every rate of ``candidates`` and keep the best.

    Raises `DataError` naming the rates tried when none improved on the initial weights.
    """
    trials: dict[float, float | None] = {}
    for rate in candidates:
        try:
            outcome = probe(rate)
        except DataError:  # a non-finite loss: the rate is too high
            trials[rate] = None
            continue
        trials[rate] = outcome.score if outcome.improved else None
    usable = {rate: score for rate, score in trials.items() if score is not None}
    if not usable:
        tried = ", ".join(f"{rate:g}" for rate in candidates)
        raise DataError(
            f"learning-rate search: no rate improved on the initial weights (tried {tried}); "
            "set train.lr by hand, or check the features and labels"
        )
    best = max(usable, key=lambda rate: (usable[rate], -rate))
    return LRSearch(best, trials)
