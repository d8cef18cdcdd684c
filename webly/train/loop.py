"""Fit one network on a memory-mapped `Dataset`: `TrainConfig` and `fit`.

Every epoch ends with an atomic checkpoint in the work folder (model, optimizer, schedule step,
EMA, every RNG state, history), so a killed run started again with the same arguments resumes
and ends with exactly the weights of an uninterrupted one. The checkpoint records the settings
and digests of the labels and sample weights given in place of the store's (cleaned labels,
a curriculum), so a run is never resumed under other ones.

Randomness: three child seeds of ``SeedSequence(config.seed)`` drive the data generator (row
order, and one seed per batch for its frame sampling, so the loader threads' scheduling never
changes a batch), the mixup generator, and torch's RNG (dropout). torch's global RNG is forked
for the duration of `fit`, so the caller's is untouched.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from webly._fs import replaced_file
from webly.core import GAP_K, Task, TopK
from webly.data.store import Dataset
from webly.errors import ConfigError, DataError
from webly.metrics.evaluate import task_metric
from webly.progress import epoch_reporter
from webly.train.ema import EMA
from webly.train.frames import FRAME_SAMPLINGS, FrameSampling, gather_frames
from webly.train.losses import classification_loss
from webly.train.lr_search import LRSearch, Probe, choose_lr
from webly.train.mixup import mixup
from webly.train.prior import set_prior_bias
from webly.train.reweight import class_weights
from webly.train.samplers import Sampler, epoch_rows
from webly.train.schedule import SCHEDULES, Schedule, epoch_scale, lr_factor

if TYPE_CHECKING:  # the trainer only calls its methods; importing it would tie train to distill
    from webly.distill.pseudo import PseudoLabels

CHECKPOINT, BEST, LR_SEARCH = "checkpoint.pt", "best.pt", "lr-search.pt"
TRAINER_FILES = (CHECKPOINT, BEST, LR_SEARCH)
"""What `fit` leaves in its work folder: the epoch checkpoint, the best weights and the
learning-rate search's outcome."""


@runtime_checkable
class WeightSchedule(Protocol):
    """Per-row loss weights that change from epoch to epoch (`webly.clean.Curriculum`).

    ``weights(t)`` is the ``(n_rows,)`` float32 weights of epoch ``t`` (1-based), a pure
    function of ``t`` (so a resumed run trains as an uninterrupted one); ``settings()`` what
    they depend on, JSON-able (recorded in checkpoints); ``subset(rows)`` the schedule of some
    rows, in the order given.
    """

    def __len__(self) -> int: ...

    def weights(self, epoch: int) -> np.ndarray: ...

    def settings(self) -> dict[str, Any]: ...

    def subset(self, rows: np.ndarray) -> WeightSchedule: ...


@dataclass(frozen=True)
class TrainConfig:
    """How to fit one network.

    Training runs until the validation metric (GAP@20 for multi-label data, accuracy for
    multi-class) has not improved for ``patience`` epochs, at most ``epochs``, and ends with the
    best epoch's weights. Without validation data `fit` holds out ``valid_fraction`` of the
    training rows for it (0: none; then every one of ``epochs`` is trained and the last kept).

    ``lr``: the base learning rate, or ``"auto"``: before training, each rate of
    ``lr_candidates`` trains the initial weights for ``lr_probe_steps`` optimizer steps and the
    one whose validation metric is best is kept (`webly.train.lr_search`). ``schedule``
    (`webly.train.schedule`): ``constant``, ``cosine`` (to 0 at the last of ``epochs``),
    ``step`` (times ``lr_decay`` every ``decay_every`` epochs) or ``plateau`` (times
    ``lr_decay`` after ``decay_patience`` epochs without a better validation metric), after a
    linear warm-up of ``warmup_epochs``. ``output_bias``: ``prior`` starts the classifier's
    bias at the training labels' class priors (`webly.train.prior`), ``init`` leaves the
    initialisation as it is. ``max_frames``/``frame_sampling``/``cosine_threshold`` apply to
    frame-level models in training (`webly.train.frames`); evaluation sees all frames.
    ``workers``: loader threads gathering batches from the store ahead of the step (each batch
    is the same for any number, so it is left out of `results_settings`). ``time_limit``:
    seconds for the whole call, the learning-rate search included: no epoch starts that the
    mean epoch so far says would end past it (at least one is trained). A budget, not a
    result setting: left out of `results_settings`, so a run resumes under another one, and
    what it trains depends on the machine's speed.
    ``class_weight_power``: per-class loss weights ``n_c ** -power`` from the training labels'
    class counts (`webly.train.reweight.class_weights`, mean 1 over the labelled entries;
    WebVision's class re-weighting), used when `fit` is given no ``class_weight``; None
    (default): none.
    """

    epochs: int = 100
    batch_size: int = 256
    lr: float | Literal["auto"] = "auto"
    schedule: Schedule = "plateau"
    lr_decay: float = 0.1
    decay_every: int = 10
    decay_patience: int = 2
    lr_candidates: Sequence[float] = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    lr_probe_steps: int = 100
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0
    grad_accumulation: int = 1
    clip_norm: float | None = None
    mixup_alpha: float = 0.0
    ema_decay: float | None = None
    smoothing: float = 0.0
    class_weight_power: float | None = None
    distill_lam: float = 0.5
    patience: int | None = 5
    valid_fraction: float = 0.1
    output_bias: Literal["prior", "init"] = "prior"
    sampler: Sampler = "instance"
    max_frames: int = 300
    frame_sampling: FrameSampling = "random"
    cosine_threshold: float = 0.1
    eval_batch_size: int = 1024
    workers: int = 1
    time_limit: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for key in (
            "epochs", "batch_size", "grad_accumulation", "max_frames", "eval_batch_size",
            "workers", "decay_every", "decay_patience", "lr_probe_steps",
        ):  # fmt: skip
            if getattr(self, key) < 1:
                raise ConfigError(f"train {key} is {getattr(self, key)}; it must be >= 1")
        if self.lr != "auto" and not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ConfigError(f"train lr is {self.lr!r}; use a rate > 0 or 'auto'")
        rates = self.lr_candidates
        if not rates or not all(isinstance(r, int | float) and 0 < r < math.inf for r in rates):
            raise ConfigError(
                f"train lr_candidates is {rates!r}; give one or more rates > 0, e.g. [0.001, 0.01]"
            )
        if not self.weight_decay >= 0 or not self.warmup_epochs >= 0:
            raise ConfigError(
                f"train weight_decay {self.weight_decay}, warmup_epochs {self.warmup_epochs}: "
                "they must be >= 0"
            )
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"train lr_decay is {self.lr_decay}; use a factor in (0, 1]")
        if not 0 <= self.valid_fraction < 1:
            raise ConfigError(
                f"train valid_fraction is {self.valid_fraction}; use a share in [0, 1) "
                "(0: no held-out rows without validation data)"
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"schedule {self.schedule!r} is unknown; use one of {', '.join(SCHEDULES)}"
            )
        if self.output_bias not in ("prior", "init"):
            raise ConfigError(f"output_bias {self.output_bias!r} is unknown; use prior or init")
        if self.optimizer not in ("adamw", "sgd"):
            raise ConfigError(f"optimizer {self.optimizer!r} is unknown; use adamw or sgd")
        if self.sampler not in ("instance", "class", "sqrt"):
            raise ConfigError(f"sampler {self.sampler!r} is unknown; use instance, class or sqrt")
        if self.frame_sampling not in FRAME_SAMPLINGS:
            raise ConfigError(
                f"frame_sampling {self.frame_sampling!r} is unknown; use one of "
                f"{', '.join(FRAME_SAMPLINGS)}"
            )
        if self.mixup_alpha < 0:
            raise ConfigError(f"mixup_alpha is {self.mixup_alpha}; use 0 (off) or > 0")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"ema_decay is {self.ema_decay}; use a value in (0, 1) or None")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ConfigError(f"clip_norm is {self.clip_norm}; use a value > 0 or None")
        if self.time_limit is not None and not (
            isinstance(self.time_limit, int | float) and 0 < self.time_limit < math.inf
        ):
            raise ConfigError(
                f"train time_limit is {self.time_limit}; give seconds > 0, or None for no limit"
            )
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience is {self.patience}; use a value >= 1 or None")
        power = self.class_weight_power
        if power is not None and not (math.isfinite(power) and power >= 0):
            raise ConfigError(
                f"class_weight_power is {power}; use a value >= 0 (0.5: inverse square root of "
                "the class frequency, 1: inverse frequency) or None"
            )
        object.__setattr__(self, "lr_candidates", tuple(float(r) for r in rates))

    def results_settings(self) -> dict[str, Any]:
        """The settings the results depend on (all but ``workers`` and ``time_limit``), as a
        JSON-able dict."""
        settings = asdict(self)
        settings.pop("workers")
        settings.pop("time_limit")
        settings["lr_candidates"] = list(self.lr_candidates)
        if settings["class_weight_power"] is None:  # absent when unset: earlier hashes hold
            settings.pop("class_weight_power")
        return settings


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss, validation metric (None without validation data),
    wall seconds, training samples per second and the learning rate at its end."""

    epoch: int
    loss: float
    metric: float | None
    seconds: float
    samples_per_s: float
    lr: float


@dataclass(frozen=True)
class FitResult:
    """What `fit` did. ``best_metric``/``best_epoch`` are None without validation data;
    ``metric`` names it (``gap@20`` or ``accuracy``). ``lr`` is the base learning rate trained
    with; ``lr_search`` the rates tried by ``lr="auto"`` (`webly.train.lr_search.LRSearch`),
    else None. ``valid_rows``: validation rows (given, or held out of the training rows).
    ``out_of_time``: training stopped at ``time_limit``. ``held_out``: ``(valid_rows,)`` int64
    positions in ``train`` of the rows held out for validation (ascending), None when
    ``valid`` was given or no row was held out."""

    metric: str
    best_metric: float | None
    best_epoch: int | None
    stopped_early: bool
    history: list[EpochStats] = field(default_factory=list)
    lr: float = 0.0
    lr_search: LRSearch | None = None
    valid_rows: int = 0
    out_of_time: bool = False
    held_out: np.ndarray | None = None


def training_device() -> torch.device:
    """Where `fit` trains and fold models predict: the current CUDA device when there is one
    (bfloat16 autocast), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit(
    model: nn.Module,
    train: Dataset,
    valid: Dataset | None,
    config: TrainConfig,
    groups: tuple[str, ...] | list[str],
    workdir: str | Path,
    targets: sp.spmatrix | np.ndarray | None = None,
    sample_weight: np.ndarray | WeightSchedule | None = None,
    class_weight: np.ndarray | None = None,
    on_epoch_end: Callable[[EpochStats], None] | None = None,
    pseudo: PseudoLabels | None = None,
    labels: sp.spmatrix | np.ndarray | None = None,
    valid_labels: sp.spmatrix | np.ndarray | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train``; resume from ``workdir`` if it holds a checkpoint.

    Parameters
    ----------
    model : a `webly.models.Network` (its ``level`` says video- or frame-level), initialised
    train, valid : stores with the same classes; ``valid`` is evaluated after every epoch
    config : the training settings; a checkpoint is resumed only under the same settings
    groups : feature groups fed to the model, concatenated in this order
    workdir : folder for ``checkpoint.pt`` (every epoch) and ``best.pt`` (best weights)
    targets : (n_train, n_classes) soft targets in [0, 1] of a teacher, optional; the loss is
        ``distill_lam * loss(labels) + (1 - distill_lam) * loss(targets)``
    sample_weight : (n_train,) per-row loss weights >= 0, or a `WeightSchedule` (e.g. a
        `webly.clean.Curriculum`) asked for epoch ``t``'s weights before the epoch, optional
    class_weight : (n_classes,) per-class loss weights, optional; default those of
        ``config.class_weight_power`` when it is set
    on_epoch_end : called with each finished epoch's stats after its checkpoint is written
    pseudo : pseudo-labeled rows of an unlabeled store (`webly.distill.pseudo.PseudoLabels`),
        optional. In epoch ``t`` (1-based) with ``alpha = pseudo.weight(t) > 0``, every batch
        of training rows also carries its share of the pseudo rows (all of them once an epoch,
        in a random order, read from their store in place) and its loss becomes ``mean(loss of
        its training rows) + alpha * mean(loss of its pseudo rows)``; epochs with ``alpha = 0``
        skip them (and train exactly as without ``pseudo``). Pseudo rows take no teacher
        ``targets`` or ``sample_weight``; with mixup they mix with the training rows like any
        row. The checkpoint records the pseudo-label settings and a digest of the rows.
    labels : (n_train, n_classes) targets in [0, 1] replacing ``train.labels``, optional:
        cleaned or relabelled labels (0/1), or soft relabels; nothing of the store is copied.
        The class-aware samplers count a row in the classes where its target is >= 0.5.
    valid_labels : (n_valid, n_classes) in [0, 1] replacing ``valid.labels`` in the
        validation metric (best epoch, early stopping), optional; entries >= 0.5 are positives.

    Returns
    -------
    FitResult
        On return the model holds the weights it is evaluated with (the EMA weights when
        ``ema_decay`` is set) of the best validation epoch, or of the last epoch without
        ``valid``.
    """
    _check_inputs(model, train, valid, targets, sample_weight, class_weight, pseudo)
    if labels is not None:
        labels = check_labels("labels", labels, (len(train), train.n_classes))
    if class_weight is None and config.class_weight_power is not None:
        counted = hard_labels(labels) if labels is not None else train.labels
        class_weight = class_weights(counted, config.class_weight_power, n_classes=train.n_classes)
    if valid_labels is not None:
        if valid is None:
            raise ConfigError("valid_labels given without valid data; pass valid too, or neither")
        valid_labels = hard_labels(
            check_labels("valid_labels", valid_labels, (len(valid), valid.n_classes))
        )
    data = _Data(train, valid, targets, sample_weight, labels, valid_labels)
    held = None
    if valid is None and config.valid_fraction > 0:
        held = held_out_rows(len(train), config.valid_fraction, config.seed)
        data = data.hold_out(held) if held is not None else data
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    device = training_device()
    forked = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        fresh = not (workdir / CHECKPOINT).is_file()
        if fresh and config.output_bias == "prior":
            set_prior_bias(model, data.labels if data.labels is not None else data.train.labels,
                           train.task)  # fmt: skip
        search, started = None, time.perf_counter()
        if config.lr == "auto":
            search = _search_lr(model, data, config, tuple(groups), workdir, device, class_weight)
        lr = search.lr if search is not None else float(config.lr)
        trainer = _Trainer(
            model, data, config, lr, tuple(groups), workdir, device,
            class_weight, on_epoch_end, pseudo, searched=time.perf_counter() - started,
        )  # fmt: skip
        return replace(trainer.run(), lr_search=search, held_out=held)


def held_out_rows(n_rows: int, fraction: float, seed: int) -> np.ndarray | None:
    """The ``(round(n_rows * fraction),)`` positions (at least one, ascending) that `fit`
    holds out of ``n_rows`` training rows for validation when given none, drawn from
    ``seed``; None when fewer than 2 rows would be left to train."""
    n_valid = max(1, round(n_rows * fraction))
    if n_rows - n_valid < 2:
        return None
    order = np.random.default_rng(np.random.SeedSequence([seed, 1])).permutation(n_rows)
    return np.sort(order[:n_valid])


@dataclass(frozen=True)
class _Data:
    """What `fit` trains and validates on, with the per-row inputs given in place of the
    store's (each None when not given)."""

    train: Dataset
    valid: Dataset | None
    targets: sp.spmatrix | np.ndarray | None
    sample_weight: np.ndarray | WeightSchedule | None
    labels: sp.csr_matrix | None
    valid_labels: sp.csr_matrix | None

    def hold_out(self, held: np.ndarray) -> _Data:
        """The training rows at positions ``held`` (`held_out_rows`) as the validation rows,
        the rest for training."""
        n = len(self.train)
        kept = np.setdiff1d(np.arange(n), held)
        weight = self.sample_weight
        if isinstance(weight, WeightSchedule):
            weight = weight.subset(kept)
        elif weight is not None:
            weight = np.asarray(weight)[kept]
        return _Data(
            self.train.subset(kept),
            self.train.subset(held),
            self.targets[kept] if self.targets is not None else None,
            weight,
            self.labels[kept] if self.labels is not None else None,
            hard_labels(self.labels[held]) if self.labels is not None else None,
        )


def iter_scores(
    model: nn.Module,
    ds: Dataset,
    groups: tuple[str, ...] | list[str],
    batch_size: int = 1024,
    device: torch.device | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Probabilities of the model over ``ds`` in eval mode, all frames for frame models.

    Yields
    ------
    rows : (B,) int64 row positions, in order
    scores : (B, n_classes) float32, sigmoid (multi-label) or softmax (multi-class) of logits
    """
    for rows, x, lengths in eval_batches(model, ds, groups, batch_size, device):
        yield rows, predict_probs(model, x, lengths, ds.task)


def eval_batches(
    model: nn.Module,
    ds: Dataset,
    groups: tuple[str, ...] | list[str],
    batch_size: int = 1024,
    device: torch.device | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor | None]]:
    """The batches `iter_scores` feeds the model, in row order, each read from the store while
    the one before is scored; puts the model in eval mode.

    Yields
    ------
    rows : (B,) int64 row positions
    x : on the model's device, (B, D) float32 features, or (B, T, D) float32 frames of a
        frame-level model (all frames, zero-padded)
    lengths : (B,) int64 frames per row on the device; None for a video-level model
    """
    device = device or next(model.parameters()).device
    frame_level = getattr(model, "level", "video") == "frame"
    decoder = _device_decoder(ds, tuple(groups), device) if frame_level else None

    def gather(rows: np.ndarray) -> dict[str, Any]:
        if not frame_level:
            return {"rows": rows, "x": _to(ds.features(rows, groups), device), "lengths": None}
        codes, lengths = ds.frames(rows, groups, decode=decoder is None)
        x, n_frames = _to(codes, device), _to(lengths, device)
        if decoder is not None:
            x = decoder(x, n_frames)
        return {"rows": rows, "x": x, "lengths": n_frames}

    calls = [(np.arange(i, min(i + batch_size, len(ds))),) for i in range(0, len(ds), batch_size)]
    model.eval()
    with contextlib.closing(_load_ahead(gather, calls, 1)) as loader:
        for batch in loader:
            yield batch["rows"], batch["x"], batch["lengths"]


def predict_probs(
    model: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None, task: Task
) -> np.ndarray:
    """(B, n_classes) float32 probabilities of one batch (see `eval_batches`): sigmoid
    (``multilabel``) or softmax (``multiclass``) of the logits, without gradients, under
    bfloat16 autocast on CUDA."""
    with torch.no_grad(), _autocast(x.device):
        logits = model(x) if lengths is None else model(x, lengths)
    logits = logits.float()
    probs = logits.sigmoid() if task.multilabel else logits.softmax(dim=1)
    return probs.cpu().numpy()


def evaluate(
    model: nn.Module,
    ds: Dataset,
    groups: tuple[str, ...] | list[str],
    batch_size: int = 1024,
    device: torch.device | None = None,
    labels: sp.csr_matrix | None = None,
) -> float:
    """``ds.task.metric()`` (GAP@20 or accuracy) of the model on ``ds``, streamed: only
    each row's top 20 classes are kept. ``labels``: (len(ds), n_classes) 0/1 to score against
    instead of ``ds.labels``."""
    k = min(GAP_K, ds.n_classes)
    indices, scores = [], []
    for _, probs in iter_scores(model, ds, groups, batch_size, device):
        top = np.argpartition(-probs, k - 1, axis=1)[:, :k]  # (B, k)
        indices.append(top)
        scores.append(np.take_along_axis(probs, top, axis=1))
    top_k = TopK(np.concatenate(indices), np.concatenate(scores))
    truth = ds.labels if labels is None else labels
    return task_metric(top_k, truth, ds.task, GAP_K)


def hard_labels(labels: sp.spmatrix) -> sp.csr_matrix:
    """(n_samples, n_classes) float32 0/1 CSR: 1 where ``labels`` (targets in [0, 1]) is >= 0.5."""
    csr = sp.csr_matrix(labels, dtype=np.float32, copy=True)
    csr.data = (csr.data >= 0.5).astype(np.float32)
    csr.eliminate_zeros()
    csr.sort_indices()
    return csr


def array_digest(*arrays: np.ndarray) -> str:
    """SHA-256 of the arrays' bytes (C order), in the order given."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def matrix_digest(matrix: sp.spmatrix) -> str:
    """SHA-256 of a matrix as float32 CSR (its shape, indptr, indices and data)."""
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    return array_digest(np.asarray(csr.shape, np.int64), csr.indptr, csr.indices, csr.data)


def weight_settings(sample_weight: np.ndarray | WeightSchedule) -> dict[str, Any]:
    """What per-row weights are, JSON-able: a schedule's settings, or an array's digest."""
    if isinstance(sample_weight, WeightSchedule):
        return {"schedule": sample_weight.settings()}
    return {"sha256": array_digest(np.asarray(sample_weight, dtype=np.float32))}


# --------------------------------------------------------------------------- internals


def _check_inputs(
    model: nn.Module,
    train: Dataset,
    valid: Dataset | None,
    targets: sp.spmatrix | np.ndarray | None,
    sample_weight: np.ndarray | WeightSchedule | None,
    class_weight: np.ndarray | None,
    pseudo: PseudoLabels | None,
) -> None:
    n, c = len(train), train.n_classes
    if len(train) < 2:
        raise DataError(f"the training set has {n} rows; training needs at least 2")
    if valid is not None and (valid.n_classes != c or valid.task != train.task):
        raise DataError(
            f"validation data has {valid.n_classes} {valid.task} classes, training data "
            f"{c} {train.task}; use splits of one dataset"
        )
    model_classes = getattr(model, "config", {}).get("n_classes", c)
    if model_classes != c:
        raise ConfigError(f"the model predicts {model_classes} classes, the data has {c}")
    if targets is not None:
        if targets.shape != (n, c):
            raise DataError(f"teacher targets are {targets.shape}; they must be ({n}, {c})")
        values = np.asarray(targets.data if sp.issparse(targets) else targets)
        if values.size and not (np.all(values >= 0) and np.all(values <= 1)):
            raise DataError("teacher targets leave [0, 1]; pass probabilities, not logits")
    if sample_weight is not None:
        check_sample_weight(sample_weight, n)
    if class_weight is not None and np.shape(class_weight) != (c,):
        raise DataError(f"class_weight is {np.shape(class_weight)}; it must be ({c},)")
    if pseudo is not None and (pseudo.dataset.n_classes != c or pseudo.dataset.task != train.task):
        raise DataError(
            f"pseudo-labeled data has {pseudo.dataset.n_classes} {pseudo.dataset.task} classes, "
            f"training data {c} {train.task}; pseudo-label a split of the same dataset"
        )


def check_sample_weight(
    sample_weight: np.ndarray | WeightSchedule, n: int
) -> np.ndarray | WeightSchedule:
    """``sample_weight`` as (n,) float32 when it holds n finite weights >= 0, a schedule when it
    covers n rows; else `DataError`."""
    if isinstance(sample_weight, WeightSchedule):
        if len(sample_weight) != n:
            raise DataError(
                f"the sample weight schedule covers {len(sample_weight)} rows but the training "
                f"data has {n}; build it for the training rows (Curriculum.subset)"
            )
        return sample_weight
    weight = np.asarray(sample_weight)
    if weight.shape != (n,) or weight.dtype.kind not in "fiub":
        raise DataError(
            f"sample_weight has shape {weight.shape} and dtype {weight.dtype}; pass ({n},) "
            "float weights, one per training row"
        )
    weight = weight.astype(np.float32)
    if weight.size and not (np.all(np.isfinite(weight)) and weight.min() >= 0):
        raise DataError(
            f"sample_weight holds {weight[~(np.isfinite(weight) & (weight >= 0))][0]}; pass "
            "finite weights >= 0 (0 = the row does not count)"
        )
    return weight


def check_labels(
    name: str, labels: sp.spmatrix | np.ndarray, expected: tuple[int, int]
) -> sp.csr_matrix:
    """``labels`` as canonical float32 CSR when they are ``expected`` (n_samples, n_classes)
    targets in [0, 1], else `DataError`."""
    shape = tuple(labels.shape)
    if shape != expected:
        raise DataError(
            f"{name} have shape {shape}; they must be {expected} (rows of the "
            "data, classes), e.g. NoiseReport.cleaned_labels() of these rows"
        )
    csr = sp.csr_matrix(labels, dtype=np.float32)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    values = csr.data
    if values.size and not (np.all(values >= 0) and np.all(values <= 1)):  # False with NaN
        bad = values[~((values >= 0) & (values <= 1))][0]
        raise DataError(
            f"{name} hold {bad:g}, outside [0, 1]; pass 0/1 labels or soft targets in [0, 1]"
        )
    return csr


def _search_lr(
    model: nn.Module,
    data: _Data,
    config: TrainConfig,
    groups: tuple[str, ...],
    workdir: Path,
    device: torch.device,
    class_weight: np.ndarray | None,
) -> LRSearch:
    """``lr="auto"``: `choose_lr` over ``config.lr_candidates``, each probe a quiet trainer on a
    copy of ``model`` (its initial weights) for ``lr_probe_steps`` steps at a constant rate,
    without EMA (whose average would hide the rate) or pseudo rows, that writes nothing (a
    probe is not resumed: its best weights stay in memory). The outcome is kept in
    ``workdir/lr-search.pt``, so a resumed `fit` does not search again."""
    record = workdir / LR_SEARCH
    settings = config.results_settings()
    if record.is_file():
        saved = torch.load(record, weights_only=True)
        if saved["settings"] == settings:
            return LRSearch.from_json(saved["search"])
    size = config.eval_batch_size
    # The bars a probe must pass: the initial weights' validation metric, and their loss on
    # the first training rows (the same rows for every probe, in eval mode).
    initial = None
    if data.valid is not None:
        initial = evaluate(model.to(device), data.valid, groups, size, device, data.valid_labels)
    initial_loss = _rows_loss(model, data, groups, device)

    def probe(rate: float) -> Probe:
        trial = copy.deepcopy(model)
        trial_config = replace(
            config, lr=rate, schedule="constant", warmup_epochs=0.0, patience=None,
            ema_decay=None, time_limit=None,
        )  # fmt: skip
        trainer = _Trainer(
            trial, data, trial_config, rate, groups, workdir, device, class_weight,
            None, None, max_steps=config.lr_probe_steps, quiet=True, persist=False,
        )  # fmt: skip
        trainer.run()
        last = trainer.history[-1]
        lowered = _rows_loss(trial, data, groups, device) < initial_loss
        if last.metric is not None and initial is not None:
            return Probe(last.metric, lowered or last.metric > initial)
        return Probe(-last.loss, lowered)

    search = choose_lr(config.lr_candidates, probe)
    _save_atomic({"settings": settings, "search": search.to_json()}, record)
    return search


def _rows_loss(
    model: nn.Module, data: _Data, groups: tuple[str, ...], device: torch.device, n: int = 256
) -> float:
    """The mean training loss of the model in eval mode on the first ``n`` training rows
    (all their frames), under the labels it trains on."""
    rows = np.arange(min(n, len(data.train)))
    labels = data.labels if data.labels is not None else data.train.labels
    targets = _to(np.asarray(labels[rows].toarray(), dtype=np.float32), device)
    (_, x, lengths), *_ = eval_batches(model, data.train.subset(rows), groups, rows.size, device)
    with torch.no_grad(), _autocast(device):
        logits = model(x) if lengths is None else model(x, lengths)
    return float(classification_loss(logits.float(), targets, data.train.task))


def _to(a: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(a)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t


def _autocast(device: torch.device) -> Any:
    """bfloat16 autocast on CUDA (no loss scaling needed), nothing on CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _load_ahead(
    load: Callable[..., dict[str, Any]], calls: list[tuple[Any, ...]], workers: int
) -> Generator[dict[str, Any], None, None]:
    """Yield ``load(*call)`` for each of ``calls`` in order while ``workers`` threads prepare
    up to ``workers + 1`` of them ahead (the gathers are numpy work that releases the GIL)."""
    with ThreadPoolExecutor(workers, thread_name_prefix="webly-loader") as pool:
        pending: deque[Future[dict[str, Any]]] = deque()
        waiting = iter(calls)
        try:
            for call in waiting:
                pending.append(pool.submit(load, *call))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _device_decoder(
    ds: Dataset, groups: tuple[str, ...], device: torch.device
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """On CUDA, when every group is stored as uint8: a function dequantising ``(B, T, D)`` codes
    on the device (a quarter of the bytes cross the bus) with `FeatureSpec.decode`'s float32
    arithmetic, padding frames set to 0. None elsewhere: the loader decodes."""
    specs = [ds.layout.feature(g) for g in groups]
    if device.type != "cuda" or any(spec.dtype != "uint8" for spec in specs):
        return None
    dims = [s.dim for s in specs]
    spans = np.array([s.quant_max - s.quant_min for s in specs])
    lows = np.array([s.quant_min for s in specs])
    scale = torch.tensor(np.repeat(spans / 255.0, dims), dtype=torch.float32, device=device)
    offset = torch.tensor(np.repeat(spans / 512.0 + lows, dims), dtype=torch.float32, device=device)

    def decode(codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        padding = torch.arange(codes.shape[1], device=device)[None, :] >= lengths[:, None]
        x = codes.float() * scale + offset  # (B, T, D)
        return x.masked_fill_(padding[:, :, None], 0.0)

    return decode


def _cat_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows of ``a`` then ``b``: (B, D) features, or (B, T, D) frames zero-padded to the
    longer T."""
    if a.ndim == 3 and a.shape[1] != b.shape[1]:
        longest = max(a.shape[1], b.shape[1])
        a = nn.functional.pad(a, (0, 0, 0, longest - a.shape[1]))
        b = nn.functional.pad(b, (0, 0, 0, longest - b.shape[1]))
    return torch.cat([a, b])


def _save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` of ``obj`` replacing ``path`` in one step (`replaced_file`)."""
    with replaced_file(path, "wb") as fh:
        torch.save(obj, fh)


class _Trainer:
    """The state of one `fit` call; `run` trains, checkpoints and resumes (with ``persist``;
    without, it writes nothing and keeps its best weights in memory)."""

    def __init__(
        self,
        model: nn.Module,
        data: _Data,
        config: TrainConfig,
        lr: float,
        groups: tuple[str, ...],
        workdir: Path,
        device: torch.device,
        class_weight: np.ndarray | None,
        on_epoch_end: Callable[[EpochStats], None] | None,
        pseudo: PseudoLabels | None,
        max_steps: int | None = None,
        quiet: bool = False,
        searched: float = 0.0,
        persist: bool = True,
    ) -> None:
        self.model = model.to(device)
        train, valid, labels = data.train, data.valid, data.labels
        self.train, self.valid, self.config, self.lr = train, valid, config, lr
        self.groups, self.workdir, self.device = groups, workdir, device
        self.max_steps, self.quiet, self.searched = max_steps, quiet, searched
        self.persist = persist
        self.best_state: dict[str, torch.Tensor] | None = None  # without persist
        self.out_of_time = False
        self.labels = train.labels if labels is None else labels
        self.sampled_labels = train.labels if labels is None else hard_labels(labels)
        self.valid_labels = data.valid_labels
        targets = data.targets
        self.teacher = sp.csr_matrix(targets, dtype=np.float32) if targets is not None else None
        self.sample_weight = (
            check_sample_weight(data.sample_weight, len(train))
            if data.sample_weight is not None
            else None
        )
        # What was given in place of the store's labels and uniform weights, as checkpoints
        # record it (each absent when not given, so earlier checkpoints stay valid).
        self.given: dict[str, Any] = {}
        if labels is not None:
            self.given["labels"] = matrix_digest(labels)
        if data.valid_labels is not None:
            self.given["valid_labels"] = matrix_digest(data.valid_labels)
        if self.sample_weight is not None:
            self.given["sample_weight"] = weight_settings(self.sample_weight)
        self.epoch_weight: np.ndarray | None = None  # the rows' weights in the current epoch
        self.class_weight = (
            torch.as_tensor(class_weight, dtype=torch.float32, device=device)
            if class_weight is not None
            else None
        )
        self.on_epoch_end = on_epoch_end
        self.frame_level = getattr(model, "level", "video") == "frame"
        self.decoder = _device_decoder(train, groups, device) if self.frame_level else None
        self.pseudo = pseudo
        self.pseudo_decoder = (
            _device_decoder(pseudo.dataset, groups, device)
            if pseudo is not None and self.frame_level
            else None
        )
        self.metric = train.task.metric().key

        data_seed, mix_seed, torch_seed = np.random.SeedSequence(config.seed).spawn(3)
        self.data_rng = np.random.default_rng(data_seed)
        self.mix_rng = np.random.default_rng(mix_seed)
        torch.manual_seed(int(torch_seed.generate_state(1, np.uint64)[0] >> np.uint64(1)))

        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer: torch.optim.Optimizer
        # Fused kernels update all parameters in one pass: on the CPU the unfused AdamW's
        # elementwise work took about 3/4 of a resnet_av step (bench/bench_train.py).
        if config.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(
                params, lr=lr, weight_decay=config.weight_decay, fused=True
            )
        else:
            self.optimizer = torch.optim.SGD(
                params,
                lr=lr,
                momentum=config.momentum,
                weight_decay=config.weight_decay,
                fused=True,
            )
        self.ema = EMA(model, config.ema_decay) if config.ema_decay is not None else None
        n_batches = self._n_batches(len(train))
        self.steps_per_epoch = math.ceil(n_batches / config.grad_accumulation)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.warmup_steps = round(config.warmup_epochs * self.steps_per_epoch)
        self.step = 0
        self.epoch = 0
        self.history: list[EpochStats] = []
        self.epoch_scale = 1.0
        self.stopped_early = False

    # ---- the loop

    def run(self) -> FitResult:
        if self.persist:
            self._resume()
        config = self.config
        with self._reporter() as report:
            while self.epoch < config.epochs and not self.stopped_early and not self._spent():
                stats = self._train_epoch(report)
                self.history.append(stats)
                self.epoch += 1
                best = self._best()
                if stats.metric is not None and best is not None and best.epoch == stats.epoch:
                    if self.persist:
                        _save_atomic(self._eval_state(), self.workdir / BEST)
                    else:
                        self.best_state = self._eval_state()
                if config.patience is not None and best is not None:
                    self.stopped_early = stats.epoch - best.epoch >= config.patience
                self.out_of_time = self._out_of_time()
                self.stopped_early |= self.out_of_time
                if self.persist:
                    self._checkpoint()
                report(stats)
                if self.on_epoch_end is not None:
                    self.on_epoch_end(stats)
        return self._finish()

    def _train_epoch(self, report: Callable[..., None]) -> EpochStats:
        config = self.config
        started = time.perf_counter()
        self.model.train()
        self.epoch_weight = (
            np.asarray(self.sample_weight.weights(self.epoch + 1), dtype=np.float32)
            if isinstance(self.sample_weight, WeightSchedule)
            else self.sample_weight
        )
        scores = [s.metric if s.metric is not None else -s.loss for s in self.history]
        self.epoch_scale = epoch_scale(
            config.schedule, scores, config.lr_decay, config.decay_every, config.decay_patience
        )
        rows = epoch_rows(self.sampled_labels, config.sampler, self.data_rng)
        batches = self._split(rows)
        seeds = self.data_rng.integers(0, 2**63, size=len(batches))
        accum = config.grad_accumulation
        total_loss, seen = 0.0, 0
        self.optimizer.zero_grad(set_to_none=True)
        calls = list(zip(batches, seeds.tolist(), self._pseudo_batches(len(batches)), strict=True))
        with contextlib.closing(_load_ahead(self._gather, calls, config.workers)) as loader:
            for i, batch in enumerate(loader):
                group_start = i - i % accum
                group_size = min(accum, len(batches) - group_start)
                loss = self._loss(batch)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise DataError(
                        f"training loss is {value} at epoch {self.epoch + 1}, step {i + 1}; "
                        "lower the learning rate or check the features for extreme values"
                    )
                (loss / group_size).backward()
                n = batch["n"]
                total_loss += value * n
                seen += n
                if i + 1 - group_start == group_size:
                    self._optimizer_step()
                report(advance=n, loss=total_loss / seen, seen=seen, started=started)
                if self.max_steps is not None and self.step >= self.max_steps:
                    break
        metric = self._evaluate() if self.valid is not None else None
        seconds = time.perf_counter() - started
        return EpochStats(
            epoch=self.epoch + 1,
            loss=total_loss / max(seen, 1),
            metric=metric,
            seconds=seconds,
            samples_per_s=seen / max(seconds, 1e-9),
            lr=float(self.optimizer.param_groups[0]["lr"]),
        )

    def _out_of_time(self) -> bool:
        """Whether another epoch of the mean length so far would end past ``time_limit``
        (the learning-rate search and the epochs before a resume count)."""
        limit = self.config.time_limit
        if limit is None or self.epoch >= self.config.epochs:
            return False
        seconds = [s.seconds for s in self.history]
        return self.searched + sum(seconds) + sum(seconds) / len(seconds) > limit

    def _spent(self) -> bool:
        """Whether a probe of the learning-rate search has taken its steps."""
        return self.max_steps is not None and self.step >= self.max_steps

    def _loss(self, batch: dict[str, Any]) -> torch.Tensor:
        config = self.config
        x, targets = batch["x"], batch["targets"]
        lengths, teacher, weight = batch["lengths"], batch["teacher"], batch["weight"]
        if config.mixup_alpha > 0:
            mixed = mixup(
                x, targets, self.mix_rng, config.mixup_alpha,
                lengths=lengths, teacher=teacher, sample_weight=weight,
            )  # fmt: skip
            x, targets, lengths = mixed.x, mixed.targets, mixed.lengths
            teacher, weight = mixed.teacher, mixed.sample_weight
        with _autocast(self.device):
            logits = self.model(x, lengths) if self.frame_level else self.model(x)
        return classification_loss(
            logits.float(),
            targets,
            self.train.task,
            teacher=teacher,
            lam=config.distill_lam,
            smoothing=config.smoothing,
            sample_weight=weight,
            class_weight=self.class_weight,
        )

    def _optimizer_step(self) -> None:
        config = self.config
        factor = lr_factor(
            self.step, self.warmup_steps, self.total_steps, config.schedule, self.epoch_scale
        )
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * factor
        if self.config.clip_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1

    def _evaluate(self) -> float:
        assert self.valid is not None
        size = self.config.eval_batch_size
        args = (self.model, self.valid, self.groups, size, self.device, self.valid_labels)
        if self.ema is None:
            return evaluate(*args)
        with self.ema.swap(self.model):
            return evaluate(*args)

    # ---- batches

    def _n_batches(self, n_rows: int) -> int:
        full, rest = divmod(n_rows, self.config.batch_size)
        return full + (rest > 1 or full == 0)

    def _split(self, rows: np.ndarray) -> list[np.ndarray]:
        """Batches of ``batch_size`` rows; a last batch of one row joins the one before
        (BatchNorm cannot train on a single row)."""
        size = self.config.batch_size
        batches = [rows[i : i + size] for i in range(0, rows.size, size)]
        if len(batches) > 1 and batches[-1].size == 1:
            batches[-2] = np.concatenate(batches[-2:])
            batches.pop()
        return batches

    def _pseudo_batches(self, n_batches: int) -> list[tuple[np.ndarray, int, float] | None]:
        """Per batch of this epoch: ``(positions in the pseudo rows, frame seed, alpha)``, or
        None when the epoch's alpha is 0 (then nothing is drawn from the data generator)."""
        alpha = self.pseudo.weight(self.epoch + 1) if self.pseudo is not None else 0.0
        if self.pseudo is None or alpha <= 0 or self.pseudo.rows.size == 0:
            return [None] * n_batches
        parts = np.array_split(self.data_rng.permutation(self.pseudo.rows.size), n_batches)
        seeds = self.data_rng.integers(0, 2**63, size=n_batches).tolist()
        return [
            (part, seed, alpha) if part.size else None
            for part, seed in zip(parts, seeds, strict=True)
        ]

    def _read(
        self,
        ds: Dataset,
        decoder: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
        rows: np.ndarray,
        seed: int,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features of ``rows`` of ``ds`` on the device, and frame counts of a frame model."""
        config, device = self.config, self.device
        if not self.frame_level:
            return _to(ds.features(rows, self.groups), device), None
        frames, n_frames = gather_frames(
            ds, rows, self.groups, config.frame_sampling, config.max_frames,
            np.random.default_rng(seed), config.cosine_threshold, decoder is None,
        )  # fmt: skip
        x, lengths = _to(frames, device), _to(n_frames, device)
        if decoder is not None and x.dtype == torch.uint8:
            x = decoder(x, lengths)
        return x, lengths

    def _gather(
        self, rows: np.ndarray, seed: int, pseudo: tuple[np.ndarray, int, float] | None
    ) -> dict[str, Any]:
        """Read one batch from the store (runs in a loader thread); ``seed`` draws its frames;
        ``pseudo`` (see `_pseudo_batches`) appends pseudo-labeled rows."""
        device = self.device
        x, lengths = self._read(self.train, self.decoder, rows, seed)
        targets = np.asarray(self.labels[rows].toarray(), dtype=np.float32)
        teacher = None
        if self.teacher is not None:
            teacher = np.asarray(self.teacher[rows].toarray(), dtype=np.float32)
        weight = None
        if self.epoch_weight is not None:
            weight = np.asarray(self.epoch_weight[rows], dtype=np.float32)
        if pseudo is not None and self.pseudo is not None:
            positions, pseudo_seed, alpha = pseudo
            px, plengths = self._read(
                self.pseudo.dataset, self.pseudo_decoder, self.pseudo.rows[positions], pseudo_seed
            )
            x = _cat_rows(x, px)
            lengths = (
                None if lengths is None or plengths is None else torch.cat([lengths, plengths])
            )
            extra = np.asarray(self.pseudo.targets[positions].toarray(), dtype=np.float32)
            targets = np.concatenate([targets, extra])
            # A pseudo row's teacher is its own target: lam * D + (1 - lam) * D = D.
            teacher = None if teacher is None else np.concatenate([teacher, extra])
            # mean over the B + B' rows of these weights = mean(labeled) + alpha * mean(pseudo)
            total = rows.size + positions.size
            labeled = np.ones(rows.size, np.float32) if weight is None else weight
            weight = np.concatenate([
                labeled * np.float32(total / rows.size),
                np.full(positions.size, total * alpha / positions.size, dtype=np.float32),
            ])  # fmt: skip
        return {
            "x": x,
            "lengths": lengths,
            "targets": _to(targets, device),
            "teacher": None if teacher is None else _to(teacher, device),
            "weight": None if weight is None else _to(weight, device),
            "n": int(rows.size),
        }

    # ---- checkpoints

    def _best(self) -> EpochStats | None:
        scored = [s for s in self.history if s.metric is not None]
        return max(scored, key=lambda s: s.metric or 0.0) if scored else None

    def _settings(self) -> dict[str, Any]:
        """What the weights depend on besides the data: the training settings, and those of
        what was given: pseudo rows, labels replacing the store's, sample weights (each absent
        when not given, so earlier checkpoints stay valid)."""
        settings = self.config.results_settings()
        if self.pseudo is not None:
            settings["pseudo"] = self.pseudo.settings()
        return settings | self.given

    def _eval_state(self) -> dict[str, torch.Tensor]:
        """The weights evaluation uses: the EMA's when enabled."""
        state = self.ema.shadow if self.ema is not None else self.model.state_dict()
        return {k: v.detach().clone() for k, v in state.items()}

    def _checkpoint(self) -> None:
        state = {
            "config": self._settings(),
            "epoch": self.epoch,
            "step": self.step,
            "stopped_early": self.stopped_early,
            "history": [asdict(s) for s in self.history],
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "data_rng": self.data_rng.bit_generator.state,
            "mix_rng": self.mix_rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
        }
        _save_atomic(state, self.workdir / CHECKPOINT)

    def _resume(self) -> None:
        path = self.workdir / CHECKPOINT
        if not path.is_file():
            return
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except (OSError, RuntimeError, EOFError) as err:
            raise DataError(
                f"{path}: unreadable checkpoint ({err}); delete it to restart"
            ) from None
        if state["config"] != self._settings():
            raise ConfigError(
                f"{path} was written under other training settings; use a fresh workdir or "
                "delete the checkpoint"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.stopped_early = bool(state["stopped_early"])
        self.history = [EpochStats(**s) for s in state["history"]]
        self.data_rng.bit_generator.state = state["data_rng"]
        self.mix_rng.bit_generator.state = state["mix_rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu())

    def _finish(self) -> FitResult:
        best = self._best()
        if best is not None:
            self.model.load_state_dict(
                self.best_state
                if self.best_state is not None
                else torch.load(self.workdir / BEST, map_location=self.device, weights_only=True)
            )
        elif self.ema is not None:
            self.ema.copy_to(self.model)
        return FitResult(
            metric=self.metric,
            best_metric=best.metric if best is not None else None,
            best_epoch=best.epoch if best is not None else None,
            stopped_early=self.stopped_early,
            history=list(self.history),
            lr=self.lr,
            valid_rows=len(self.valid) if self.valid is not None else 0,
            out_of_time=self.out_of_time,
        )

    # ---- progress

    def _reporter(self) -> contextlib.AbstractContextManager[Callable[..., None]]:
        if self.quiet:
            return contextlib.nullcontext(lambda *args, **kwargs: None)
        return epoch_reporter(len(self.train), self.config.epochs, self.metric)
