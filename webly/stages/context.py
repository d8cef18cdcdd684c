"""What every stage function gets and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from webly.config import Recipe
from webly.data.store import Dataset
from webly.executor import Executor, LocalExecutor
from webly.rundir import RunDir, Scoring, StageRecord

SPLITS = ("train", "test", "unlabeled", "valid")
R = TypeVar("R", bound=StageRecord)


@dataclass(frozen=True)
class StageContext:
    """What a stage function gets: the recipe, the run directory as the stage may read it
    (only the records of the stages it declares, `webly.pipeline.STAGES`), its own name, and
    where its fold models train (the recipe's executor, made once a run)."""

    recipe: Recipe
    rundir: RunDir
    name: str
    console: Console
    executor: Executor = field(default_factory=LocalExecutor)

    @property
    def run(self) -> Path:
        """The run directory."""
        return self.rundir.root

    @property
    def folder(self) -> Path:
        """``RUN/<stage>``: where the stage writes its artifact."""
        return self.rundir.folder(self.name)

    def input(self, kind: type[R]) -> R | None:
        """The record of a stage this one reads; None when it made nothing."""
        return self.rundir.read(kind)

    def need(self, kind: type[R]) -> R:
        """The record of a stage this one reads, which must have finished."""
        return self.rundir.need(kind)


@dataclass(frozen=True)
class StageResult:
    """What a stage made. ``key``: its headline in one line (``webly status``); ``record``:
    what later stages read (None: it made nothing, e.g. not in the recipe); ``errors``:
    failures that leave the stage failed while the run goes on (a zoo member's NaN loss)."""

    key: str
    record: StageRecord | None = None
    errors: tuple[str, ...] = ()


def splits(ctx: StageContext) -> tuple[Dataset, Dataset | None]:
    """The training and test stores the data stage made or pointed at."""
    return ctx.rundir.splits()


def scoring(ctx: StageContext) -> Scoring:
    """What the run's figures are measured on (`webly.rundir.Scoring`)."""
    return ctx.rundir.scoring()
