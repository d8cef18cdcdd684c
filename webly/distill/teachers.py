"""The teachers of a distillation run (`webly.distill.run`) and their predictions of other rows.

A teacher is an ensemble entry (a blend or the stacker, `webly.ensemble.fit.load_entry`), the
mean of a model family's zoo members (``distill.family``), or the mean of the kept students
(the final model's, ``teacher: students`` or ``best``). Each is its out-of-fold predictions of
the training rows (the soft targets) and a function predicting other rows (mixed rows, the
unlabeled split) through the fold models of the zoo behind it (`webly.train.oof.predict_zoo`,
the mean of each member's fold models). Every member's predictions of such rows are kept in
``OUT/unlabeled/``: a resumed run predicts nothing twice, and its students find the very
targets they were hashed with (inference is not bit-stable across thread counts).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from webly._fs import write_atomic
from webly.config import DistillConfig
from webly.core import TopK
from webly.data.store import Dataset
from webly.distill.soft_labels import families, family_teacher
from webly.ensemble.fit import STACKER, load_entry
from webly.ensemble.members import open_members
from webly.errors import ConfigError, DataError
from webly.metrics.evaluate import task_metric
from webly.predictions import Predictions, merge_topk
from webly.train.oof import predict_zoo
from webly.train.zoo import Zoo, manifest_hash

UNLABELED_DIR = "unlabeled"
BEST, STUDENTS = "best", "students"
"""``distill.teacher`` values beside an entry's name: chosen on validation; the students' mean
(for the final model; the students learn from the ensemble's best entry)."""
STUDENTS_MEAN, FAMILY_MEAN = "students' mean", "family mean"
Predict = Callable[[Dataset], TopK]
"""A teacher's prediction of the rows of a store: ``(len(data), k)`` probabilities."""
Teacher = tuple[TopK, Predict]
"""A teacher: its out-of-fold predictions of the training rows and its `Predict`."""


@dataclass(frozen=True)
class DistillInputs:
    """What a distillation run reads.

    ``train``, ``test``: the training store and the store the models predict (None: no test
    split; the final model needs one). ``folds``: ``(n_samples,)`` fold of every training row,
    the zoo's. ``zoo``: the zoo that trained the teachers' members; its folds, seed, k,
    training defaults and ``keep_checkpoints`` are the students' too. ``members``: each trained
    zoo member's prediction store (``OUT/<id>/predictions`` of `webly.train.oof.fit_oof`).
    ``entries``: each ensemble entry's store by name (`webly.ensemble.fit.fit_ensemble`; empty
    with ``distill.family``). ``unlabeled``: the data's unlabeled split (``distill.unlabeled``).
    ``valid``: the data's validation split, carved out of training before the zoo (no teacher
    model trained on it), on which the final model is validated and chosen; None: the rows
    its training holds out.
    """

    train: Dataset
    test: Dataset | None
    folds: np.ndarray
    zoo: Zoo
    members: Mapping[str, Path]
    entries: Mapping[str, Path] = field(default_factory=dict)
    unlabeled: Dataset | None = None
    valid: Dataset | None = None

    def best_entry(self) -> str:
        """The ensemble entry of best out-of-fold metric against the training labels, as its
        store records it (`webly.ensemble.fit.fit_ensemble`); the first of equals."""
        figures = {
            name: float(Predictions.open(path).fold_metrics["oof"]["metric"])
            for name, path in self.entries.items()
        }
        return max(figures, key=lambda name: figures[name])


def ensemble_entries(folder: str | Path) -> dict[str, Path]:
    """Each entry's store in a folder `webly.ensemble.fit.fit_ensemble` wrote (``webly ensemble
    --out``), by the name the ensemble stage gives it: its blends' methods, then ``stacker``."""
    folder = Path(folder)
    stores = {p.name.removeprefix("blend-"): p for p in sorted(folder.glob("blend-*"))}
    stores[STACKER] = folder / STACKER / "predictions"
    found = {name: path for name, path in stores.items() if (path / "manifest.json").is_file()}
    if not found:
        raise DataError(
            f"{folder} holds no blend or stacker; pass the --out folder of webly ensemble"
        )
    return found


def check_teacher(section: DistillConfig, inputs: DistillInputs) -> None:
    """Refuse a ``distill.teacher`` the inputs do not make, before anything trains."""
    if section.family:
        return
    if not inputs.entries:
        raise ConfigError(
            "distill: the teacher comes from the ensemble and none was given; pass its entries "
            "(webly distill --ensemble ENSEMBLE_DIR) or set family: true"
        )
    known = [BEST, *inputs.entries] + ([STUDENTS] if section.students and section.final else [])
    if section.teacher not in known:
        raise ConfigError(
            f"distill.teacher: {section.teacher!r} is not an ensemble entry; use one of: "
            f"{', '.join(known)}"
        )


@dataclass(frozen=True)
class Teachers:
    """The teachers of one run: ``section`` says which, ``inputs`` holds them, ``folder``
    (``OUT/unlabeled``) keeps their members' predictions of other rows, and ``students`` is
    the students' zoo (None without students)."""

    section: DistillConfig
    inputs: DistillInputs
    folder: Path
    students: Zoo | None

    def of_students(self, zoo: Zoo) -> list[tuple[Zoo, TopK, Predict]]:
        """The students of ``zoo`` split by teacher: one (zoo, out-of-fold teacher, the
        teacher's prediction of other rows) triple, or one per model family with ``family``."""
        if not self.section.family:
            top, predict = self._entry(self.students_entry())
            return [(zoo, top, predict)]
        members = open_members(self.inputs.members, ("oof",))  # the teachers' own rows
        grouped = families(members)
        taught: list[tuple[Zoo, TopK, Predict]] = []
        for family in dict.fromkeys(m.name for m in zoo.members):
            if family not in grouped:
                raise DataError(
                    f"distill.family: no {family} member of the zoo was trained, so its students "
                    "have no teacher; fix the zoo or set family: false"
                )
            chosen = zoo.model_copy(update={"members": [m for m in zoo.members
                                                        if m.name == family]})  # fmt: skip
            mean = partial(self._members_mean, grouped[family])
            taught.append((chosen, family_teacher(members, grouped[family]), mean))
        return taught

    def of_final(self, zoo: Zoo, students: Mapping[str, Path]) -> dict[str, Teacher]:
        """The final model's candidate teachers by name: with ``teacher: best`` every ensemble
        entry (or with ``family`` the family's mean) and the kept students' mean (``students``:
        id -> folder of their setting); with ``teacher: students`` that mean alone; else the
        named entry."""
        section = self.section
        candidates: dict[str, Teacher] = {}
        if section.family:
            ((_, top, predict),) = self.of_students(zoo)
            candidates[FAMILY_MEAN] = (top, predict)
        else:
            names = {BEST: list(self.inputs.entries), STUDENTS: []}.get(
                section.teacher, [section.teacher]
            )
            candidates |= {name: self._entry(name) for name in names}
        if students and (section.teacher in (BEST, STUDENTS) or section.family):
            tops = [Predictions.open(f / n / "predictions").oof.topk() for n, f in students.items()]
            candidates[STUDENTS_MEAN] = (merge_topk(tops), partial(self._students_mean, students))
        return candidates

    def students_entry(self) -> str:
        """The ensemble entry that teaches the students: the named one, or with ``teacher:
        best`` or ``students`` the one of best metric on the validation split (its
        `Predict` of it), or out of fold without one (`DistillInputs.best_entry`)."""
        teacher, valid = self.section.teacher, self.inputs.valid
        if teacher not in (BEST, STUDENTS):
            return teacher
        if valid is None:
            return self.inputs.best_entry()
        figures = {
            name: task_metric(self._entry(name)[1](valid), valid.labels, valid.task)
            for name in self.inputs.entries
        }
        return max(figures, key=lambda name: figures[name])

    def _entry(self, name: str) -> Teacher:
        """The ensemble entry ``name``: its out-of-fold predictions and its `Predict`."""
        store = self.inputs.entries[name]
        return Predictions.open(store).oof.topk(), partial(self._entry_prediction, store)

    def _entry_prediction(self, store: Path, data: Dataset) -> TopK:
        """An ensemble entry's (its store at ``store``) prediction of ``data``."""
        entry = load_entry(store)
        predicted = self._member_predictions(entry.members, data)
        return entry.predict([predicted[name] for name in entry.members])

    def _members_mean(self, names: list[str], data: Dataset) -> TopK:
        """The mean of the named zoo members' predictions of ``data`` (a family's teacher)."""
        predicted = self._member_predictions(names, data)
        return merge_topk([predicted[name] for name in names])

    def _students_mean(self, students: Mapping[str, Path], data: Dataset) -> TopK:
        """The mean of the kept students' (id -> folder of their setting) predictions of
        ``data``: the final model's teacher of other rows when it is the students' mean."""
        assert self.students is not None  # kept students come from the students' zoo
        by_folder: dict[Path, list[str]] = {}
        for name, folder in students.items():
            by_folder.setdefault(folder, []).append(name)
        predicted: dict[str, TopK] = {}
        for folder, names in by_folder.items():
            predicted |= self._predict_kept(_subset(self.students, names), data, folder)
        return merge_topk([predicted[name] for name in students])

    def _member_predictions(self, names: Sequence[str], data: Dataset) -> dict[str, TopK]:
        """The named zoo members' predictions of ``data``: each the mean of its fold models
        (`predict_zoo`) in the folder its store is in."""
        by_folder: dict[Path, list[str]] = {}
        for name in names:  # a member's store is OUT/<id>/predictions
            by_folder.setdefault(Path(self.inputs.members[name]).parent.parent, []).append(name)
        predicted: dict[str, TopK] = {}
        for folder, chosen in by_folder.items():
            predicted |= self._predict_kept(_subset(self.inputs.zoo, chosen), data, folder)
        return predicted

    def _predict_kept(self, zoo: Zoo, data: Dataset, folder: Path) -> dict[str, TopK]:
        """`predict_zoo` of the members trained in ``folder``, each one's predictions kept in
        ``self.folder`` under a digest of its config hash and of ``data``."""
        rows = f"{manifest_hash(data)}:{len(data)}"
        files = {}
        for member in zoo.members:
            store = Predictions.open(folder / member.member_id / "predictions")
            text = f"{store.model['config_hash']}:{rows}"
            digest = hashlib.sha256(text.encode()).hexdigest()[:16]
            files[member.member_id] = self.folder / f"{member.member_id}-{digest}.npz"
        missing = [m for m in zoo.members if not files[m.member_id].is_file()]
        if missing:
            self.folder.mkdir(parents=True, exist_ok=True)
            predicted = predict_zoo(
                zoo.model_copy(update={"members": missing}), self.inputs.train, data, folder
            )
            for name, top in predicted.items():
                buffer = io.BytesIO()
                np.savez(buffer, indices=top.indices, scores=top.scores)
                write_atomic(files[name], buffer.getvalue())
        loaded = {}
        for name, path in files.items():
            with np.load(path) as saved:
                loaded[name] = TopK(saved["indices"], saved["scores"])
        return loaded


def _subset(zoo: Zoo, names: Sequence[str]) -> Zoo:
    """``zoo`` with the members of ids ``names`` only."""
    return zoo.model_copy(update={"members": [m for m in zoo.members if m.member_id in names]})
