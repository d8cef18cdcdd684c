"""What every stage function gets and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import scipy.sparse as sp
from rich.console import Console

from webly.config import Recipe
from webly.data.store import Dataset
from webly.executor import Executor, LocalExecutor

SPLITS = ("train", "test", "unlabeled")


@dataclass(frozen=True)
class StageContext:
    """What a stage function gets: the recipe, the run directory, its own name, the
    manifests of the stages it reads, by name, and where its fold models train (the recipe's
    executor, made once a run)."""

    recipe: Recipe
    run: Path
    name: str
    inputs: dict[str, dict[str, Any]]
    console: Console
    executor: Executor = field(default_factory=LocalExecutor)

    @property
    def folder(self) -> Path:
        """``RUN/<stage>``: where the stage writes its artifact."""
        return self.run / self.name

    def output(self, stage: str, key: str) -> Path | None:
        """A path the stage ``stage`` recorded under ``key`` in its outputs, or None."""
        value = self.inputs[stage]["outputs"].get(key)
        return self.run / value if value is not None else None


@dataclass(frozen=True)
class StageResult:
    """What a stage made. ``key``: its headline in one line (``webly status``); ``outputs``:
    paths later stages read (relative to the run directory, or absolute); ``summary``:
    JSON figures for the manifest; ``errors``: failures that leave the stage failed while the
    run goes on (a zoo member's NaN loss)."""

    key: str
    outputs: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    errors: tuple[str, ...] = ()


def splits(ctx: StageContext) -> tuple[Dataset, Dataset | None]:
    """The training and test stores the data stage made or pointed at."""
    train, test = ctx.output("data", "train"), ctx.output("data", "test")
    assert train is not None  # the data stage always records one
    return Dataset.open(train), Dataset.open(test) if test is not None else None


@dataclass(frozen=True)
class Scoring:
    """What a run's figures are measured on: the test split with its clean labels when the
    store has them (else its given labels), or, without test labels, the training rows'
    out-of-fold predictions on the given labels."""

    split: str
    data: Dataset
    labels: sp.csr_matrix
    which: str


def scoring(ctx: StageContext) -> Scoring:
    """The `Scoring` of the run's data."""
    train, test = splits(ctx)
    if test is not None and test.labels.nnz:
        clean = test.clean_labels
        if clean is not None:
            return Scoring("test", test, clean, "clean")
        return Scoring("test", test, test.labels, "given")
    return Scoring("oof", train, train.labels, "given")
