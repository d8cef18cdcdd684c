"""Out-of-fold training of a model zoo: `fit_oof` and `train_zoo` (``webly train ZOO.yaml``);
`fit_full` trains the members on every row instead (the models one deploys). Either trains
students when given a teacher's soft targets (`webly.distill`).

Every member is trained once per fold of the dataset's shared fold ids
(``Dataset.folds(zoo.folds, zoo.seed)`` or the ones passed in, e.g. a run's ``folds`` stage
artifact; the same for every member): on the other folds,
validated (early stopping, best epoch) on the held-out fold, which it then predicts. The fold
models also predict the test split and their probabilities are averaged. The output folder::

    OUT/<member id>/config.json          the resolved member config and its hash
    OUT/<member id>/fold-<f>/            trainer checkpoints (checkpoint.pt, best.pt) while
                                         the fold trains: deleted once its model is saved,
                                         unless ``zoo.keep_checkpoints``
    OUT/<member id>/fold-<f>/attempts.json  while the fold trains: the seconds its earlier
                                         attempts spent and when this one started
    OUT/<member id>/fold-<f>/model/      the fold model (save_network / LgbmModel.save),
                                         seconds.json (its training seconds over every
                                         attempt) and, for a network, fit.json: how it was
                                         trained
    OUT/<member id>/predictions/         prediction store: oof (every training row once, by
                                         the fold model that did not see it) and test

The store's model dict holds the member's config and ``config_hash`` (member config, fold of
every row, data manifests); its fold metrics hold, per fold ``"0"``, ``"1"``, ...: ``rows``,
the fold's GAP@20 (multi-label) or accuracy (multi-class), train ``seconds`` and, for a
network, how it trained: ``lr`` (with ``lr_search``, the rates ``lr="auto"`` tried and their
validation scores), ``epochs``, ``best_epoch``, ``valid_rows``, and ``time_limit`` (its share
of ``zoo.time_limit``, `webly.train.budget`) with ``out_of_time``; under ``oof``
and ``test`` the whole split's metric and BCE (multi-label) or log-loss (multi-class).

Test averaging keeps a dense float32 running sum of ``(n_test, n_classes)`` probabilities
(200k test rows x 3862 classes is 3 GB) and writes its top-k once at the end; data beyond
`TEST_SUM_BYTES` is refused before training.

Cleaned labels (`webly.clean`): ``labels`` and ``sample_weight`` replace the store's labels
and uniform weights without copying the data. Each fold trains on its training rows' slice of
them and validates (best epoch, early stopping) on the held-out fold under the same labels
(entries >= 0.5 positive), so model selection follows the cleaned labels rather than the noise
they remove. Rows of weight 0 (dropped) are left out of training and validation and out of the
store's metrics, but still predicted out-of-fold, so the next round of cleaning judges them
too. Both join the members' config hashes.

Resume (`webly.resume`): a member whose ``config.json`` says ``done`` under the config hash it
would train with now, and whose prediction store opens, is skipped; a fold
whose model was saved is loaded instead of trained (it needs nothing else, so its trainer
checkpoints are dropped once the model is saved: `drop_trainer_files`); an unfinished fold
resumes from its trainer checkpoint; either prints a "resumed" line on the run's display. A
fold's ``seconds`` add up every attempt: an attempt killed before its model was saved counts
up to the last file it wrote in the fold's folder (`fold_seconds`). A member whose config
changed starts over in an emptied folder. A member whose training fails (NaN loss:
`DataError`) is recorded in the result and the others go on.

Executors (`webly.executor`): the fold models still missing are jobs (`FoldJob`); the default
`LocalExecutor` leaves them to the loop above, which trains each fold as it reaches it, while a
`RayExecutor` trains them first as Ray tasks across a cluster, each saving its model into the
same folder (and ``task.json`` beside it: where and how long it ran), so the loop only loads
them. The results are the same either way.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from webly._fs import atomic_output, write_atomic
from webly.core import GAP_K, Model, TopK, select_top_k
from webly.data.store import Dataset
from webly.errors import ConfigError, DataError, WeblyError
from webly.executor import Executor, LocalExecutor
from webly.metrics.evaluate import loss_sum, task_metric
from webly.models import model_entry
from webly.predictions import Predictions, PredictionWriter
from webly.progress import model_resumed, model_started, work_planned
from webly.resume import DONE, HASH, claim, finished, mark, read_record
from webly.train.budget import TimeBudget, check_time_limit
from webly.train.fold_model import FIT_FILE, build_model, load_model
from webly.train.loop import (
    CHECKPOINT,
    TRAINER_FILES,
    WeightSchedule,
    array_digest,
    check_labels,
    check_sample_weight,
    hard_labels,
    matrix_digest,
    weight_settings,
)
from webly.train.zoo import (
    Member,
    Zoo,
    config_hash,
    load_zoo,
    manifest_hash,
    parse_zoo,
    plan_zoo,
)

if TYPE_CHECKING:  # the trainer only reads its fields; importing it would tie train to distill
    from webly.distill.pseudo import PseudoLabels

TEST_SUM_BYTES = 8 << 30
CONFIG_FILE, MODEL_DIR, STORE_DIR, FULL_DIR = "config.json", "model", "predictions", "full"
HELD_OUT_FILE = "held_out.npy"
"""Beside a network trained on every row (`fit_full`): ``(n,)`` int64 training-store rows `fit`
held out for its validation, so they can score it against other models' out-of-fold
predictions (`held_out_rows`)."""
ATTEMPTS_FILE, SECONDS_FILE = "attempts.json", "seconds.json"
_BLOCK_ROWS = 8192


@dataclass(frozen=True)
class MemberResult:
    """One member's outcome. ``metric`` is ``gap@20`` or ``accuracy``, ``loss`` ``bce`` or
    ``log-loss``; test figures are None without test labels; ``error`` is set (and the figures
    None) when training failed; ``skipped``: found finished, not trained again."""

    id: str
    name: str
    level: str
    metric: str
    loss: str
    oof_metric: float | None = None
    oof_loss: float | None = None
    test_metric: float | None = None
    test_loss: float | None = None
    seconds: float = 0.0
    skipped: bool = False
    error: str | None = None


@dataclass(frozen=True)
class ZooResult:
    """The members' results, in zoo order."""

    members: list[MemberResult]

    @property
    def failed(self) -> list[MemberResult]:
        return [m for m in self.members if m.error is not None]

    def table(self) -> list[dict[str, Any]]:
        """One row per member: model, frame-level, GAP@20 (or accuracy) and BCE (or log-loss)
        on the test split when it has labels, else out-of-fold, train seconds, and the error."""
        rows = []
        for m in self.members:
            on_test = m.test_metric is not None
            rows.append(
                {
                    "model": m.id,
                    "frame-level": m.level == "frame",
                    "scored on": "test" if on_test else "oof",
                    m.metric.upper() if m.metric.startswith("gap") else m.metric: (
                        m.test_metric if on_test else m.oof_metric
                    ),
                    m.loss.upper() if m.loss == "bce" else m.loss: (
                        m.test_loss if on_test else m.oof_loss
                    ),
                    "seconds": round(m.seconds, 1),
                    "error": m.error,
                }
            )
        return rows


def train_zoo(
    zoo_file: str | Path,
    data: str | Path,
    test: str | Path | None,
    out: str | Path,
    executor: Executor | None = None,
) -> ZooResult:
    """``webly train ZOO.yaml --data STORE [--test STORE] --out DIR [--ray ADDRESS]``: open,
    check, fit (on ``executor``, `fit_oof`'s)."""
    zoo = load_zoo(zoo_file)
    test_store = Dataset.open(test) if test is not None else None
    return fit_oof(zoo, Dataset.open(data), test_store, out, executor=executor)


def fit_oof(
    zoo: Zoo,
    train: Dataset,
    test: Dataset | None,
    out: str | Path,
    folds: np.ndarray | None = None,
    teacher: sp.csr_matrix | None = None,
    labels: sp.csr_matrix | None = None,
    sample_weight: np.ndarray | WeightSchedule | None = None,
    executor: Executor | None = None,
    pseudo: PseudoLabels | None = None,
) -> ZooResult:
    """Train every member of ``zoo`` out-of-fold on ``train``; predict ``test``.

    Parameters
    ----------
    zoo : the members and shared settings (`webly.train.zoo.load_zoo`)
    train : the training store
    test : store predicted by the average of each member's fold models, or None
    out : folder of the members' folders (see the module docstring)
    folds : (n_samples,) fold of every training row in ``0..zoo.folds - 1``, shared by every
        member; None: ``train.folds(zoo.folds, zoo.seed)``
    teacher : (n_samples, n_classes) soft targets in [0, 1], optional: every member is a
        student trained with the distillation loss ``distill_lam * loss(labels) + (1 -
        distill_lam) * loss(teacher)`` (`webly.train.losses`); its hash joins the members'
        config hashes. Network members only.
    labels : (n_samples, n_classes) targets in [0, 1] replacing ``train.labels`` in training,
        validation and the store's metrics, optional (e.g. `NoiseReport.cleaned_labels`; soft
        relabels for network members only). See the module docstring.
    sample_weight : (n_samples,) loss weights >= 0 (0 leaves the row out of training), or a
        `WeightSchedule` such as a `webly.clean.Curriculum`, optional. Gradient-boosted members
        take 0/1 weights only.
    executor : where the fold models train (`webly.executor`); None: `LocalExecutor`, in
        this process as the loop reaches them. The results do not depend on it.
    pseudo : rows of another split with targets (`webly.distill.pseudo.PseudoLabels`, e.g. a
        teacher's predictions of unlabeled rows), optional: every fold model also trains on
        them (`webly.train.loop.fit`); their digest joins the members' config hashes. Network
        members only.

    Returns
    -------
    ZooResult
        Every member, failed ones with their message. All checks of the zoo against the data
        run before anything is trained or written (`ConfigError`).
    """
    members = plan_zoo(zoo, train, test)
    if test is not None and len(test) * train.n_classes * 4 > TEST_SUM_BYTES:
        raise ConfigError(
            f"test data of {len(test)} rows x {train.n_classes} classes needs more than "
            f"{TEST_SUM_BYTES >> 30} GiB to average the fold models; split the test store"
        )
    folds = train.folds(zoo.folds, zoo.seed) if folds is None else _check_folds(folds, zoo, train)
    teacher_hash = _check_teacher(teacher, members, train)
    override = _check_override(labels, sample_weight, pseudo, members, train)
    out = Path(out)
    digests = [
        config_hash(member, zoo, folds, train, test, teacher_hash, **override.hashes())
        for member in members
    ]
    budget = _budget(zoo, members, train, out, list(range(zoo.folds)))
    inputs = FoldInputs(train, folds, teacher, override, zoo.keep_checkpoints, budget)
    work_planned(_work(members, digests, out, list(range(zoo.folds))))
    failed = _train_ahead(executor, inputs, members, digests, out, list(range(zoo.folds)))
    return _fit_members(members, digests, zoo, inputs, test, out, failed, every_row=False)


def fit_full(
    zoo: Zoo,
    train: Dataset,
    test: Dataset | None,
    out: str | Path,
    teacher: sp.csr_matrix | None = None,
    labels: sp.csr_matrix | None = None,
    sample_weight: np.ndarray | WeightSchedule | None = None,
    executor: Executor | None = None,
    pseudo: PseudoLabels | None = None,
    valid: Dataset | None = None,
) -> ZooResult:
    """Train every member of ``zoo`` once on all of ``train``: the models one deploys.

    No fold is held out, so there is no out-of-fold prediction. ``valid``, a store of the same
    classes that no row of ``train`` is in (e.g. a run's validation split carved before its
    zoo, ``data.valid_fraction``), is what the learning-rate search and early stopping score;
    without it `fit` keeps the member's ``valid_fraction`` of the rows aside for them (with
    ``valid_fraction: 0`` it trains every row for its ``epochs``). The model is saved to
    ``OUT/<member id>/full/model/`` and its predictions of ``test`` to
    ``OUT/<member id>/predictions/`` (a store with a ``test`` split only). ``teacher``,
    ``labels``, ``sample_weight`` (rows of weight 0 left out), ``pseudo``, ``executor``,
    resume and failures are as in `fit_oof`; a member's seeds are those of its fold 0.
    """
    if test is None:
        raise ConfigError("training on every row needs a test split to predict; pass one")
    members = plan_zoo(zoo, train, test)
    if valid is not None:
        check_valid(zoo, train, valid)
    teacher_hash = _check_teacher(teacher, members, train)
    override = _check_override(labels, sample_weight, pseudo, members, train)
    everything = np.zeros(len(train), dtype=np.int8)
    out = Path(out)
    valid_hash = manifest_hash(valid) if valid is not None else None
    hashes = {"valid": valid_hash, **override.hashes()}
    digests = [
        config_hash(member, zoo, everything, train, test, teacher_hash, **hashes)
        for member in members
    ]
    budget = _budget(zoo, members, train, out, [-1])
    inputs = FoldInputs(train, everything, teacher, override, zoo.keep_checkpoints, budget,
                        valid)  # fmt: skip
    work_planned(_work(members, digests, out, [-1]))
    failed = _train_ahead(executor, inputs, members, digests, out, [-1])
    return _fit_members(members, digests, zoo, inputs, test, out, failed, every_row=True)


def predict_zoo(
    zoo: Zoo, train: Dataset, data: Dataset, out: str | Path, *, k: int | None = None
) -> dict[str, TopK]:
    """Every member's prediction of another split ``data`` (e.g. unlabeled rows), the mean of
    its saved fold models as for ``test`` in `fit_oof`, which must have trained them in ``out``.

    Streamed in blocks of rows: memory holds one block's probabilities, not the split's.

    Returns
    -------
    dict
        ``{member id: TopK (len(data), k)}`` in member order, best first; ``k`` defaults to
        ``zoo.k`` (at most the number of classes).
    """
    members = plan_zoo(zoo, train, data)
    top = min(k or zoo.k, train.n_classes)
    out = Path(out)
    predicted = {}
    for member in members:
        workdirs = [out / member.id / fold_dir(fold) for fold in range(zoo.folds)]
        missing = [str(w) for w in workdirs if not (w / MODEL_DIR).is_dir()]
        if missing:
            raise DataError(
                f"member {member.id} has no fold model in {missing[0]}; train the zoo into "
                f"{out} (fit_oof) before predicting other rows with it"
            )
        models = [load_model(member, w / MODEL_DIR) for w in workdirs]
        indices = np.empty((len(data), top), np.int32)
        scores = np.empty((len(data), top), np.float32)
        for start in range(0, len(data), _BLOCK_ROWS):
            block = np.arange(start, min(start + _BLOCK_ROWS, len(data)))
            total = np.zeros((block.size, train.n_classes), np.float32)
            for model in models:
                for rows, probs in model.predict_proba(data.subset(block)):
                    total[rows] += probs
            indices[block], scores[block] = select_top_k(total / len(models), top, sort=True)
        predicted[member.id] = TopK(indices, scores)
    return predicted


def recorded_zoo(stores: dict[str, Path]) -> Zoo:
    """The zoo that trained these members, rebuilt from what each prediction store records
    (`fit_oof`'s model record: name, id, resolved config, folds, seed; and top-k): `predict_zoo`
    with it and the stores' folder finds their fold models. ``stores`` maps member ids to their
    stores, as `webly.ensemble.members.zoo_members` gives them.
    """
    opened = {name: Predictions.open(path) for name, path in stores.items()}
    models = {name: store.model for name, store in opened.items()}
    shared = {(int(m["folds"]), int(m["seed"])) for m in models.values()}
    if len(shared) != 1 or min(shared)[0] < 2:
        found = "; ".join(f"{name}: {m['folds']} folds, seed {m['seed']}"
                          for name, m in models.items())  # fmt: skip
        raise DataError(
            f"members ({found}) were not trained out-of-fold together; pass the members of one "
            "zoo folder (webly train --out)"
        )
    ((folds, seed),) = shared
    specs = []
    for name, model in models.items():
        config = model["config"]
        spec = {"name": model["name"], "id": name, "hparams": config["hparams"],
                "groups": config["groups"]}  # fmt: skip
        if model_entry(model["name"]).trains_with_epochs:  # trees take hparams only
            spec["train"] = config["train"]
        if config["options"]:  # {} when the zoo gave none
            spec["options"] = config["options"]
        specs.append(spec)
    source = str(next(iter(stores.values())).parent.parent)
    k = max(store.k for store in opened.values())
    return parse_zoo({"folds": folds, "seed": seed, "k": k, "members": specs}, source)


def predict_members(stores: Mapping[str, Path], train: Dataset, data: Dataset) -> dict[str, TopK]:
    """Each trained member's prediction of another split ``data``, the mean of its fold models
    (`predict_zoo` over the zoo its store records, `recorded_zoo`), by member id in the order of
    ``stores`` (member id -> its prediction store, ``OUT/<id>/predictions``; members of
    different zoo folders may be mixed)."""
    zoo = recorded_zoo(dict(stores))
    by_folder: dict[Path, list[str]] = {}
    for name, path in stores.items():
        by_folder.setdefault(Path(path).parent.parent, []).append(name)
    predicted: dict[str, TopK] = {}
    for folder, names in by_folder.items():
        chosen = [m for m in zoo.members if m.member_id in names]
        predicted |= predict_zoo(zoo.model_copy(update={"members": chosen}), train, data, folder)
    return {name: predicted[name] for name in stores}


@dataclass(frozen=True, eq=False)
class FoldInputs:
    """What every fold model of one `fit_oof` or `fit_full` call trains from, shared by its
    jobs (`FoldJob`): the training store (pickled as its folder, so a Ray worker maps the files
    itself), the ``(n_samples,)`` int8 fold of every row (all 0 for `fit_full`), the teacher's
    ``(n_samples, n_classes)`` soft targets or None, the labels and weights in place of the
    store's, whether a saved fold keeps its trainer checkpoints (``zoo.keep_checkpoints``) and
    the time budget of ``zoo.time_limit``; ``valid``: `fit_full`'s validation store."""

    train: Dataset
    folds: np.ndarray
    teacher: sp.csr_matrix | None
    override: _Override
    keep_checkpoints: bool = False
    budget: TimeBudget | None = None
    valid: Dataset | None = None


@dataclass(frozen=True)
class FoldJob:
    """One fold model to train: ``member``'s fold ``fold`` (-1: on every row, `fit_full`),
    trained in ``workdir`` (``OUT/<member id>/fold-<f>`` or ``OUT/<member id>/full``) and saved
    to ``workdir/model``."""

    member: Member
    fold: int
    workdir: Path

    @property
    def name(self) -> str:
        """``<member id>/fold-<f>`` or ``<member id>/full``."""
        return f"{self.member.id}/{self.workdir.name}"


def fold_dir(fold: int) -> str:
    """The folder name of fold ``fold``'s model and checkpoints: ``fold-<f>``, ``full`` for -1."""
    return FULL_DIR if fold < 0 else f"fold-{fold}"


def train_fold(inputs: FoldInputs, job: FoldJob) -> None:
    """Train ``job``'s fold model (resuming from its trainer checkpoint) and save it
    atomically; a saved one is left as it is. `DataError` when training fails (NaN loss)."""
    held_out = np.flatnonzero(inputs.folds == job.fold)
    _fold_model(
        job.member, job.fold, inputs.train, held_out, inputs.folds, job.workdir, inputs.teacher,
        inputs.override, keep_checkpoints=inputs.keep_checkpoints, budget=inputs.budget,
        valid=inputs.valid,
    )  # fmt: skip


def _budget(
    zoo: Zoo, members: list[Member], train: Dataset, out: Path, fold_ids: list[int]
) -> TimeBudget | None:
    """``zoo.time_limit`` over the fold models ``fold_ids`` of every member, checked against
    one epoch of each (`check_time_limit`) before anything trains; None without a limit."""
    if zoo.time_limit is None:
        return None
    check_time_limit(zoo.time_limit, members, train, len(fold_ids) if fold_ids != [-1] else 1)
    workdirs = [out / m.id / fold_dir(fold) for m in members for fold in fold_ids]
    return TimeBudget.start(zoo.time_limit, workdirs)


def drop_trainer_files(workdir: str | Path) -> None:
    """Delete the trainer's files of a fold whose model is saved in ``workdir / model``: the
    epoch checkpoint, the best weights and the learning-rate search of `fit`. A run that goes
    on loads the saved model and never resumes its trainer, so nothing is lost; missing files
    are fine."""
    for name in TRAINER_FILES:
        (Path(workdir) / name).unlink(missing_ok=True)


def zoo_settings(zoo: Zoo) -> dict[str, Any]:
    """``zoo`` as JSON for the config hashes of what it trains: every field but
    ``keep_checkpoints``, which changes no result, and ``time_limit``, a budget (a run resumes
    under either value)."""
    return zoo.model_dump(mode="json", exclude={"keep_checkpoints", "time_limit"})


def _work(
    members: list[Member], digests: list[str], out: Path, fold_ids: list[int]
) -> dict[str, tuple[int, int]]:
    """The training left, for the run's time left (`webly.progress.work_planned`): each
    unfinished network member's fold models still to train (all of them in a folder made
    under another config, which is emptied) and its epochs."""
    work = {}
    for member, digest in zip(members, digests, strict=True):
        folder = out / member.id
        if not member.trains_with_epochs or _finished(folder, digest) is not None:
            continue
        record = read_record(folder / CONFIG_FILE)
        same = record is not None and record.get(HASH) == digest
        fits = sum(not (same and (folder / fold_dir(f) / MODEL_DIR).is_dir()) for f in fold_ids)
        if fits:
            work[member.id] = (fits, member.train.epochs)
    return work


def _train_ahead(
    executor: Executor | None,
    inputs: FoldInputs,
    members: list[Member],
    digests: list[str],
    out: Path,
    fold_ids: list[int],
) -> dict[str, str]:
    """Hand the models of ``fold_ids`` (-1: every row) still missing of the unfinished members
    to ``executor``, each member's folder claimed for its digest first; returns the
    executor's ``{member id: error}`` of members whose training failed there."""
    jobs = []
    for member, digest in zip(members, digests, strict=True):
        folder = out / member.id
        if _finished(folder, digest) is not None:
            continue
        claim(folder, CONFIG_FILE, digest, {"config": member.config})
        workdirs = {fold: folder / fold_dir(fold) for fold in fold_ids}
        jobs += [
            FoldJob(member, fold, workdir)
            for fold, workdir in workdirs.items()
            if not (workdir / MODEL_DIR).is_dir()
        ]
    return (executor or LocalExecutor()).train_folds(train_fold, inputs, jobs) if jobs else {}


@dataclass(frozen=True, eq=False)
class _Override:
    """The labels and sample weights members train on in place of the store's, if any.

    ``labels`` (n, C) float32 in [0, 1] or None; ``weight`` (n,) float32, a schedule or None;
    ``scored`` (n, C) 0/1 labels of the validation and the store's metrics; ``used`` (n,) bool
    rows that train and are scored (weight > 0).
    """

    labels: sp.csr_matrix | None
    weight: np.ndarray | WeightSchedule | None
    scored: sp.csr_matrix
    used: np.ndarray
    pseudo: PseudoLabels | None = None

    def hashes(self) -> dict[str, str | None]:
        """`config_hash`'s ``labels`` and ``sample_weight`` entries."""
        weight = None
        if self.weight is not None:
            text = json.dumps(weight_settings(self.weight), sort_keys=True)
            weight = hashlib.sha256(text.encode()).hexdigest()
        labels = matrix_digest(self.labels) if self.labels is not None else None
        pseudo = None
        if self.pseudo is not None:
            text = json.dumps(self.pseudo.settings(), sort_keys=True)
            pseudo = hashlib.sha256(text.encode()).hexdigest()
        return {"labels": labels, "sample_weight": weight, "pseudo": pseudo}

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Those of ``rows`` that are used."""
        return rows[self.used[rows]]

    def fit_options(self, rows: np.ndarray, valid_rows: np.ndarray) -> dict[str, Any]:
        """`fit`'s ``labels``, ``valid_labels``, ``sample_weight`` and ``pseudo`` for training
        ``rows`` validated on ``valid_rows``; None where nothing replaces the store's."""
        labels = self.labels
        return {
            "labels": labels[rows] if labels is not None else None,
            "valid_labels": (
                self.scored[valid_rows] if labels is not None and valid_rows.size else None
            ),
            "sample_weight": (
                self.weight.subset(rows)
                if isinstance(self.weight, WeightSchedule)
                else (self.weight[rows] if self.weight is not None else None)
            ),
            "pseudo": self.pseudo,
        }


def _check_override(
    labels: sp.csr_matrix | None,
    sample_weight: np.ndarray | WeightSchedule | None,
    pseudo: PseudoLabels | None,
    members: list[Member],
    train: Dataset,
) -> _Override:
    """The `_Override` of ``labels``, ``sample_weight`` and ``pseudo`` once they fit ``train``
    and the members (trees take 0/1 labels and weights only, and no pseudo rows)."""
    n = len(train)
    given = check_labels("labels", labels, (n, train.n_classes)) if labels is not None else None
    weight = check_sample_weight(sample_weight, n) if sample_weight is not None else None
    used = np.ones(n, dtype=bool)
    if isinstance(weight, np.ndarray):
        used = weight > 0
        if not used.any():
            raise DataError("sample_weight is 0 for every row; keep at least some rows")
    trees = [m.id for m in members if not m.trains_with_epochs]
    soft = given is not None and bool((given.data < 1).any())
    graded = isinstance(weight, WeightSchedule) or (
        isinstance(weight, np.ndarray) and bool(((weight > 0) & (weight < 1)).any())
    )  # fmt: skip
    if trees and (soft or graded):
        raise ConfigError(
            f"member(s) {', '.join(trees)} are gradient-boosted trees, which take 0/1 labels and "
            "0/1 sample weights only (0 drops a row); give network members the soft labels or "
            "weights"
        )
    if trees and pseudo is not None:
        raise ConfigError(
            f"member(s) {', '.join(trees)} are gradient-boosted trees, which do not train on "
            "pseudo-labeled rows; give them to network members"
        )
    if pseudo is not None and (
        pseudo.dataset.n_classes != train.n_classes or pseudo.dataset.task != train.task
    ):
        raise DataError(
            f"pseudo-labeled data has {pseudo.dataset.n_classes} {pseudo.dataset.task} classes, "
            f"training data {train.n_classes} {train.task}; pseudo-label a split of the same "
            "dataset"
        )
    scored = hard_labels(given) if given is not None else train.labels
    return _Override(given, weight, scored, used, pseudo)


def _check_teacher(
    teacher: sp.csr_matrix | None, members: list[Member], train: Dataset
) -> str | None:
    """SHA-256 of the teacher's soft targets once they fit ``train`` and the members."""
    if teacher is None:
        return None
    expected = (len(train), train.n_classes)
    if teacher.shape != expected:
        raise DataError(
            f"teacher soft targets are {teacher.shape}; they must be {expected} (training rows, "
            "classes); make them from this dataset's out-of-fold predictions"
        )
    trees = [m.id for m in members if not m.trains_with_epochs]
    if trees:
        raise ConfigError(
            f"member(s) {', '.join(trees)} are gradient-boosted trees, which take no soft "
            "targets; distil into network members"
        )
    teacher = sp.csr_matrix(teacher, dtype=np.float32)
    return array_digest(teacher.indptr, teacher.indices, teacher.data)


def check_valid(zoo: Zoo, train: Dataset, valid: Dataset) -> None:
    """Refuse a validation store the members of ``zoo`` cannot be scored on (other classes,
    groups) or holding rows (by id) of the training store: a model scored on rows it trained
    on would keep its most overfitted epoch and setting."""
    plan_zoo(zoo, train, valid, split="valid")
    shared = np.intersect1d(train.ids.astype(str), valid.ids.astype(str))
    if shared.size:
        raise DataError(
            f"validation data {valid.path} holds {shared.size:,} of the training rows (e.g. id "
            f"{shared[0]!r}); pass a split carved out of training before the zoo, not a part of it"
        )


def _check_folds(folds: np.ndarray, zoo: Zoo, train: Dataset) -> np.ndarray:
    """``folds`` as int8 when it gives every training row one of ``zoo.folds`` non-empty folds."""
    folds = np.asarray(folds)
    valid = (
        folds.shape == (len(train),)
        and folds.dtype.kind in "iu"
        and folds.size > 0
        and folds.min() >= 0
        and folds.max() < zoo.folds
    )
    if not valid or np.bincount(folds, minlength=zoo.folds).min() == 0:
        raise ConfigError(
            f"folds of shape {folds.shape}, dtype {folds.dtype} do not give each of the "
            f"{len(train)} training rows one of zoo.folds = {zoo.folds} non-empty folds; pass "
            f"train.folds({zoo.folds}, seed)"
        )
    return folds.astype(np.int8)


# --------------------------------------------------------------------------- one member


def _fit_members(
    members: list[Member],
    digests: list[str],
    zoo: Zoo,
    inputs: FoldInputs,
    test: Dataset | None,
    out: Path,
    failed: dict[str, str],
    every_row: bool,
) -> ZooResult:
    """`_fit_member` for each member in order (``every_row``: `fit_full`'s single model)."""
    folds = None if every_row else inputs.folds
    results = []
    for member, digest in zip(members, digests, strict=True):
        folder, error = out / member.id, failed.get(member.id)
        results.append(
            _fit_member(
                member, zoo, inputs.train, test, folds, folder, digest, inputs.teacher,
                inputs.override, error, inputs.budget, inputs.valid,
            )
        )  # fmt: skip
    return ZooResult(results)


def _fit_member(
    member: Member,
    zoo: Zoo,
    train: Dataset,
    test: Dataset | None,
    folds: np.ndarray | None,
    folder: Path,
    digest: str,
    teacher: sp.csr_matrix | None,
    override: _Override,
    error: str | None = None,
    budget: TimeBudget | None = None,
    valid: Dataset | None = None,
) -> MemberResult:
    """Train (``folds`` None: on every row, `_train_full`, validated on ``valid`` when given)
    or find finished one member; ``error``: its training already failed (in an executor),
    recorded as it is."""
    base = MemberResult(
        id=member.id,
        name=member.name,
        level=member.level,
        metric=train.task.metric().key,
        loss=train.task.loss.key,
    )
    finished = _finished(folder, digest)
    if finished is not None:
        return _from_store(base, finished)
    if error is not None:
        return replace(base, error=error)
    claim(folder, CONFIG_FILE, digest, {"config": member.config})
    try:
        if folds is None:
            store = _train_full(
                member, zoo, train, test, folder, digest, teacher, override, budget, valid
            )
        else:
            store = _train_member(
                member, zoo, train, test, folds, folder, digest, teacher, override, budget
            )
    except WeblyError as err:
        return replace(base, error=str(err))
    mark(folder / CONFIG_FILE, digest, DONE, {"config": member.config})
    return _from_store(base, store, skipped=False)


def _train_member(
    member: Member,
    zoo: Zoo,
    train: Dataset,
    test: Dataset | None,
    folds: np.ndarray,
    folder: Path,
    digest: str,
    teacher: sp.csr_matrix | None,
    override: _Override,
    budget: TimeBudget | None = None,
) -> Predictions:
    n_classes, labels = train.n_classes, override.scored
    n_rows = {"oof": len(train)} | ({"test": len(test)} if test is not None else {})
    model_info = _model_info(member, zoo.folds, zoo.seed, digest, teacher, override)
    top = min(GAP_K, n_classes)
    oof_indices = np.full((len(train), top), -1, dtype=np.int32)
    oof_scores = np.full((len(train), top), -np.inf, dtype=np.float32)
    oof_loss = 0.0
    test_sum = np.zeros((len(test), n_classes), np.float32) if test is not None else None
    fold_metrics: dict[str, Any] = {}
    with PredictionWriter(
        folder / STORE_DIR,
        n_rows=n_rows,
        n_classes=n_classes,
        model=model_info,
        k=zoo.k,
        overwrite=True,
    ) as writer:
        for fold in range(zoo.folds):
            held_out = np.flatnonzero(folds == fold)
            started = time.perf_counter()
            model = _fold_model(
                member, fold, train, held_out, folds, folder / fold_dir(fold), teacher, override,
                keep_checkpoints=zoo.keep_checkpoints, budget=budget,
            )  # fmt: skip
            seconds = fold_seconds(folder / fold_dir(fold), time.perf_counter() - started)
            for rows, probs in model.predict_proba(train.subset(held_out)):
                rows = held_out[rows]
                writer.write("oof", rows, probs)
                oof_indices[rows], oof_scores[rows] = select_top_k(probs, top, sort=True)
                used = override.used[rows]
                oof_loss += loss_sum(probs[used], labels[rows[used]], train.task)
            scored = override.rows(held_out)
            fold_top = TopK(oof_indices[scored], oof_scores[scored])
            fold_metrics[str(fold)] = {
                "rows": int(held_out.size),
                "metric": task_metric(fold_top, labels[scored], train.task, GAP_K),
                "seconds": seconds,
                **read_fit_record(folder / fold_dir(fold) / MODEL_DIR),
            }
            if test is not None and test_sum is not None:
                for rows, probs in model.predict_proba(test):
                    test_sum[rows] += probs
        used = override.used
        fold_metrics["oof"] = {
            "metric": task_metric(
                TopK(oof_indices[used], oof_scores[used]), labels[used], train.task, GAP_K
            ),
            "loss": oof_loss / int(used.sum()),
        }
        if test is not None and test_sum is not None:
            test_sum /= zoo.folds
            for start in range(0, len(test), _BLOCK_ROWS):
                rows = np.arange(start, min(start + _BLOCK_ROWS, len(test)))
                writer.write("test", rows, test_sum[rows])
            fold_metrics["test"] = _test_figures(test_sum, test)
        return writer.commit(fold_metrics)


def _train_full(
    member: Member,
    zoo: Zoo,
    train: Dataset,
    test: Dataset | None,
    folder: Path,
    digest: str,
    teacher: sp.csr_matrix | None,
    override: _Override,
    budget: TimeBudget | None = None,
    valid: Dataset | None = None,
) -> Predictions:
    assert test is not None  # fit_full refuses to start without one
    started = time.perf_counter()
    everything = np.zeros(len(train), dtype=np.int8)
    none = np.zeros(0, dtype=np.int64)
    model = _fold_model(
        member, -1, train, none, everything, folder / fold_dir(-1), teacher, override,
        keep_checkpoints=zoo.keep_checkpoints, budget=budget, valid=valid,
    )  # fmt: skip
    seconds = fold_seconds(folder / fold_dir(-1), time.perf_counter() - started)
    model_info = _model_info(member, 0, zoo.seed, digest, teacher, override)
    test_probs = np.zeros((len(test), train.n_classes), np.float32)
    for rows, probs in model.predict_proba(test):
        test_probs[rows] = probs
    with PredictionWriter(
        folder / STORE_DIR,
        n_rows={"test": len(test)},
        n_classes=train.n_classes,
        model=model_info,
        k=zoo.k,
        overwrite=True,
    ) as writer:
        writer.write("test", np.arange(len(test)), test_probs)
        full = {"seconds": seconds, **read_fit_record(folder / fold_dir(-1) / MODEL_DIR)}
        return writer.commit({"full": full, "test": _test_figures(test_probs, test)})


def _model_info(
    member: Member,
    folds: int,
    seed: int,
    digest: str,
    teacher: sp.csr_matrix | None,
    override: _Override,
) -> dict[str, Any]:
    """The model record of a member's prediction store (``folds`` 0: trained on every row)."""
    return {
        "name": member.name,
        "id": member.id,
        "config": member.config,
        "config_hash": digest,
        "distilled": teacher is not None,
        "relabelled": override.labels is not None,
        "pseudo_rows": int(override.pseudo.rows.size) if override.pseudo is not None else 0,
        "folds": folds,
        "seed": seed,
    }


def _fold_model(
    member: Member,
    fold: int,
    train: Dataset,
    held_out: np.ndarray,
    folds: np.ndarray,
    workdir: Path,
    teacher: sp.csr_matrix | None,
    override: _Override,
    *,
    keep_checkpoints: bool = False,
    budget: TimeBudget | None = None,
    valid: Dataset | None = None,
) -> Model:
    """The model of fold ``fold``: loaded when saved, else trained on the other folds' used
    rows (its trainer resumes from a checkpoint in ``workdir``), validated on the held-out
    fold's, and saved atomically. Fold -1: trained on every used row (``held_out`` empty),
    seeded as fold 0, validated on the store ``valid`` or else on the rows `fit` holds out.
    Once the model is saved, the trainer's files in ``workdir`` are dropped
    (`drop_trainer_files`) unless ``keep_checkpoints``. A network trains within its share of
    ``budget`` (``zoo.time_limit``), recorded in ``fit.json``."""
    saved = workdir / MODEL_DIR
    kept = override.rows(np.flatnonzero(folds != fold))
    valid_rows = override.rows(held_out)
    n_folds = int(folds.max()) + 1
    earlier = _earlier_seconds(workdir)  # what killed attempts spent before this one
    attempt = time.time()
    if saved.is_dir():
        model_resumed(member.id, fold, n_folds, "its model was saved by an earlier run")
    else:
        model_started(member.id, fold, n_folds)
        if (workdir / CHECKPOINT).is_file():
            model_resumed(member.id, fold, n_folds, "from its trainer checkpoint")
        workdir.mkdir(parents=True, exist_ok=True)
        write_atomic(
            workdir / ATTEMPTS_FILE,
            json.dumps({"seconds": earlier, "started": attempt}).encode(),
        )

    def spent() -> dict[str, float]:
        return {"seconds": earlier + max(time.time() - attempt, 0.0)}

    if saved.is_dir():  # predicts where a freshly trained one would, with the same numerics
        model = load_model(member, saved)
    else:
        model = build_model(member, train.n_classes, max(fold, 0))
        held = model.fit(
            train.subset(kept),
            train.subset(valid_rows) if valid_rows.size else valid,
            workdir,
            targets=teacher[kept] if teacher is not None else None,
            time_limit=budget.share() if budget is not None else None,
            **override.fit_options(kept, valid_rows),
        )
        with atomic_output(saved, overwrite=True) as tmp:
            model.save(tmp)
            (tmp / SECONDS_FILE).write_text(json.dumps(spent()))
            if held is not None:
                np.save(tmp / HELD_OUT_FILE, kept[held])
    (workdir / ATTEMPTS_FILE).unlink(missing_ok=True)  # its seconds are in the saved model's
    if not keep_checkpoints:  # also what a run killed between the save and this left
        drop_trainer_files(workdir)
    return model


def fold_seconds(workdir: str | Path, measured: float = 0.0) -> float:
    """The training seconds of the fold model saved in ``workdir``, over every attempt
    (``model/seconds.json``); ``measured`` for a model saved before they were recorded."""
    try:
        return float(json.loads((Path(workdir) / MODEL_DIR / SECONDS_FILE).read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return measured


def _earlier_seconds(workdir: Path) -> float:
    """The seconds the earlier attempts at a fold spent, by its ``attempts.json``: those
    before the last attempt as recorded, the last one (killed) up to the last file it wrote
    in ``workdir`` (its epoch checkpoint, or its saved model). 0 for a first attempt."""
    try:
        record = json.loads((workdir / ATTEMPTS_FILE).read_text())
        earlier, started = float(record["seconds"]), float(record["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0
    last = max((p.stat().st_mtime for p in workdir.rglob("*") if p.is_file()), default=started)
    return earlier + max(last - started, 0.0)


def held_out_rows(saved: str | Path) -> np.ndarray | None:
    """The training-store rows the network saved in ``saved`` never trained on (`fit` held
    them out for validation; ``HELD_OUT_FILE``), ascending; None when it recorded none (a fold
    model, validated on its held-out fold, or one saved before they were recorded)."""
    path = Path(saved) / HELD_OUT_FILE
    return np.load(path) if path.is_file() else None


def read_fit_record(saved: Path) -> dict[str, Any]:
    """The fit record (`webly.train.fold_model.NetworkModel.record`) of the fold model saved
    in ``saved``, without its ``history``; empty for trees or a network saved before records
    were kept."""
    path = saved / FIT_FILE
    record = json.loads(path.read_text()) if path.is_file() else {}
    record.pop("history", None)
    return record


def _test_figures(probs: np.ndarray, test: Dataset) -> dict[str, float | None]:
    """Metric and loss of the averaged test probabilities on the clean labels when the store
    has them, else the given ones; None for both when the test split has no labels."""
    labels = test.clean_labels if test.clean_labels is not None else test.labels
    if labels.nnz == 0:
        return {"metric": None, "loss": None}
    return {
        "metric": task_metric(probs, labels, test.task, GAP_K),
        "loss": loss_sum(probs, labels, test.task) / len(test),
    }


# --------------------------------------------------------------------------- resume


def _finished(folder: Path, digest: str) -> Predictions | None:
    """The prediction store of the member in ``folder`` when its record says it is done under
    ``digest`` (`webly.resume.finished`) and the store opens."""
    if finished(folder / CONFIG_FILE, digest) is None:
        return None
    try:
        return Predictions.open(folder / STORE_DIR)
    except DataError:
        return None


def _from_store(base: MemberResult, store: Predictions, skipped: bool = True) -> MemberResult:
    metrics = store.fold_metrics
    n_folds = int(store.model["folds"])
    oof, test = metrics.get("oof", {}), metrics.get("test", {})
    parts = [str(f) for f in range(n_folds)] if n_folds else ["full"]
    return replace(
        base,
        oof_metric=oof.get("metric"),
        oof_loss=oof.get("loss"),
        test_metric=test.get("metric"),
        test_loss=test.get("loss"),
        seconds=sum(metrics[part]["seconds"] for part in parts),
        skipped=skipped,
    )
