"""Students: zoo members trained on a teacher's soft labels (``webly distill``).

The teacher is any prediction store with out-of-fold predictions of the training rows: a blend
or the stacker of `webly.ensemble.fit.fit_ensemble`, or a zoo member. Its top-k become the soft
targets (`webly.distill.soft_labels.soft_targets`) of every member of the students' zoo, which
train with ``lam * loss(labels) + (1 - lam) * loss(teacher)``: out-of-fold like the zoo
(comparable with the members trained on labels alone), or once on every row (``full``: the
model to compress and export).
"""

from __future__ import annotations

from pathlib import Path

from webly.data.store import Dataset
from webly.distill.soft_labels import soft_targets
from webly.predictions import Predictions
from webly.train.oof import ZooResult, fit_full, fit_oof
from webly.train.zoo import Zoo, load_zoo, parse_zoo


def train_students(
    zoo: str | Path | Zoo,
    teacher: str | Path,
    train: Dataset,
    test: Dataset | None,
    out: str | Path,
    *,
    lam: float = 0.5,
    full: bool = False,
    k: int = 20,
    min_score: float = 1e-3,
) -> ZooResult:
    """Train the students of ``zoo`` (a zoo file or `Zoo`) on the soft labels of ``teacher``.

    Parameters
    ----------
    zoo : the students: members, folds, seed and training defaults as in a zoo file
    teacher : prediction store whose ``oof`` split predicts ``train``'s rows
    train, test : the training store; the store the students predict (required when ``full``)
    out : folder of the students' folders (`fit_oof` / `fit_full` layout)
    lam : weight of the label loss (`TrainConfig.distill_lam`, set for every student)
    full : train each student once on every row instead of out-of-fold
    k, min_score : teacher classes kept per row (`soft_targets`)
    """
    students = load_zoo(zoo) if not isinstance(zoo, Zoo) else zoo
    students = parse_zoo(
        {**students.model_dump(), "train": {**students.train, "distill_lam": lam}}, "students"
    )
    store = Predictions.open(teacher)
    targets = soft_targets(store.oof.topk(), train.n_classes, train.task, k=k, min_score=min_score)
    if full:
        return fit_full(students, train, test, out, targets)
    return fit_oof(students, train, test, out, teacher=targets)
