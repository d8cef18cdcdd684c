"""The ``distill`` stage: students trained on the ensemble's soft labels, and the final model.

``RUN/distill/students/<setting>/<id>/`` are zoo members (`fit_oof`, out-of-fold and test
predictions) trained with the teacher's out-of-fold predictions as soft targets;
``RUN/distill/final/<setting>/<id>/`` is one model trained on every training row (`fit_full`).
Its ``model/`` folder is what compress and export take.

Nothing is chosen on the test split (`webly.distill.settings`). Every model is trained at each
setting of the recipe's grid (``distill.lam``; 1.0 is the labels-only twin; the final model
with ``distill.mixup`` also on mixed rows of the rows it trains on, `webly.distill.mixed`) and
keeps the one of best validation figure: a student its out-of-fold metric, the final model its
metric on the rows its training held out (`webly.train.oof.held_out_rows`); a tie keeps the
twin. The final model's teacher, with ``teacher: best``, is the one of best out-of-fold metric
against the training labels among the ensemble's entries and the students' mean. The summary
records every teacher and setting tried with its validation (and test) figure, which was kept,
and each teacher's figure on the final's held-out rows. Those rows are unseen by the final
model but not by its teacher's fold models, whose predictions of the other rows it learns: the
validation figure of a distilled setting is optimistic against the twin's (bench/RESULTS.md,
"Distillation chosen on validation").

With ``distill.unlabeled`` both also train on the data's unlabeled split, taught there by the
same teacher's predictions of it (`webly.distill.unlabeled`): the ensemble entry applied to the
zoo members' predictions of those rows (`webly.train.oof.predict_zoo`, the mean of each
member's fold models), the family's mean, or the students' mean. Each member's predictions of
them (and of mixed rows) are kept in ``RUN/distill/unlabeled/``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from webly._fs import write_atomic
from webly.config import Recipe
from webly.data.store import Dataset
from webly.distill.grid import (
    GridResult,
    Tried,
    fit_grid,
    held_out_figure,
    oof_figure,
    with_lam,
)
from webly.distill.mixed import mix_rows
from webly.distill.pseudo import PseudoLabels
from webly.distill.settings import Setting, settings
from webly.distill.soft_labels import families, family_teacher, soft_targets
from webly.distill.unlabeled import teach_unlabeled
from webly.ensemble.budget import format_size, parse_size
from webly.ensemble.fit import load_entry
from webly.errors import ConfigError, DataError
from webly.metrics.evaluate import task_metric
from webly.metrics.ranking import TopK
from webly.predictions import Predictions, merge_topk
from webly.rundir import DataRecord, DistillRecord, EnsembleRecord, FoldsRecord
from webly.stages.context import StageContext, StageResult, splits
from webly.stages.ensemble import stage_members
from webly.train.loop import held_out_rows as loop_held_out_rows
from webly.train.oof import (
    FULL_DIR,
    MODEL_DIR,
    STORE_DIR,
    MemberResult,
    ZooResult,
    fit_full,
    fit_oof,
    held_out_rows,
    predict_zoo,
    zoo_settings,
)
from webly.train.zoo import Zoo, manifest_hash, plan_zoo

UNLABELED_DIR, MIXED_DIR = "unlabeled", "mixed"
BEST, STUDENTS = "best", "students"
"""``distill.teacher`` values beside an entry's name: chosen on validation; the students' mean
(for the final model; the students learn from the ensemble's best entry)."""
STUDENTS_MEAN = "students' mean"
Predict = Callable[[Dataset], TopK]
"""A teacher's prediction of the rows of a store: ``(len(data), k)`` probabilities."""


def distill_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.distill
    return {
        "distill": section.model_dump(mode="json") if section else None,
        "zoos": {name: zoo_settings(zoo) for name, zoo in recipe.student_zoos().items()},
    }


def make_distill(ctx: StageContext) -> StageResult:
    """Train the students (out-of-fold) and the final model (every row) at every setting of
    the grid, each keeping the one of best validation figure."""
    section = ctx.recipe.distill
    if section is None:
        return StageResult(key="not in the recipe")
    train, test = splits(ctx)
    zoos = ctx.recipe.student_zoos()
    if section.max_size is not None:
        for where, zoo in zoos.items():
            _check_size(zoo, train, parse_size(section.max_size), where)
    lessons = _Lessons(ctx, train, _unlabeled(ctx))
    results: list[MemberResult] = []
    students: dict[str, Path] = {}  # the kept students: id -> folder of their setting
    students_tried = None
    if "students" in zoos:
        folds = np.load(ctx.need(FoldsRecord).folds)
        taught = _fit_students(ctx, zoos["students"], settings(section.lam), lessons, test, folds)
        results += taught.kept
        students = {m.id: taught.folders[m.id] for m in taught.kept if m.error is None}
        students_tried = [t.row() for t in taught.tried]
    key, teacher, final_tried, final_setting, distilled = "", None, None, None, None
    final_store: dict[str, Path] = {}
    model = None
    if "final" in zoos:
        grid = settings(section.lam, mixup=section.mixup is not None)
        final, teacher = _fit_final(ctx, zoos["final"], grid, lessons, test, students)
        (member,) = final.kept
        results.append(member)
        final_tried = [t.row() for t in final.tried]
        final_setting = final.setting(member.id).name
        distilled = not final.setting(member.id).twin
        if member.error is None:
            path = final.folders[member.id] / member.id
            final_store = {member.id: path / STORE_DIR}
            model = path / FULL_DIR / MODEL_DIR
            key = _final_key(member, final.tried)
    errors = [f"student {m.id} failed: {m.error}" for m in results if m.error is not None]
    done = [m for m in results if m.error is None]
    return StageResult(
        key=f"{len(done)} of {len(results)} students done{key}",
        record=DistillRecord(
            students={name: folder / name / STORE_DIR for name, folder in students.items()},
            final=final_store, model=model, table=ZooResult(results).table(),
            unlabeled_rows=0 if lessons.unlabeled is None else int(lessons.unlabeled[1].size),
            students_tried=students_tried, teacher=teacher, final_tried=final_tried,
            final_setting=final_setting, distilled=distilled,
        ),
        errors=tuple(errors),
    )  # fmt: skip


@dataclass(frozen=True)
class _Lessons:
    """What a distilled model learns at a `Setting` besides the labels: its teacher's soft
    targets of the training rows, and extra rows (mixed training rows, or the unlabeled
    split) taught by the teacher's prediction of them; the twin learns neither."""

    ctx: StageContext
    train: Dataset
    unlabeled: tuple[Dataset, np.ndarray] | None

    def targets(self, teacher: TopK, setting: Setting) -> sp.csr_matrix | None:
        """``(n_samples, n_classes)`` soft targets of ``teacher``'s out-of-fold predictions."""
        section = self.ctx.recipe.distill
        assert section is not None
        if setting.twin:
            return None
        return soft_targets(teacher, self.train.n_classes, self.train.task, k=section.k,
                            min_score=section.min_score)  # fmt: skip

    def extra(
        self, predict: Predict, setting: Setting, rows: np.ndarray | None = None
    ) -> PseudoLabels | None:
        """The extra rows of ``setting`` with ``predict``'s predictions of them as targets;
        mixed rows are mixes of the training rows ``rows`` (the model's own: none it validates
        on)."""
        section = self.ctx.recipe.distill
        assert section is not None
        if setting.twin:
            return None
        if setting.mixup:
            assert section.mixup is not None and rows is not None  # the final model's only
            data = mix_rows(self.train, self.ctx.folder / MIXED_DIR, section.mixup,
                            self.ctx.recipe.seed, rows=rows, overwrite=True)  # fmt: skip
            return teach_unlabeled(predict(data), data, np.arange(len(data)), k=section.k,
                                   min_score=section.min_score)  # fmt: skip
        if self.unlabeled is None:
            return None
        data, rows = self.unlabeled
        options = section.unlabeled
        assert options is not None  # _unlabeled returns None without it
        return teach_unlabeled(
            predict(data.subset(rows)), data, rows, threshold=options.threshold,
            soft=options.soft, k=section.k, min_score=section.min_score, alpha=options.alpha,
            t1=options.t1, t2=options.t2,
        )  # fmt: skip


def _fit_students(
    ctx: StageContext,
    zoo: Zoo,
    grid: Sequence[Setting],
    lessons: _Lessons,
    test: Dataset | None,
    folds: np.ndarray,
) -> GridResult:
    """The students out of fold at every setting, each keeping its best out-of-fold one."""
    taught = _teachers(ctx, zoo, lessons.train, with_test=test is not None)

    def fit(setting: Setting, folder: Path) -> ZooResult:
        return ZooResult([
            m
            for part, teacher, predict in taught
            for m in fit_oof(
                with_lam(part, setting.lam), lessons.train, test, folder, folds,
                lessons.targets(teacher, setting), executor=ctx.executor,
                pseudo=lessons.extra(predict, setting),
            ).members
        ])  # fmt: skip

    return fit_grid(grid, ctx.folder / "students", fit, oof_figure)


def _fit_final(
    ctx: StageContext,
    zoo: Zoo,
    grid: Sequence[Setting],
    lessons: _Lessons,
    test: Dataset | None,
    students: dict[str, Path],
) -> tuple[GridResult, dict[str, Any]]:
    """The final model on every row at every setting, taught by the candidate teacher of best
    out-of-fold metric against the training labels, keeping its best setting on the rows its
    training held out; and the summary of the teacher's choice."""
    train = lessons.train
    (member,) = plan_zoo(zoo, train)
    config = member.train_config(0)  # the seeds of a model trained on every row (fit_full)
    held_out = loop_held_out_rows(len(train), config.valid_fraction, config.seed)
    trained = np.setdiff1d(np.arange(len(train)), held_out if held_out is not None else [])
    teachers = _final_teachers(ctx, zoo, train, students, test is not None)
    figures = {n: task_metric(top, train.labels, train.task) for n, (top, _) in teachers.items()}
    name = max(figures, key=lambda n: figures[n])
    teacher, predict = teachers[name]

    def fit(setting: Setting, folder: Path) -> ZooResult:
        return fit_full(
            with_lam(zoo, setting.lam), train, test, folder, lessons.targets(teacher, setting),
            executor=ctx.executor, pseudo=lessons.extra(predict, setting, trained),
        )  # fmt: skip

    final = fit_grid(grid, ctx.folder / "final", fit, held_out_figure)
    (kept,) = final.kept
    held = held_out_rows(final.folders[kept.id] / kept.id / FULL_DIR / MODEL_DIR)
    on_held = None
    if held is not None:
        on_held = {
            n: task_metric(_rows(top, held), train.labels[held], train.task)
            for n, (top, _) in teachers.items()
        }
    choice = {
        "final": name,
        "students": _students_teacher(ctx) if students else None,
        "chosen on": "out-of-fold metric against the training labels",
        "candidates": figures,
        "on the final's held-out rows": on_held,
    }
    return final, choice


def _final_key(member: MemberResult, tried: Sequence[Tried]) -> str:
    """The stage key's words on the final model: its test figure (reported, never chosen on),
    then the setting kept and why (its validation figure against the twin's)."""
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


def _rows(top: TopK, rows: np.ndarray) -> TopK:
    """The predictions of ``rows`` only."""
    return TopK(top.indices[rows], top.scores[rows])


def _students_teacher(ctx: StageContext) -> str:
    """Who taught the students: the ensemble entry (``best``: of best out-of-fold metric, as
    the ensemble stage chose it), or each student's family."""
    section = ctx.recipe.distill
    assert section is not None
    if section.family:
        return "family mean"
    if section.teacher in (BEST, STUDENTS):
        return ctx.need(EnsembleRecord).teacher
    return section.teacher


def _final_teachers(
    ctx: StageContext, zoo: Zoo, train: Dataset, students: dict[str, Path], with_test: bool
) -> dict[str, tuple[TopK, Predict]]:
    """The final model's candidate teachers, each its out-of-fold predictions of the training
    rows and its prediction of other rows: with ``teacher: best`` every ensemble entry (or
    with ``family`` the family's mean) and the kept students' mean; with ``teacher:
    students`` that mean alone; else the named entry."""
    section = ctx.recipe.distill
    assert section is not None
    candidates: dict[str, tuple[TopK, Predict]] = {}
    if section.family:
        ((_, top, predict),) = _teachers(ctx, zoo, train, with_test)
        candidates["family mean"] = (top, predict)
    else:
        stores = ctx.need(EnsembleRecord).stores
        names = {BEST: list(stores), STUDENTS: []}.get(section.teacher, [section.teacher])
        for name in names:
            path = stores[name]
            candidates[name] = (
                Predictions.open(path).oof.topk(),
                partial(_entry_prediction, ctx, path, train),
            )
    if students and (section.teacher in (BEST, STUDENTS) or section.family):
        tops = [Predictions.open(f / n / "predictions").oof.topk() for n, f in students.items()]
        candidates[STUDENTS_MEAN] = (
            merge_topk(tops),
            partial(_students_mean, ctx, students, train),
        )
    return candidates


def _check_size(zoo: Zoo, train: Dataset, max_bytes: int, where: str) -> None:
    """Refuse a student whose float32 weights exceed ``max_bytes`` (built, not trained)."""
    for member in plan_zoo(zoo, train):
        model = member.build(train.n_classes, 0)
        size = 4 * sum(p.numel() for p in model.parameters())
        if size > max_bytes:
            raise ConfigError(
                f"distill.{where}: {member.id} has {format_size(size)} of float32 weights, above "
                f"distill.max_size {format_size(max_bytes)}; shrink its hparams or raise max_size"
            )


Teacher = tuple[Zoo, TopK, Callable[[Dataset], TopK]]


def _teachers(ctx: StageContext, zoo: Zoo, train: Dataset, with_test: bool) -> list[Teacher]:
    """The students of ``zoo`` split by teacher: one (zoo, out-of-fold teacher, the teacher's
    prediction of other rows) triple, or one per model family when ``distill.family``."""
    section = ctx.recipe.distill
    assert section is not None
    if not section.family:
        ensemble = ctx.need(EnsembleRecord)
        best = section.teacher in (BEST, STUDENTS)  # the students learn from an entry
        path = ensemble.stores[ensemble.teacher if best else section.teacher]
        predict = partial(_entry_prediction, ctx, path, train)
        return [(zoo, Predictions.open(path).oof.topk(), predict)]
    members = stage_members(ctx, None, with_test)
    grouped = families(members)
    pairs: list[Teacher] = []
    for family in dict.fromkeys(m.name for m in zoo.members):
        if family not in grouped:
            raise DataError(
                f"distill.family: no {family} member of the zoo was trained, so its students "
                "have no teacher; fix the zoo or set family: false"
            )
        chosen = zoo.model_copy(update={"members": [m for m in zoo.members if m.name == family]})
        mean = partial(_members_mean, ctx, grouped[family], train)
        pairs.append((chosen, family_teacher(members, grouped[family]), mean))
    return pairs


def _entry_prediction(ctx: StageContext, store: Path, train: Dataset, data: Dataset) -> TopK:
    """An ensemble entry's (its store at ``store``) prediction of ``data``."""
    entry = load_entry(store)
    predicted = _member_predictions(ctx, entry.members, train, data)
    return entry.predict([predicted[name] for name in entry.members])


def _members_mean(ctx: StageContext, names: list[str], train: Dataset, data: Dataset) -> TopK:
    """The mean of the named zoo members' predictions of ``data`` (a family's teacher)."""
    predicted = _member_predictions(ctx, names, train, data)
    return merge_topk([predicted[name] for name in names])


def _students_mean(
    ctx: StageContext, students: dict[str, Path], train: Dataset, data: Dataset
) -> TopK:
    """The mean of the chosen students' (id -> folder of their setting) predictions of
    ``data``: the final model's teacher of other rows when it is the students' mean."""
    section = ctx.recipe.student_zoos()["students"]
    by_folder: dict[Path, list[str]] = {}
    for name, folder in students.items():
        by_folder.setdefault(folder, []).append(name)
    predicted: dict[str, TopK] = {}
    for folder, names in by_folder.items():
        chosen = section.model_copy(
            update={"members": [m for m in section.members if m.member_id in names]}
        )
        predicted |= _predict_kept(ctx, chosen, train, data, folder)
    return merge_topk([predicted[name] for name in students])


def _member_predictions(
    ctx: StageContext, names: Sequence[str], train: Dataset, data: Dataset
) -> dict[str, TopK]:
    """The named zoo members' (those the run ends with: `RunDir.members`) predictions of
    ``data``: each the mean of its fold models (`predict_zoo`)."""
    paths = ctx.rundir.members()
    by_folder: dict[Path, list[str]] = {}
    for name in names:  # a member's store is OUT/<id>/predictions
        by_folder.setdefault(paths[name].parent.parent, []).append(name)
    predicted: dict[str, TopK] = {}
    for folder, chosen in by_folder.items():
        zoo = ctx.recipe.zoo
        subset = zoo.model_copy(update={"members": [m for m in zoo.members
                                                    if m.member_id in chosen]})  # fmt: skip
        predicted |= _predict_kept(ctx, subset, train, data, folder)
    return predicted


def _predict_kept(
    ctx: StageContext, zoo: Zoo, train: Dataset, data: Dataset, folder: Path
) -> dict[str, TopK]:
    """`predict_zoo` of the members trained in ``folder``, each one's predictions kept in
    ``RUN/distill/unlabeled/`` under a digest of its config hash and of ``data``: a resumed
    stage predicts nothing twice, and its students find the very targets they were hashed
    with (inference is not bit-stable across thread counts)."""
    kept = ctx.folder / UNLABELED_DIR
    rows = f"{manifest_hash(data)}:{len(data)}"
    files = {}
    for member in zoo.members:
        store = Predictions.open(folder / member.member_id / "predictions")
        text = f"{store.model['config_hash']}:{rows}"
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        files[member.member_id] = kept / f"{member.member_id}-{digest}.npz"
    missing = [m for m in zoo.members if not files[m.member_id].is_file()]
    if missing:
        kept.mkdir(parents=True, exist_ok=True)
        predicted = predict_zoo(zoo.model_copy(update={"members": missing}), train, data, folder)
        for name, top in predicted.items():
            buffer = io.BytesIO()
            np.savez(buffer, indices=top.indices, scores=top.scores)
            write_atomic(files[name], buffer.getvalue())
    loaded = {}
    for name, path in files.items():
        with np.load(path) as saved:
            loaded[name] = TopK(saved["indices"], saved["scores"])
    return loaded


def _unlabeled(ctx: StageContext) -> tuple[Dataset, np.ndarray] | None:
    """The unlabeled store and the rows of it the students learn (``distill.unlabeled``)."""
    section = ctx.recipe.distill
    if section is None or section.unlabeled is None:
        return None
    path = ctx.need(DataRecord).unlabeled
    assert path is not None  # the recipe has one (Recipe._second_level)
    data = Dataset.open(path)
    n = len(data) if section.unlabeled.max_rows is None else section.unlabeled.max_rows
    return data, np.arange(min(n, len(data)))
