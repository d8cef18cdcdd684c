"""A run directory as the report reads it: the resolved recipe, each stage's manifest (state,
seconds, key figure, outputs, summary) and the artifacts the manifests point at.

Nothing here knows how a stage made its artifact; a stage that never ran or did not finish
has empty outputs and summary, and the sections say what is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from rich.console import Console

from webly.clean.report import NoiseReport
from webly.compress.budget import FRONTIER_FILE
from webly.compress.run import final_stage, stage_manifest
from webly.config import Recipe, load_recipe
from webly.data.store import Dataset
from webly.pipeline import RECIPE_FILE, RECIPE_HEADER, StageStatus, read_results, run_status
from webly.predictions import Predictions
from webly.stages.context import StageContext, scoring

REPORT_STAGE = "report"


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
    """The run directory ``run``: open it with `RunFiles.open`."""

    run: Path
    recipe: Recipe
    statuses: list[StageStatus]
    _manifests: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, run: str | Path) -> RunFiles:
        """Read the run's recipe and stage states; `DataError` when ``run`` is not a run
        directory, `ConfigError` when its recipe no longer validates."""
        path = Path(run)
        statuses = [s for s in run_status(path) if s.name != REPORT_STAGE]
        return cls(path, load_recipe(path / RECIPE_FILE), statuses)

    def manifest(self, stage: str) -> dict[str, Any]:
        """The stage's manifest; empty when the stage never ran."""
        if stage not in self._manifests:
            self._manifests[stage] = stage_manifest(self.run, stage) or {}
        return self._manifests[stage]

    def outputs(self, stage: str) -> dict[str, Any]:
        """What the stage recorded it made (empty before it finished)."""
        outputs: dict[str, Any] = self.manifest(stage).get("outputs") or {}
        return outputs

    def summary(self, stage: str) -> dict[str, Any]:
        """The stage's summary figures (empty before it finished)."""
        summary: dict[str, Any] = self.manifest(stage).get("summary") or {}
        return summary

    def path(self, recorded: str) -> Path:
        """A path a manifest recorded: relative to the run directory, or absolute."""
        return self.run / recorded

    def store(self, recorded: str) -> Predictions:
        """The prediction store at a recorded path."""
        return Predictions.open(self.path(recorded))

    @cached_property
    def results(self) -> dict[str, Any] | None:
        """The evaluate stage's ``results.json``; None before it finished."""
        return read_results(self.run)

    @cached_property
    def frontier(self) -> dict[str, Any] | None:
        """The compress stage's ``frontier.json`` (every candidate, the frontier, the choice);
        None before it finished or without it in the recipe."""
        folder = self.outputs("compress").get("choice")
        if folder is None:
            return None
        frontier: dict[str, Any] = json.loads((self.path(folder) / FRONTIER_FILE).read_text())
        return frontier

    @cached_property
    def train(self) -> Dataset | None:
        """The training store the data stage made or pointed at; None before it finished."""
        recorded = self.outputs("data").get("train")
        return Dataset.open(self.path(recorded)) if recorded is not None else None

    @cached_property
    def noise_report(self) -> NoiseReport | None:
        """The clean stage's verdict (the one that made the labels of the round the ensemble
        uses); None without a finished clean stage."""
        recorded = self.outputs("clean").get("report")
        return NoiseReport.load(self.path(recorded)) if recorded is not None else None

    @cached_property
    def scored(self) -> Scored | None:
        """The split and labels the run's figures are measured on (the evaluate stage's
        rule), None before the data stage finished."""
        if self.train is None:
            return None
        context = StageContext(
            self.recipe,
            self.run,
            REPORT_STAGE,
            {"data": self.manifest("data")},
            Console(quiet=True),
        )
        found = scoring(context)
        return Scored(found.split, found.data, found.labels, found.which)

    @property
    def recipe_text(self) -> str:
        """``RUN/recipe.yaml`` without its header line."""
        return (self.run / RECIPE_FILE).read_text().removeprefix(RECIPE_HEADER)

    def member_stores(self) -> dict[str, str]:
        """The zoo members the ensemble combined (the clean stage's last round when it ran,
        else the zoo stage's), id -> recorded store path."""
        cleaned = self.outputs("clean").get("members")
        members: dict[str, str] = cleaned or self.outputs("zoo").get("members") or {}
        return members

    def shown_scored(self) -> tuple[Dataset, Scored, str, str] | None:
        """(training store, scoring, name, recorded store) of the model whose per-class
        figures the report shows on the scored split (`shown_model`); None before the zoo
        stage has predictions."""
        train, scored = self.train, self.scored
        entry = self.shown_model(scored.split) if scored is not None else None
        if train is None or scored is None or entry is None:
            return None
        return train, scored, *entry

    def shown_model(self, split: str) -> tuple[str, str] | None:
        """(name, recorded store) of the model whose per-class figures the report shows: the
        final model the run deploys (`final_stage`), else the ensemble's teacher, else the
        member of best figure: the first with predictions on ``split``; None without one."""
        stage = final_stage(self.run)
        final = self.outputs(stage)["final"] if stage is not None else {}
        form = "re-balanced final model" if stage == "longtail" else "final model"
        stores = self.outputs("ensemble").get("stores", {})
        teacher = self.outputs("ensemble").get("teacher")
        candidates = [(f"{form} {m}", p) for m, p in final.items()]
        if teacher in stores:
            candidates.append((f"the ensemble's {teacher}", stores[teacher]))
        members = self.member_stores()

        def figure(member: str) -> float:
            metrics = self.store(members[member]).fold_metrics.get(split, {})
            return float(metrics.get("metric", -np.inf))

        ranked = sorted(members, key=figure, reverse=True)
        candidates += [(f"member {m}", members[m]) for m in ranked]
        for name, recorded in candidates:
            if split in self.store(recorded).splits:
                return name, recorded
        return None
