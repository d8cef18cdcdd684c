"""Distillation settings tried per model and the one kept: chosen on validation, never on test.

A distilled model trains with ``lam * loss(labels) + (1 - lam) * loss(teacher)``. Which ``lam``
helps depends on the data and on the teacher: on the real YouTube-8M sample the stacker's
soft labels at ``lam`` 0.5 lost to the labels alone (bench/RESULTS.md). So each model is
trained at every ``lam`` of the recipe's grid (``lam = 1`` is its labels-only twin, taught
nothing; `Setting`), at every teacher temperature of the recipe's grid (the teacher sharpened
or softened, `webly.distill.soft_labels.sharpen`), optionally also on extra rows taught by the
teacher (mixed rows, `webly.distill.mixed`, or frame-subset views, `webly.distill.views`:
`Extra`), and the setting of best validation figure is kept (`choose`): the
out-of-fold metric of a student, the metric on the rows its training held out of a model
trained on every row, or for both the metric on a validation split carved before the zoo when
the data has one (`webly.distill.grid`). On a tie the twin is kept: distillation has to beat
it to be used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from webly.config import TWIN, DistillConfig, k_grid, lam_grid, temperature_grid
from webly.errors import ConfigError

Extra = Literal["mixup", "views"]
"""The extra rows a setting also learns the teacher's predictions of: ``mixup``, mixes of two
training rows (`webly.distill.mixed`); ``views``, random frame subsets of each training video
(`webly.distill.views`)."""


@dataclass(frozen=True)
class Setting:
    """One way to train a distilled model: ``lam``, the weight of the label loss (1.0: the
    labels-only twin), ``temperature``, the teacher's (`webly.distill.soft_labels.sharpen`:
    below 1 sharper, above 1 softer; the twin has none), ``extra``, the `Extra` rows it
    also learns the teacher's predictions of (None: none), and ``k``, the teacher's top classes
    kept a row (None: the section's one value; set when ``distill.k`` is a grid)."""

    lam: float
    extra: Extra | None = None
    temperature: float = 1.0
    k: int | None = None

    @property
    def twin(self) -> bool:
        """Taught by the labels alone (no teacher, no extra rows)."""
        return self.lam == TWIN

    @property
    def name(self) -> str:
        """The folder name of the models trained with it: ``labels``, ``lam-0.5``,
        ``lam-0.5-t0.5``, ``lam-0.5-k5``, ``lam-0.5-mixup``, ``lam-0.5-t0.5-views``."""
        if self.twin:
            return "labels"
        sharpened = f"-t{self.temperature:g}" if self.temperature != 1.0 else ""
        kept = f"-k{self.k}" if self.k is not None else ""
        return f"lam-{self.lam:g}{sharpened}{kept}" + (f"-{self.extra}" if self.extra else "")


def settings(
    lam: float | Sequence[float],
    extras: Sequence[Extra] = (),
    temperature: float | Sequence[float] = 1.0,
    k: float | Sequence[float] = 20,
) -> tuple[Setting, ...]:
    """Every `Setting` of the grids ``lam``, ``temperature`` and ``k``: each ``lam`` below 1 at
    each temperature and each ``k`` (named only when there are several), then for each of
    ``extras`` in turn each of those once more with those extra rows. The twin (when tried,
    ``lam`` 1: no teacher, so no temperature or k) comes first."""
    temperatures = temperature_grid(temperature)
    ks: tuple[int | None, ...] = k_grid(k) if len(k_grid(k)) > 1 else (None,)
    taught = [(v, t, c) for v in lam_grid(lam) if v != TWIN for t in temperatures for c in ks]
    twin = [Setting(TWIN)] if TWIN in lam_grid(lam) else []
    return (
        *twin,
        *(Setting(v, temperature=t, k=c) for v, t, c in taught),
        *(Setting(v, extra, t, c) for extra in extras for v, t, c in taught),
    )


def final_extras(section: DistillConfig) -> tuple[Extra, ...]:
    """The extra rows the final model of ``section`` is also tried with: ``mixup`` when
    ``section.mixup`` is set, then ``views`` when ``section.frame_views`` is (the students
    learn none: each of their fold models trains on other rows)."""
    extras: list[Extra] = []
    if section.mixup is not None:
        extras.append("mixup")
    if section.frame_views is not None:
        extras.append("views")
    return tuple(extras)


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
