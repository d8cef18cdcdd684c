"""Distillation settings tried per model and the one kept: chosen on validation, never on test.

A distilled model trains with ``lam * loss(labels) + (1 - lam) * loss(teacher)``. Which ``lam``
helps depends on the data and on the teacher: on the real YouTube-8M sample the stacker's
soft labels at ``lam`` 0.5 lost to the labels alone (bench/RESULTS.md). So each model is
trained at every ``lam`` of the recipe's grid (``lam = 1`` is its labels-only twin, taught
nothing; `Setting`), optionally also on mixed rows taught by the teacher
(`webly.distill.mixed`), and the setting of best validation figure is kept (`choose`): the
out-of-fold metric of a student, the metric on the rows its training held out of a model
trained on every row. On a tie the twin is kept: distillation has to beat it to be used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webly.errors import ConfigError

TWIN = 1.0
"""The ``lam`` of the labels-only twin: the label loss alone."""


@dataclass(frozen=True)
class Setting:
    """One way to train a distilled model: ``lam``, the weight of the label loss (1.0: the
    labels-only twin), and ``mixup``, whether it also learns the teacher's predictions of mixed
    training rows."""

    lam: float
    mixup: bool = False

    @property
    def twin(self) -> bool:
        """Taught by the labels alone (no teacher, no mixed rows)."""
        return self.lam == TWIN

    @property
    def name(self) -> str:
        """The folder name of the models trained with it: ``labels``, ``lam-0.5``,
        ``lam-0.5-mixup``."""
        if self.twin:
            return "labels"
        return f"lam-{self.lam:g}" + ("-mixup" if self.mixup else "")


def lam_grid(lam: float | Sequence[float]) -> tuple[float, ...]:
    """The ``lam`` values to try, the twin's (1.0) first when it is one of them.

    Raises `ConfigError` (one line, naming ``distill.lam``) on an empty grid, a repeated value
    or one outside [0, 1].
    """
    values = (float(lam),) if isinstance(lam, int | float) else tuple(float(v) for v in lam)
    if not values:
        raise ConfigError("distill.lam: no value to try; give one in [0, 1], e.g. [1.0, 0.5, 0.2]")
    for value in values:
        if not 0.0 <= value <= 1.0:
            raise ConfigError(
                f"distill.lam: {value:g} is outside [0, 1] (the weight of the label loss); use "
                "e.g. [1.0, 0.5, 0.2]"
            )
    if len(set(values)) != len(values):
        raise ConfigError(f"distill.lam: {list(values)} repeats a value; give each once")
    return tuple(sorted(values, key=lambda v: v != TWIN))


def settings(lam: float | Sequence[float], mixup: bool = False) -> tuple[Setting, ...]:
    """Every `Setting` of the grid ``lam``: each value, and with ``mixup`` each value below 1
    once more with mixed rows. The twin (when tried) comes first."""
    grid = lam_grid(lam)
    plain = [Setting(v) for v in grid]
    mixed = [Setting(v, mixup=True) for v in grid if v != TWIN] if mixup else []
    return (*plain, *mixed)


def choose(figures: Sequence[float | None]) -> int:
    """The position of the best validation figure (higher is better), the first of equal ones
    (`settings` puts the twin first, so a tie keeps it); a setting without one (its training
    failed) is never chosen.

    Raises `ConfigError` when no setting has a figure.
    """
    scored = [(figure, -i) for i, figure in enumerate(figures) if figure is not None]
    if not scored:
        raise ConfigError("no distillation setting has a validation figure; every one failed")
    return -max(scored)[1]
