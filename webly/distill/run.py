"""`run_distill`: a recipe's ``distill`` section run, the one call behind the pipeline's
``distill`` stage and ``webly distill``.

``OUT/students/<setting>/<id>/`` are zoo members (`fit_oof`, out-of-fold and test predictions)
trained with the teacher's out-of-fold predictions as soft targets; ``OUT/final/<setting>/<id>/``
is one model trained on every training row (`fit_full`). Its ``full/model/`` folder is what
compress and export take.

Nothing is chosen on the test split (`webly.distill.settings`). Every model is trained at each
setting of the section's grid (``lam``; 1.0 is the labels-only twin; the final model with
``mixup`` also on mixed rows of the rows it trains on, `webly.distill.mixed`, and with
``frame_views`` on frame-subset views of them, `webly.distill.views`) and keeps the one
of best validation figure: a student its out-of-fold metric, the final model its metric on the
rows its training held out (`webly.train.oof.held_out_rows`); a tie keeps the twin. With a
validation split (below) both are scored there instead. The final
model's teacher, with ``teacher: best``, is the one of best out-of-fold metric against the
training labels among the ensemble's entries and the students' mean (`webly.distill.teachers`).
The summary records every teacher and setting tried with its validation (and test) figure,
which was kept, and each teacher's figure on the final's held-out rows. Those rows are unseen
by the final model but not by its teacher's fold models, whose predictions of the other rows it
learns: the validation figure of a distilled setting is optimistic against the twin's
(bench/RESULTS.md, "Distillation chosen on validation"). A validation split carved out of the
training data before the zoo (``DistillInputs.valid``, ``data.valid_fraction``) has no such
leak: with one, the final model early-stops on it, and its teacher and setting are chosen there.

With ``unlabeled`` both also train on the data's unlabeled split, taught there by the same
teacher's predictions of it (`webly.distill.unlabeled`); with ``max_size`` a model whose
float32 weights are larger is refused before anything trains.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from webly._fs import write_atomic
from webly.config import DistillConfig, k_grid, student_zoos
from webly.core import TopK
from webly.data.store import Dataset
from webly.distill.grid import (
    GridResult,
    Tried,
    fit_grid,
    held_out_figure,
    oof_figure,
    split_figure,
    with_lam,
)
from webly.distill.mixed import mix_rows
from webly.distill.pseudo import PseudoLabels
from webly.distill.settings import Setting, final_extras, settings
from webly.distill.soft_labels import sharpen, soft_targets
from webly.distill.teachers import (
    FAMILY_MEAN,
    UNLABELED_DIR,
    DistillInputs,
    Predict,
    Teachers,
    check_teacher,
)
from webly.distill.unlabeled import teach_unlabeled
from webly.distill.views import check_frames, frame_views
from webly.errors import ConfigError
from webly.executor import Executor
from webly.metrics.evaluate import task_metric
from webly.sizes import format_size, parse_size
from webly.train.loop import held_out_rows as loop_held_out_rows
from webly.train.oof import (
    FULL_DIR,
    MODEL_DIR,
    MemberResult,
    ZooResult,
    check_valid,
    fit_full,
    fit_oof,
    held_out_rows,
)
from webly.train.zoo import Zoo, plan_zoo

MIXED_DIR = "mixed"
SUMMARY_FILE = "summary.json"
"""``OUT/summary.json``: what was tried and kept (`DistillResult.summary`), for ``webly distill``
users as the stage's manifest records it."""
VIEWS_DIR = "views"


@dataclass(frozen=True)
class DistillResult:
    """What a run made. ``members``: every kept student, then the final model (failed ones
    with their error); ``students``: each kept, trained student's prediction store by id;
    ``final``: the final model's id and store, ``model``: its saved network (None when it
    failed or the section has none); ``summary``: the JSON record of what was tried and kept;
    ``key``: the run in one line."""

    members: list[MemberResult]
    students: dict[str, Path]
    final: dict[str, Path]
    model: Path | None
    summary: dict[str, Any]
    key: str

    @property
    def errors(self) -> tuple[str, ...]:
        """One line per failed model."""
        return tuple(f"student {m.id} failed: {m.error}" for m in self.members if m.error)


def run_distill(
    section: DistillConfig,
    inputs: DistillInputs,
    out: str | Path,
    *,
    executor: Executor | None = None,
) -> DistillResult:
    """Train the students (out-of-fold) and the final model (every row) of ``section`` at
    every setting of its grid, each keeping the one of best validation figure; write them to
    ``out`` (see the module notes). ``executor``: where the fold models train (None: here)."""
    out = Path(out)
    train = inputs.train
    zoos = student_zoos(section, inputs.zoo)
    check_teacher(section, inputs)
    if section.frame_views is not None and "final" in zoos:
        check_frames(train)
    if inputs.valid is not None:
        for zoo in zoos.values():
            check_valid(zoo, train, inputs.valid)
    if section.max_size is not None:
        for where, zoo in zoos.items():
            _check_size(zoo, train, parse_size(section.max_size), where)
    teachers = Teachers(section, inputs, out / UNLABELED_DIR, zoos.get("students"))
    lessons = _Lessons(section, train, _unlabeled(section, inputs), out, inputs.zoo.seed)
    summary: dict[str, Any] = {}
    results: list[MemberResult] = []
    kept: dict[str, Path] = {}  # the kept students: id -> folder of their setting
    if "students" in zoos:
        validate = oof_figure if inputs.valid is None else split_figure(train, inputs.valid)
        taught = fit_grid(
            settings(section.lam, (), section.temperature, section.k), out / "students",
            _students_fit(zoos["students"], teachers, lessons, inputs, executor), validate,
        )  # fmt: skip
        results += taught.kept
        kept = {m.id: taught.folders[m.id] for m in taught.kept if m.error is None}
        summary["students_tried"] = [t.row() for t in taught.tried]
    final: dict[str, Path] = {}
    model, key = None, ""
    if "final" in zoos:
        grid = settings(section.lam, final_extras(section), section.temperature, section.k)
        trained, teacher = _fit_final(zoos["final"], grid, teachers, lessons, inputs, kept, out,
                                      executor)  # fmt: skip
        (member,) = trained.kept
        results.append(member)
        summary |= {
            "teacher": teacher,
            "final_tried": [t.row() for t in trained.tried],
            "final_setting": trained.setting(member.id).name,
            "distilled": not trained.setting(member.id).twin,
        }
        if member.error is None:
            folder = trained.folders[member.id] / member.id
            final = {member.id: folder / "predictions"}
            model = folder / FULL_DIR / MODEL_DIR
            key = _final_key(member, trained.tried)
    done = [m for m in results if m.error is None]
    summary = {
        "students": ZooResult(results).table(),
        "unlabeled_rows": 0 if lessons.unlabeled is None else int(lessons.unlabeled[1].size),
        **summary,
    }
    write_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=1).encode())
    return DistillResult(
        members=results,
        students={name: folder / name / "predictions" for name, folder in kept.items()},
        final=final,
        model=model,
        summary=summary,
        key=f"{len(done)} of {len(results)} students done{key}",
    )


@dataclass(frozen=True)
class _Lessons:
    """What a distilled model learns at a `Setting` besides the labels: its teacher's soft
    targets of the training rows, and extra rows (mixed training rows or their frame-subset
    views, written in ``out``'s `MIXED_DIR` and `VIEWS_DIR`, or the unlabeled split) taught by
    the teacher's prediction of them; the twin learns neither."""

    section: DistillConfig
    train: Dataset
    unlabeled: tuple[Dataset, np.ndarray] | None
    out: Path
    seed: int

    def _k(self, setting: Setting) -> int:
        """The teacher's top classes ``setting`` keeps a row."""
        return setting.k if setting.k is not None else k_grid(self.section.k)[0]

    def targets(self, teacher: TopK, setting: Setting) -> sp.csr_matrix | None:
        """``(n_samples, n_classes)`` soft targets of ``teacher``'s out-of-fold predictions."""
        if setting.twin:
            return None
        return soft_targets(
            sharpen(teacher, setting.temperature, self.train.task), self.train.n_classes,
            self.train.task, k=self._k(setting), min_score=self.section.min_score,
        )  # fmt: skip

    def extra(
        self, predict: Predict, setting: Setting, rows: np.ndarray | None = None
    ) -> PseudoLabels | None:
        """The extra rows of ``setting`` with ``predict``'s predictions of them as targets;
        mixed rows and views are made of the training rows ``rows`` (the model's own: none it
        validates on)."""
        section = self.section
        if setting.twin:
            return None

        def taught(data: Dataset) -> TopK:  # the teacher's predictions at the temperature
            return sharpen(predict(data), setting.temperature, self.train.task)

        if setting.extra is not None:
            assert rows is not None  # the final model's only
            if setting.extra == "mixup":
                assert section.mixup is not None
                data = mix_rows(self.train, self.out / MIXED_DIR, section.mixup, self.seed,
                                rows=rows, overwrite=True)  # fmt: skip
            else:
                assert section.frame_views is not None
                data = frame_views(self.train, self.out / VIEWS_DIR, section.frame_views,
                                   self.seed, rows=rows, overwrite=True)  # fmt: skip
            return teach_unlabeled(taught(data), data, np.arange(len(data)), k=self._k(setting),
                                   min_score=section.min_score)  # fmt: skip
        if self.unlabeled is None:
            return None
        data, rows = self.unlabeled
        options = section.unlabeled
        assert options is not None  # _unlabeled returns None without it
        return teach_unlabeled(
            taught(data.subset(rows)), data, rows, threshold=options.threshold,
            soft=options.soft, k=self._k(setting), min_score=section.min_score,
            alpha=options.alpha,
            t1=options.t1, t2=options.t2,
        )  # fmt: skip


def _students_fit(
    zoo: Zoo,
    teachers: Teachers,
    lessons: _Lessons,
    inputs: DistillInputs,
    executor: Executor | None,
) -> Callable[[Setting, Path], ZooResult]:
    """`fit_grid`'s fit of the students out of fold, each taught by its teacher."""
    taught = teachers.of_students(zoo)

    def fit(setting: Setting, folder: Path) -> ZooResult:
        return ZooResult([
            m
            for part, teacher, predict in taught
            for m in fit_oof(
                with_lam(part, setting.lam), inputs.train, inputs.test, folder, inputs.folds,
                lessons.targets(teacher, setting), executor=executor,
                pseudo=lessons.extra(predict, setting),
            ).members
        ])  # fmt: skip

    return fit


def _fit_final(
    zoo: Zoo,
    grid: Sequence[Setting],
    teachers: Teachers,
    lessons: _Lessons,
    inputs: DistillInputs,
    students: Mapping[str, Path],
    out: Path,
    executor: Executor | None,
) -> tuple[GridResult, dict[str, Any]]:
    """The final model on every row at every setting, taught by the candidate teacher of best
    validation figure, keeping its best setting on validation; and the summary of the
    teacher's choice.

    Validation is the data's validation split when there is one (``inputs.valid``: rows no
    model of the run trained on): the final model early-stops on it, and teachers and settings
    are chosen by their metric there. Without one, teachers are chosen by their out-of-fold
    metric against the training labels and settings on the rows the final's training held
    out, whose labels its teacher's fold models learnt (the module notes)."""
    train, valid = inputs.train, inputs.valid
    candidates = teachers.of_final(zoo, students)
    if valid is not None:
        trained = np.arange(len(train))
        figures = {
            n: task_metric(predict(valid), valid.labels, valid.task)
            for n, (_, predict) in candidates.items()
        }
    else:
        (member,) = plan_zoo(zoo, train)
        config = member.train_config(0)  # the seeds of a model trained on every row (fit_full)
        held_out = loop_held_out_rows(len(train), config.valid_fraction, config.seed)
        trained = np.setdiff1d(np.arange(len(train)), held_out if held_out is not None else [])
        figures = {
            n: task_metric(top, train.labels, train.task) for n, (top, _) in candidates.items()
        }
    name = max(figures, key=lambda n: figures[n])
    teacher, predict = candidates[name]

    def fit(setting: Setting, folder: Path) -> ZooResult:
        return fit_full(
            with_lam(zoo, setting.lam), train, inputs.test, folder,
            lessons.targets(teacher, setting), executor=executor,
            pseudo=lessons.extra(predict, setting, trained), valid=valid,
        )  # fmt: skip

    final = fit_grid(grid, out / "final", fit, held_out_figure)
    (kept,) = final.kept
    choice: dict[str, Any] = {
        "final": name,
        "students": _students_teacher(teachers) if students else None,
    }
    if valid is not None:
        return final, choice | {"chosen on": "the validation split", "candidates": figures}
    held = held_out_rows(final.folders[kept.id] / kept.id / FULL_DIR / MODEL_DIR)
    on_held = None
    if held is not None:
        on_held = {
            n: task_metric(
                TopK(top.indices[held], top.scores[held]), train.labels[held], train.task
            )
            for n, (top, _) in candidates.items()
        }
    return final, choice | {
        "chosen on": "out-of-fold metric against the training labels",
        "candidates": figures,
        "on the final's held-out rows": on_held,
    }


def _students_teacher(teachers: Teachers) -> str:
    """Who taught the students: the ensemble entry, or each student's family."""
    return FAMILY_MEAN if teachers.section.family else teachers.students_entry()


def _final_key(member: MemberResult, tried: Sequence[Tried]) -> str:
    """The key's words on the final model: its test figure (reported, never chosen on), then
    the setting kept and why (its validation figure against the twin's)."""
    kept = next(t for t in tried if t.chosen)
    twin = next((t for t in tried if t.setting.twin), None)
    on_test = (
        f"{member.metric} {member.test_metric:.4f} (test); "
        if member.test_metric is not None
        else ""
    )
    if len(tried) == 1:
        why = f"{kept.setting.name}, the one setting tried"
    elif kept.setting.twin:
        why = "labels-only twin kept: no distillation setting beat it on validation"
    elif twin is not None and twin.valid is not None and kept.valid is not None:
        why = f"{kept.setting.name} chosen on validation ({kept.valid:.4f}, twin {twin.valid:.4f})"
    else:
        why = f"{kept.setting.name} chosen on validation"
    return f"; final {member.id}: {on_test}{why}"


def _check_size(zoo: Zoo, train: Dataset, max_bytes: int, where: str) -> None:
    """Refuse a model whose float32 weights exceed ``max_bytes`` (built, not trained)."""
    for member in plan_zoo(zoo, train):
        model = member.network(train.n_classes, 0)
        size = 4 * sum(p.numel() for p in model.parameters())
        if size > max_bytes:
            raise ConfigError(
                f"distill.{where}: {member.id} has {format_size(size)} of float32 weights, above "
                f"distill.max_size {format_size(max_bytes)}; shrink its hparams or raise max_size"
            )


def _unlabeled(section: DistillConfig, inputs: DistillInputs) -> tuple[Dataset, np.ndarray] | None:
    """The unlabeled store and the rows of it the models learn (``unlabeled.max_rows``)."""
    data, train = inputs.unlabeled, inputs.train
    if section.unlabeled is None:
        if data is not None:
            raise ConfigError(
                f"unlabeled data {data.path} was given but distill.unlabeled is not set; set it "
                "(--set 'unlabeled={}') or leave the data out"
            )
        return None
    if data is None:
        raise ConfigError(
            "distill.unlabeled: no unlabeled split was given; pass one (webly distill "
            "--unlabeled-data) or remove distill.unlabeled"
        )
    if data.n_classes != train.n_classes or data.task != train.task:
        raise ConfigError(
            f"unlabeled data {data.path} has {data.n_classes} {data.task} classes, training "
            f"data {train.n_classes} {train.task}; pass an unlabeled split of the same dataset"
        )
    n = len(data) if section.unlabeled.max_rows is None else section.unlabeled.max_rows
    return data, np.arange(min(n, len(data)))
