"""Students: zoo members trained on a teacher's soft labels (``webly distill``).

The teacher is any prediction store with out-of-fold predictions of the training rows: a blend
or the stacker of `webly.ensemble.fit.fit_ensemble`, or a zoo member. Its top-k become the soft
targets (`webly.distill.soft_labels.soft_targets`) of every member of the students' zoo, which
train with ``lam * loss(labels) + (1 - lam) * loss(teacher)``: out-of-fold like the zoo
(comparable with the members trained on labels alone), or once on every row (``full``: the
model to compress and export). Given several ``lam`` (1.0: the labels-only twin), each student
is trained at each and keeps the one of best validation figure (`webly.distill.grid`), as in
the recipe's distill stage.

With ``unlabeled`` the students also learn the teacher's predictions of rows nobody labeled
(`webly.distill.unlabeled`): the teacher, an ensemble entry or a zoo member, is applied to
those rows through the fold models of the zoo it was fitted on (`predict_teacher`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from webly.core import TopK
from webly.data.store import Dataset
from webly.distill.grid import fit_grid, held_out_figure, oof_figure, with_lam
from webly.distill.settings import Setting, settings
from webly.distill.soft_labels import soft_targets
from webly.distill.unlabeled import teach_unlabeled
from webly.ensemble.fit import ENTRIES, load_entry
from webly.ensemble.members import zoo_members
from webly.errors import ConfigError
from webly.executor import Executor
from webly.predictions import Predictions
from webly.train.oof import ZooResult, fit_full, fit_oof, predict_zoo, recorded_zoo
from webly.train.zoo import Zoo, load_zoo, parse_zoo


def train_students(
    zoo: str | Path | Zoo,
    teacher: str | Path,
    train: Dataset,
    test: Dataset | None,
    out: str | Path,
    *,
    lam: float | Sequence[float] = 0.5,
    full: bool = False,
    k: int = 20,
    min_score: float = 1e-3,
    unlabeled: Dataset | None = None,
    zoo_dir: str | Path | None = None,
    threshold: float | None = None,
    executor: Executor | None = None,
) -> ZooResult:
    """Train the students of ``zoo`` (a zoo file or `Zoo`) on the soft labels of ``teacher``.

    Parameters
    ----------
    zoo : the students: members, folds, seed and training defaults as in a zoo file
    teacher : prediction store whose ``oof`` split predicts ``train``'s rows
    train, test : the training store; the store the students predict (required when ``full``)
    out : folder of the students' folders (`fit_oof` / `fit_full` layout)
    lam : weight of the label loss (`TrainConfig.distill_lam`, set for every student); several:
        each tried (into ``out/<setting>``, `webly.distill.grid.setting_folder`), every student
        keeping the one of best out-of-fold metric, or with ``full`` of best metric on the rows
        its training held out (1.0: the labels-only twin, taught by the labels alone)
    full : train each student once on every row instead of out-of-fold
    k, min_score : teacher classes kept per row (`soft_targets`)
    unlabeled : a store of the same classes whose rows the students also learn, with the
        teacher's predictions of them as targets (loss weight 1 from the first epoch)
    zoo_dir : the trained zoo behind the teacher (`fit_oof`'s OUT); required with ``unlabeled``
    threshold : with ``unlabeled``, keep only the rows the teacher is this confident about
        (`teach_unlabeled`: the Cdiscount pseudo-labels); None keeps every row
    executor : where the students' fold models train (`fit_oof`'s); None: here
    """
    students = load_zoo(zoo) if not isinstance(zoo, Zoo) else zoo
    grid = settings(lam)
    store = Predictions.open(teacher)
    targets = soft_targets(store.oof.topk(), train.n_classes, train.task, k=k, min_score=min_score)
    pseudo = None
    if unlabeled is not None:
        if zoo_dir is None:
            raise ConfigError(
                "unlabeled rows need the trained zoo behind the teacher to predict them; pass "
                "its folder (--zoo-dir, the --out of webly train)"
            )
        if unlabeled.n_classes != train.n_classes or unlabeled.task != train.task:
            raise ConfigError(
                f"unlabeled data {unlabeled.path} has {unlabeled.n_classes} {unlabeled.task} "
                f"classes, training data {train.n_classes} {train.task}; pass an unlabeled "
                "split of the same dataset"
            )
        predicted = predict_teacher(teacher, zoo_dir, train, unlabeled)
        pseudo = teach_unlabeled(
            predicted, unlabeled, np.arange(len(unlabeled)), threshold=threshold, k=k,
            min_score=min_score,
        )  # fmt: skip

    def fit(setting: Setting, folder: Path) -> ZooResult:
        chosen = parse_zoo(with_lam(students, setting.lam).model_dump(), "students")
        taught = None if setting.twin else targets
        extra = None if setting.twin else pseudo
        if full:
            return fit_full(chosen, train, test, folder, taught, executor=executor, pseudo=extra)
        return fit_oof(chosen, train, test, folder, teacher=taught, executor=executor,
                       pseudo=extra)  # fmt: skip

    result = fit_grid(grid, Path(out), fit, held_out_figure if full else oof_figure)
    return ZooResult(result.kept)


def predict_teacher(
    teacher: str | Path, zoo_dir: str | Path, train: Dataset, data: Dataset
) -> TopK:
    """A teacher's prediction of other rows ``data`` (e.g. an unlabeled split).

    ``teacher`` is the prediction store of an ensemble entry (a blend or the stacker,
    `webly.ensemble.fit.load_entry`), re-applied to its members' predictions of ``data``, or
    of one zoo member; the members' predictions are the mean of their fold models in
    ``zoo_dir`` (`predict_zoo`), trained on ``train``.

    Returns
    -------
    TopK
        (len(data), k) the teacher's top-k probabilities of every row of ``data``.
    """
    model = Predictions.open(teacher).model
    if model.get("name") in ENTRIES:
        entry = load_entry(teacher)
        names, combine = entry.members, entry.predict
    else:
        names, combine = (str(model["id"]),), _only
    stores = zoo_members(zoo_dir, names)
    predicted = predict_zoo(recorded_zoo(stores), train, data, zoo_dir)
    return combine([predicted[name] for name in names])


def _only(predictions: Sequence[TopK]) -> TopK:
    (prediction,) = predictions
    return prediction
