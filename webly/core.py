"""webly's shared vocabulary: the task and its metric and loss.

Every package below the CLI speaks in these types instead of strings: a `Task` knows the
headline metric and the loss its models are scored with, so no caller derives ``"GAP@20"`` or
``"accuracy"`` from a task string itself. This module sits at the bottom of the package graph
(it imports only `webly.errors`); the functions computing the figures live in
`webly.metrics.evaluate` and `webly.train.losses`, which take a `Task`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from webly.errors import ConfigError

GAP_K = 20
"""k of the headline GAP@k (the YouTube-8M competition's k)."""


@dataclass(frozen=True)
class Figure:
    """One figure a task is scored by.

    Attributes
    ----------
    name : as tables, reports and ``results.json`` show it (``"GAP@20"``, ``"BCE"``)
    key : as members' results and prediction stores record it (``"gap@20"``, ``"bce"``)
    higher_is_better : whether a larger value is a better model
    """

    name: str
    key: str
    higher_is_better: bool


class Task(StrEnum):
    """What a row's labels are: any number of classes (multi-label) or exactly one (multi-class).

    A `StrEnum`, so ``Task("multilabel") is Task.MULTILABEL``, a member compares equal to its
    string, and JSON written with the plain strings reads back unchanged.
    """

    MULTILABEL = "multilabel"
    MULTICLASS = "multiclass"

    @classmethod
    def parse(cls, value: str) -> Task:
        """``value`` as a Task; a one-line `ConfigError` naming the choices when it is none."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"task is {value!r}; use multilabel or multiclass") from None

    @property
    def multilabel(self) -> bool:
        """True for multi-label data (sigmoid per class), False for multi-class (softmax)."""
        return self is Task.MULTILABEL

    def metric(self, k: int = GAP_K) -> Figure:
        """The headline metric: GAP@k of the top-k ranking (multi-label) or top-1 accuracy
        (multi-class; ``k`` unused); higher is better. `webly.metrics.evaluate.task_metric`
        computes it."""
        if self.multilabel:
            return Figure(name=f"GAP@{k}", key=f"gap@{k}", higher_is_better=True)
        return Figure(name="accuracy", key="accuracy", higher_is_better=True)

    @property
    def loss(self) -> Figure:
        """The training loss: per-class sigmoid BCE (multi-label) or softmax log-loss
        (multi-class); lower is better. `webly.metrics.evaluate.loss_sum` computes it."""
        if self.multilabel:
            return Figure(name="BCE", key="bce", higher_is_better=False)
        return Figure(name="log-loss", key="log-loss", higher_is_better=False)
