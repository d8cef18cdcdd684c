"""The ``distill`` stage: students trained on the ensemble's soft labels, and the final model.

``RUN/distill/students/<id>/`` are zoo members (`fit_oof`, out-of-fold and test predictions)
trained with the teacher's out-of-fold predictions as soft targets; ``RUN/distill/final/<id>/``
is one model trained on every training row (`fit_full`), taught by the mean of the students'
out-of-fold predictions (the second round: a small ensemble of students distilled into one
model) or, without students, by the teacher. Its ``model/`` folder is what compress and
export take.

With ``distill.unlabeled`` both also train on the data's unlabeled split, taught there by the
same teacher's predictions of it (`webly.distill.unlabeled`): the ensemble entry applied to the
zoo members' predictions of those rows (`webly.train.oof.predict_zoo`, the mean of each
member's fold models), the family's mean, or, for the final model, the students' mean. Each
member's predictions of them are kept in ``RUN/distill/unlabeled/``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from webly.config import Recipe
from webly.data.store import Dataset
from webly.distill.pseudo import PseudoLabels
from webly.distill.soft_labels import families, family_teacher, soft_targets
from webly.distill.unlabeled import teach_unlabeled
from webly.ensemble.budget import format_size, parse_size
from webly.ensemble.fit import load_entry
from webly.errors import ConfigError, DataError
from webly.metrics.ranking import TopK
from webly.predictions import Predictions, merge_topk
from webly.stages.context import StageContext, StageResult, splits, write_atomic
from webly.stages.ensemble import stage_members, trained_members
from webly.train.oof import MemberResult, ZooResult, fit_full, fit_oof, predict_zoo, zoo_settings
from webly.train.zoo import Zoo, manifest_hash, plan_zoo

UNLABELED_DIR = "unlabeled"


def distill_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.distill
    return {
        "distill": section.model_dump(mode="json") if section else None,
        "zoos": {name: zoo_settings(zoo) for name, zoo in recipe.student_zoos().items()},
    }


def make_distill(ctx: StageContext) -> StageResult:
    """Train the students (out-of-fold) and the final model (every row) on soft labels."""
    section = ctx.recipe.distill
    if section is None:
        return StageResult(key="not in the recipe")
    train, test = splits(ctx)
    zoos = ctx.recipe.student_zoos()
    if section.max_size is not None:
        for where, zoo in zoos.items():
            _check_size(zoo, train, parse_size(section.max_size), where)
    folds = np.load(ctx.run / ctx.inputs["folds"]["outputs"]["folds"])
    unlabeled = _unlabeled(ctx)

    def targets(teacher: TopK) -> sp.csr_matrix:
        return soft_targets(
            teacher, train.n_classes, train.task, k=section.k, min_score=section.min_score
        )

    def pseudo(predict: Callable[[Dataset], TopK]) -> PseudoLabels | None:
        """The unlabeled rows taught by ``predict`` (the teacher's prediction of a store)."""
        if unlabeled is None:
            return None
        data, rows = unlabeled
        options = section.unlabeled
        assert options is not None  # _unlabeled returns None without it
        return teach_unlabeled(
            predict(data.subset(rows)), data, rows, threshold=options.threshold,
            soft=options.soft, k=section.k, min_score=section.min_score, alpha=options.alpha,
            t1=options.t1, t2=options.t2,
        )  # fmt: skip

    outputs: dict[str, Any] = {}
    results: list[MemberResult] = []
    students: ZooResult | None = None
    if "students" in zoos:
        taught = _teachers(ctx, zoos["students"], train, with_test=test is not None)
        parts = [
            fit_oof(
                zoo,
                train,
                test,
                ctx.folder / "students",
                folds,
                targets(teacher),
                executor=ctx.executor,
                pseudo=pseudo(predict),
            )
            for zoo, teacher, predict in taught
        ]
        students = ZooResult([m for part in parts for m in part.members])
        results += students.members
        outputs["students"] = {
            m.id: f"{ctx.name}/students/{m.id}/predictions"
            for m in students.members
            if m.error is None
        }
    if "final" in zoos:
        if students is not None and outputs["students"]:
            stores = [Predictions.open(ctx.run / p) for p in outputs["students"].values()]
            teacher = merge_topk([store.oof.topk() for store in stores])
            trained = zoos["students"].model_copy(
                update={"members": [m for m in zoos["students"].members
                                    if m.member_id in outputs["students"]]}
            )  # fmt: skip
            predict: Callable[[Dataset], TopK] = partial(
                _students_mean, ctx, trained, train, ctx.folder / "students"
            )
        else:
            (_, teacher, predict), *_ = _teachers(
                ctx, zoos["final"], train, with_test=test is not None
            )
        final = fit_full(
            zoos["final"], train, test, ctx.folder / "final", targets(teacher),
            executor=ctx.executor, pseudo=pseudo(predict),
        )  # fmt: skip
        results += final.members
        (member,) = final.members
        if member.error is None:
            outputs["final"] = {member.id: f"{ctx.name}/final/{member.id}/predictions"}
            outputs["model"] = f"{ctx.name}/final/{member.id}/full/model"
    errors = [f"student {m.id} failed: {m.error}" for m in results if m.error is not None]
    done = [m for m in results if m.error is None]
    key = f"{len(done)} of {len(results)} students done"
    if "final" in outputs:
        (final_id,) = outputs["final"]
        figure = next(m.test_metric for m in results if m.id == final_id)
        if figure is not None:
            key += f"; final {final_id}: {results[-1].metric} {figure:.4f} (test)"
    return StageResult(
        key=key,
        outputs=outputs,
        summary={
            "students": ZooResult(results).table(),
            "unlabeled_rows": 0 if unlabeled is None else int(unlabeled[1].size),
        },
        errors=tuple(errors),
    )


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
        stores = ctx.inputs["ensemble"]["outputs"]["stores"]
        name = ctx.inputs["ensemble"]["outputs"]["teacher"] if section.teacher == "best" else None
        path = ctx.run / stores[name or section.teacher]
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
    ctx: StageContext, students: Zoo, train: Dataset, folder: Path, data: Dataset
) -> TopK:
    """The mean of the trained students' predictions of ``data`` (the final model's teacher)."""
    return merge_topk(list(_predict_kept(ctx, students, train, data, folder).values()))


def _member_predictions(
    ctx: StageContext, names: Sequence[str], train: Dataset, data: Dataset
) -> dict[str, TopK]:
    """The named zoo members' (the clean stage's last round when it ran) predictions of
    ``data``: each the mean of its fold models (`predict_zoo`)."""
    paths = trained_members(ctx)
    by_folder: dict[Path, list[str]] = {}
    for name in names:  # a member's store is OUT/<id>/predictions
        by_folder.setdefault((ctx.run / paths[name]).parent.parent, []).append(name)
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
    path = ctx.output("data", "unlabeled")
    assert path is not None  # the recipe has one (Recipe._second_level)
    data = Dataset.open(path)
    n = len(data) if section.unlabeled.max_rows is None else section.unlabeled.max_rows
    return data, np.arange(min(n, len(data)))
