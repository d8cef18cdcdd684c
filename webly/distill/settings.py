"""Distillation settings tried per model and the one kept: chosen on validation, never on test.

A distilled model trains with ``lam * loss(labels) + (1 - lam) * loss(teacher)``. Which ``lam``
helps depends on the data and on the teacher: on the real YouTube-8M sample the stacker's
soft labels at ``lam`` 0.5 lost to the labels alone (bench/RESULTS.md). So each model is
trained at every ``lam`` of the recipe's grid (``lam = 1`` is its labels-only twin, taught
nothing; `Setting`), at every teacher temperature of the recipe's grid (the teacher sharpened
or softened, `webly.distill.soft_labels.sharpen`), optionally also on mixed rows taught by the
teacher (`webly.distill.mixed`), and the setting of best validation figure is kept (`choose`): the
out-of-fold metric of a student, the metric on the rows its training held out of a model
trained on every row. On a tie the twin is kept: distillation has to beat it to be used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webly.config import TWIN, lam_grid, temperature_grid
from webly.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One way to train a distilled model: ``lam``, the weight of the label loss (1.0: the
    labels-only twin), ``temperature``, the teacher's (`webly.distill.soft_labels.sharpen`:
    below 1 sharper, above 1 softer; the twin has none), and ``mixup``, whether it also learns
    the teacher's predictions of mixed training rows."""

    lam: float
    mixup: bool = False
    temperature: float = 1.0

    @property
    def twin(self) -> bool:
        """Taught by the labels alone (no teacher, no mixed rows)."""
        return self.lam == TWIN

    @property
    def name(self) -> str:
        """The folder name of the models trained with it: ``labels``, ``lam-0.5``,
        ``lam-0.5-t0.5``, ``lam-0.5-mixup``."""
        if self.twin:
            return "labels"
        sharpened = f"-t{self.temperature:g}" if self.temperature != 1.0 else ""
        return f"lam-{self.lam:g}{sharpened}" + ("-mixup" if self.mixup else "")


def settings(
    lam: float | Sequence[float],
    mixup: bool = False,
    temperature: float | Sequence[float] = 1.0,
) -> tuple[Setting, ...]:
    """Every `Setting` of the grids ``lam`` and ``temperature``: each ``lam`` below 1 at each
    temperature, and with ``mixup`` each of those once more with mixed rows. The twin (when
    tried, ``lam`` 1: no teacher, so no temperature) comes first."""
    temperatures = temperature_grid(temperature)
    taught = [(v, t) for v in lam_grid(lam) if v != TWIN for t in temperatures]
    twin = [Setting(TWIN)] if TWIN in lam_grid(lam) else []
    plain = [Setting(v, temperature=t) for v, t in taught]
    mixed = [Setting(v, mixup=True, temperature=t) for v, t in taught] if mixup else []
    return (*twin, *plain, *mixed)


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
