"""A run directory as the report reads it (through `webly.rundir.RunDir`): the resolved
recipe, each stage's state and typed record, and the artifacts the records point at.

Nothing here knows how a stage made its artifact; a stage that never ran or did not finish
has no record, and the sections say what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

from webly.clean.report import NoiseReport
from webly.compress.budget import FRONTIER_FILE
from webly.config import Recipe
from webly.data.store import Dataset
from webly.predictions import Predictions
from webly.rundir import (
    CleanRecord,
    CompressRecord,
    DataRecord,
    EnsembleRecord,
    LongtailRecord,
    RunDir,
    StageRecord,
    StageStatus,
)

REPORT_STAGE = "report"
R = TypeVar("R", bound=StageRecord)


@dataclass(frozen=True)
class Scored:
    """What the run's figures are measured on (as ``results.json`` says): ``split`` (``test``
    or ``oof``), the store, its labels and which labels (``clean`` or ``given``)."""

    split: str
    data: Dataset
    labels: sp.csr_matrix
    which: str


@dataclass
class RunFiles:
    """The run directory ``rundir``: open it with `RunFiles.open`."""

    rundir: RunDir
    recipe: Recipe
    statuses: list[StageStatus]
    _records: dict[str, StageRecord | None] = field(default_factory=dict)

    @classmethod
    def open(cls, run: str | Path, statuses: Sequence[StageStatus] | None = None) -> RunFiles:
        """Read the run's recipe and stage states (``statuses``, e.g. `webly.pipeline.run_status`'s;
        by default as the manifests record them); `DataError` when ``run`` is not a run
        directory, `ConfigError` when its recipe no longer validates."""
        rundir = RunDir(Path(run))
        rundir.check_run()
        found = rundir.statuses() if statuses is None else statuses
        return cls(rundir, rundir.recipe(), [s for s in found if s.name != REPORT_STAGE])

    @property
    def run(self) -> Path:
        return self.rundir.root

    def record(self, kind: type[R]) -> R | None:
        """The stage's record; None when it made none (never ran, did not finish)."""
        if kind.STAGE not in self._records:
            self._records[kind.STAGE] = self.rundir.read(kind)
        record = self._records[kind.STAGE]
        assert record is None or isinstance(record, kind)
        return record

    def store(self, path: Path) -> Predictions:
        """The prediction store at ``path``."""
        return Predictions.open(path)

    @cached_property
    def results(self) -> dict[str, Any] | None:
        """The evaluate stage's ``results.json``; None before it finished."""
        return self.rundir.results()

    @cached_property
    def frontier(self) -> dict[str, Any] | None:
        """The compress stage's ``frontier.json`` (every candidate, the frontier, the choice);
        None before it finished or without it in the recipe."""
        compress = self.record(CompressRecord)
        if compress is None:
            return None
        frontier: dict[str, Any] = json.loads((compress.choice / FRONTIER_FILE).read_text())
        return frontier

    @cached_property
    def train(self) -> Dataset | None:
        """The training store the data stage made or pointed at; None before it finished."""
        data = self.record(DataRecord)
        return Dataset.open(data.train) if data is not None else None

    @cached_property
    def noise_report(self) -> NoiseReport | None:
        """The clean stage's verdict (the one that made the labels of the round the ensemble
        uses); None without a finished clean stage."""
        clean = self.record(CleanRecord)
        return NoiseReport.load(clean.report) if clean is not None else None

    @cached_property
    def scored(self) -> Scored | None:
        """The split and labels the run's figures are measured on (the evaluate stage's
        rule), None before the data stage finished."""
        if self.train is None:
            return None
        found = self.rundir.scoring()
        return Scored(found.split, found.data, found.labels, found.which)

    @property
    def recipe_text(self) -> str:
        """``RUN/recipe.yaml`` without its header line."""
        return self.rundir.recipe_text()

    def member_stores(self) -> dict[str, Path]:
        """The zoo members the run ends with (`RunDir.members`), id -> prediction store."""
        return self.rundir.members()

    def shown_scored(self) -> tuple[Dataset, Scored, str, Path] | None:
        """(training store, scoring, name, prediction store) of the model whose per-class
        figures the report shows on the scored split (`shown_model`); None before the zoo
        stage has predictions."""
        train, scored = self.train, self.scored
        entry = self.shown_model(scored.split) if scored is not None else None
        if train is None or scored is None or entry is None:
            return None
        return train, scored, *entry

    def shown_model(self, split: str) -> tuple[str, Path] | None:
        """(name, prediction store) of the model whose per-class figures the report shows: the
        final model the run deploys (`RunDir.final`), else the ensemble's teacher, else the
        member of best figure: the first with predictions on ``split``; None without one."""
        final = self.rundir.final()
        form = "re-balanced final model" if isinstance(final, LongtailRecord) else "final model"
        candidates = [(f"{form} {m}", p) for m, p in (final.final if final else {}).items()]
        ensemble = self.record(EnsembleRecord)
        if ensemble is not None and ensemble.teacher in ensemble.stores:
            teacher = ensemble.teacher
            candidates.append((f"the ensemble's {teacher}", ensemble.stores[teacher]))
        members = self.member_stores()

        def figure(member: str) -> float:
            metrics = self.store(members[member]).fold_metrics.get(split, {})
            return float(metrics.get("metric", -np.inf))

        ranked = sorted(members, key=figure, reverse=True)
        candidates += [(f"member {m}", members[m]) for m in ranked]
        for name, path in candidates:
            if split in self.store(path).splits:
                return name, path
        return None
