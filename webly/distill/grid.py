"""Train a zoo at every distillation setting of a grid and keep, per member, the setting of
best validation figure (`webly.distill.settings.choose`): the loop of
`webly.distill.run.run_distill`, for the students and for the final model.

Validation is what each kind of model has without the test split: a student trained out of
fold is scored by its out-of-fold metric (`oof_figure`), or by its fold models' mean prediction
of a validation split carved before the zoo when there is one (`split_figure`); a model trained
on every row by its metric on the rows its training held out, or on that split when it
validated on it (`held_out_figure`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webly.data.store import Dataset
from webly.distill.settings import Setting, choose
from webly.errors import ConfigError
from webly.metrics.evaluate import task_metric
from webly.train.oof import (
    FIT_FILE,
    FULL_DIR,
    MODEL_DIR,
    STORE_DIR,
    MemberResult,
    ZooResult,
    predict_members,
)
from webly.train.zoo import Zoo

Validate = Callable[[Path, MemberResult], "float | None"]
"""A trained member's validation figure, given the folder of its setting (``folder/<id>``)."""


@dataclass(frozen=True)
class Tried:
    """One member trained at one setting: its result, validation figure and whether kept."""

    setting: Setting
    result: MemberResult
    valid: float | None
    chosen: bool

    def row(self) -> dict[str, Any]:
        """The JSON-able record of a stage summary: model, setting, lam, temperature, whether
        it learns mixed rows (``mixup``) or frame views (``views``), validation and test
        figures, seconds, error and whether it was kept."""
        m = self.result
        return {
            "model": m.id, "setting": self.setting.name, "lam": self.setting.lam,
            "temperature": self.setting.temperature, "k": self.setting.k,
            "mixup": self.setting.extra == "mixup",
            "views": self.setting.extra == "views",
            "valid": self.valid, "test": m.test_metric,
            "seconds": round(m.seconds, 1), "error": m.error, "chosen": self.chosen,
        }  # fmt: skip


@dataclass(frozen=True)
class GridResult:
    """Every member at every setting (``tried``, setting by setting), and per member the one
    kept: ``kept`` results in zoo order, ``folders`` where each kept member was written."""

    tried: list[Tried]
    kept: list[MemberResult]
    folders: dict[str, Path]

    def setting(self, member: str) -> Setting:
        """The setting kept for ``member``."""
        return next(t.setting for t in self.tried if t.chosen and t.result.id == member)


def setting_folder(out: Path, setting: Setting, grid: Sequence[Setting]) -> Path:
    """Where the models of ``setting`` are written: ``out/<setting name>``, or ``out`` itself
    when the grid is that one setting."""
    return out if len(grid) == 1 else out / setting.name


def with_lam(zoo: Zoo, lam: float) -> Zoo:
    """``zoo`` with every member's label-loss weight (`TrainConfig.distill_lam`) at ``lam``."""
    return zoo.model_copy(update={"train": {**zoo.train, "distill_lam": lam}})


def fit_grid(
    grid: Sequence[Setting],
    out: str | Path,
    fit: Callable[[Setting, Path], ZooResult],
    validate: Validate,
) -> GridResult:
    """Train with ``fit(setting, folder)`` at every setting of ``grid`` (into
    `setting_folder`) and keep per member the setting `choose` picks among ``validate``'s
    figures (a member that failed at every setting keeps the first, with its error)."""
    out = Path(out)
    runs = {s: (setting_folder(out, s, grid), fit(s, setting_folder(out, s, grid))) for s in grid}
    figures = {
        (s, m.id): None if m.error is not None else validate(folder, m)
        for s, (folder, result) in runs.items()
        for m in result.members
    }
    kept, folders, best = [], {}, {}
    for member in runs[grid[0]][1].members:
        results = [next(m for m in runs[s][1].members if m.id == member.id) for s in grid]
        try:
            chosen = choose([figures[s, member.id] for s in grid])
        except ConfigError:
            chosen = 0
        best[member.id] = grid[chosen]
        kept.append(results[chosen])
        folders[member.id] = runs[grid[chosen]][0]
    tried = [
        Tried(s, m, figures[s, m.id], best[m.id] == s)
        for s, (_, result) in runs.items()
        for m in result.members
    ]
    return GridResult(tried, kept, folders)


def oof_figure(folder: Path, member: MemberResult) -> float | None:
    """A student's validation figure: its out-of-fold metric."""
    return member.oof_metric


def split_figure(train: Dataset, valid: Dataset) -> Validate:
    """A student's validation figure on ``valid``, a split no teacher model trained on: the
    metric of its fold models' mean prediction of it (`predict_members`)."""

    def figure(folder: Path, member: MemberResult) -> float:
        stores = {member.id: folder / member.id / STORE_DIR}
        return task_metric(predict_members(stores, train, valid)[member.id], valid.labels,
                           valid.task)  # fmt: skip

    return figure


def held_out_figure(folder: Path, member: MemberResult) -> float | None:
    """A model trained on every row: its metric on the rows its training held out (or on the
    validation store it was given), at the epoch whose weights it kept
    (``folder/<id>/full/model/fit.json``); None when it held out none."""
    path = folder / member.id / FULL_DIR / MODEL_DIR / FIT_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    best = record.get("best_epoch")
    return None if best is None else float(record["history"][best - 1]["metric"])
