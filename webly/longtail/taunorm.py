"""tau-normalization of the final classifier (Kang et al. 2020, "Decoupling representation and
classifier for long-tailed recognition"; AliProducts: tau 0.5-0.7 chosen on validation).

A classifier trained on long-tailed data grows larger weight norms for head classes, so its
decision boundaries favour them. Dividing each class's weight row by its norm to the power tau,
``w_c / ||w_c|| ** tau``, evens the norms out: tau = 0 leaves the weights alone, tau = 1 makes
every row a unit vector. Kang et al. compute the normalised logits as ``x @ w.T`` without a
bias (their notebook's dot-product classifier), so by default the bias is set to zero too: a
bias trained on long-tailed data encodes the class prior, the same head preference. ``bias=
"keep"`` keeps it instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from webly.core import GAP_K, LabelsLike, Task, TopK, canonical_labels
from webly.data.store import Dataset
from webly.errors import ConfigError, DataError
from webly.longtail.bands import BandReport, band_report
from webly.longtail.classifier import linear_classifier, network_groups
from webly.metrics.classification import mean_class_error
from webly.metrics.ranking import gap_at_k, hit_at_1
from webly.train.loop import iter_scores

Bias = Literal["zero", "keep"]
SweepMetric = Literal["auto", "gap@20", "accuracy", "mean_class_error"]
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

DEFAULT_TAUS = tuple(float(t) for t in np.round(np.linspace(0.0, 2.0, 11), 6))
_CHUNK = 4096  # rows scored at a time in a sweep


def tau_normalize(weight: ArrayT, tau: float) -> ArrayT:
    """``w_c / ||w_c|| ** tau`` for each class row ``w_c`` of a classifier weight.

    Parameters
    ----------
    weight : (n_classes, width) float ndarray or tensor
    tau : float >= 0
        0 returns the weights unchanged, 1 unit rows. A row of zeros stays zeros.

    Returns
    -------
    (n_classes, width), the type and dtype of ``weight``; a new array, ``weight`` is untouched
    """
    if not (np.isfinite(tau) and tau >= 0):
        raise ConfigError(f"tau is {tau}; use a finite value >= 0 (0 = unchanged, 1 = unit rows)")
    if weight.ndim != 2 or not (
        weight.is_floating_point() if isinstance(weight, torch.Tensor) else weight.dtype.kind == "f"
    ):
        raise DataError(
            f"classifier weight has shape {tuple(weight.shape)} and dtype {weight.dtype}; "
            "pass a float (n_classes, width) matrix"
        )
    if isinstance(weight, torch.Tensor):
        norms = torch.linalg.vector_norm(weight, dim=1, keepdim=True)  # (C, 1)
        tiny = torch.finfo(weight.dtype).tiny
        return weight / norms.clamp_min(tiny).pow(tau)
    norms_np = np.linalg.norm(weight, axis=1, keepdims=True)  # (C, 1)
    tiny_np = np.finfo(weight.dtype).tiny
    return (weight / (np.maximum(norms_np, tiny_np) ** tau).astype(weight.dtype)).astype(
        weight.dtype, copy=False
    )


def apply_tau(network: nn.Module, tau: float, bias: Bias = "zero") -> None:
    """tau-normalize ``network.classifier`` in place (bias zeroed, or kept with "keep")."""
    _check_bias(bias)
    classifier = linear_classifier(network)
    with torch.no_grad():
        classifier.weight.copy_(tau_normalize(classifier.weight.detach(), tau))
        if bias == "zero" and classifier.bias is not None:
            classifier.bias.zero_()


@dataclass(frozen=True)
class TauRow:
    """One line of a sweep: ``tau`` (None: the classifier as trained), the validation metric
    and the per-band figures."""

    tau: float | None
    metric: float
    bands: BandReport


@dataclass(frozen=True)
class TauSweep:
    """The validation table of a tau sweep.

    Attributes
    ----------
    metric : ``"gap@20"``, ``"accuracy"`` or ``"mean_class_error"`` (the only lower-is-better)
    baseline : the classifier as trained (no normalisation, bias kept)
    rows : one per tau, in the order given
    best_tau : the tau with the best metric (the first of equals)
    bias : how the bias was treated in ``rows``
    """

    metric: str
    baseline: TauRow
    rows: tuple[TauRow, ...]
    best_tau: float
    bias: Bias

    @property
    def best(self) -> TauRow:
        """The row of ``best_tau``."""
        return next(row for row in self.rows if row.tau == self.best_tau)

    def format(self) -> str:
        """The table as text: tau, metric, then head / medium / tail."""
        band = self.baseline.bands.metric
        lines = [
            f"{'tau':>10}  {self.metric:>16}  {'head':>7}  {'medium':>7}  {'tail':>7}  ({band})"
        ]
        for row in (self.baseline, *self.rows):
            name = "as trained" if row.tau is None else f"{row.tau:g}"
            mark = " *" if row.tau == self.best_tau else ""
            values = "  ".join(f"{row.bands.values[b]:7.4f}" for b in ("head", "medium", "tail"))
            lines.append(f"{name:>10}  {row.metric:16.4f}  {values}{mark}")
        return "\n".join(lines)


def tau_sweep(
    network: nn.Module,
    valid: Dataset,
    train_labels: LabelsLike,
    *,
    taus: Sequence[float] | np.ndarray = DEFAULT_TAUS,
    metric: SweepMetric = "auto",
    bias: Bias = "zero",
    groups: Sequence[str] | None = None,
    head: int = 100,
    tail: int = 20,
    batch_size: int = 1024,
) -> TauSweep:
    """Score tau-normalized copies of the classifier on ``valid`` and pick the best tau.

    The network runs over ``valid`` once, in eval mode, to collect the classifier's inputs
    ``(n_valid, width)`` (kept in memory); each tau then only re-scores them with the
    normalised weights. Every figure is computed from each row's 20 most probable classes
    (GAP@20 as YouTube-8M scores it; per-band average precision over those lists). ``network``
    itself is not changed (its weights, nor its train / eval mode): `apply_tau` the chosen tau.

    Parameters
    ----------
    network : a `webly.models.Network` whose ``classifier`` is an ``nn.Linear``
    valid : validation store with the network's classes
    train_labels : (n_train, n_classes) 0/1 or (n_train,) ids
        Training labels; their class counts define the head / medium / tail bands.
    taus : floats >= 0, default 0, 0.2, ..., 2
    metric : {"auto", "gap@20", "accuracy", "mean_class_error"}
        What picks tau; ``"auto"`` is GAP@20 for multi-label data and mean class error for
        multi-class (the long-tail measure; it equals 1 - accuracy on a class-balanced
        validation set, AliProducts').
    bias : {"zero", "keep"}
        Whether the normalised classifiers keep the trained bias (see the module notes).
    groups : feature groups to feed; default the network's ``input_dims``, in order
    head, tail : band thresholds of `webly.metrics.classification.frequency_bands`
    batch_size : validation rows per forward pass

    Returns
    -------
    TauSweep
    """
    _check_bias(bias)
    metric_name = resolve_metric(metric, valid.task)
    tau_values = _check_taus(taus)
    _check_classes(network, valid.n_classes)
    train = canonical_labels(train_labels, n_classes=valid.n_classes)
    tops = _candidate_tops(network, valid, tau_values, bias, groups, batch_size)
    return _table(tops, valid.labels, train, valid.task, metric_name, tau_values, bias, head, tail)


def tau_sweep_folds(
    networks: Sequence[nn.Module],
    train: Dataset,
    folds: np.ndarray,
    *,
    taus: Sequence[float] | np.ndarray = DEFAULT_TAUS,
    metric: SweepMetric = "auto",
    bias: Bias = "zero",
    groups: Sequence[str] | None = None,
    head: int = 100,
    tail: int = 20,
    batch_size: int = 1024,
) -> TauSweep:
    """`tau_sweep` out of fold: each fold model scores only the rows it was not trained on.

    ``networks[f]`` (e.g. the fold models of `webly.train.oof.fit_oof`) scores the rows of
    ``train`` in fold ``f``; the rows' top lists are pooled, so every figure is over all of
    ``train``'s rows, each predicted by the one network that did not see it, against
    ``train.labels``, whose class counts also define the bands. No network is changed.

    Parameters
    ----------
    networks : one `webly.models.Network` with an ``nn.Linear`` classifier per fold
    train : the store the fold models were trained on, out of fold
    folds : (n_samples,) int fold of every row of ``train``, in ``0..len(networks) - 1``
    taus, metric, bias, groups, head, tail, batch_size : as for `tau_sweep`

    Returns
    -------
    TauSweep
        Its rows' top lists take ``(len(taus) + 1) * n_samples * 20 * 8`` bytes while it runs.
    """
    _check_bias(bias)
    metric_name = resolve_metric(metric, train.task)
    tau_values = _check_taus(taus)
    folds = np.asarray(folds)
    if (
        not networks
        or folds.shape != (len(train),)
        or folds.dtype.kind not in "iu"
        or (folds.size and (folds.min() < 0 or folds.max() >= len(networks)))
    ):
        raise DataError(
            f"folds of shape {folds.shape}, dtype {folds.dtype} do not give each of the "
            f"{len(train)} rows one of the {len(networks)} fold models; pass the folds the "
            "models were trained with"
        )
    k = min(GAP_K, train.n_classes)
    indices = np.zeros((tau_values.size + 1, len(train), k), dtype=np.int32)
    scores = np.zeros((tau_values.size + 1, len(train), k), dtype=np.float32)
    for fold, network in enumerate(networks):
        _check_classes(network, train.n_classes)
        rows = np.flatnonzero(folds == fold)
        if rows.size == 0:
            continue
        held_out = train.subset(rows)
        for i, top in enumerate(
            _candidate_tops(network, held_out, tau_values, bias, groups, batch_size)
        ):
            indices[i, rows], scores[i, rows] = top.indices, top.scores
    tops = [TopK(indices[i], scores[i]) for i in range(tau_values.size + 1)]
    labels = train.labels
    return _table(tops, labels, labels, train.task, metric_name, tau_values, bias, head, tail)


def score_network(
    network: nn.Module,
    ds: Dataset,
    metric: str = "auto",
    groups: Sequence[str] | None = None,
    batch_size: int = 1024,
) -> float:
    """The sweep's ``metric`` (see `tau_sweep`) of ``network`` as it is, on ``ds``: e.g. to
    compare a re-trained classifier with the trained one on held-out rows."""
    _check_classes(network, ds.n_classes)
    (top,) = _candidate_tops(network, ds, np.zeros(0), "keep", groups, batch_size)
    return _score(top, ds.labels, resolve_metric(metric, ds.task))


def resolve_metric(metric: str, task: Task) -> str:
    """The metric ``metric`` stands for on ``task`` data: ``"auto"`` is ``"gap@20"``
    (multi-label) or ``"mean_class_error"`` (multi-class); the others are themselves."""
    if metric == "auto":
        chosen = Task.parse(task)
        return chosen.metric().key if chosen.multilabel else "mean_class_error"
    if metric not in ("gap@20", "accuracy", "mean_class_error"):
        raise ConfigError(
            f"tau sweep metric is {metric!r}; use auto, gap@20, accuracy or mean_class_error"
        )
    return metric


def lower_is_better(metric: str) -> bool:
    """Whether a smaller ``metric`` (a `resolve_metric` name) is better: mean class error."""
    return metric == "mean_class_error"


# --------------------------------------------------------------------------- internals


def _check_bias(bias: str) -> None:
    if bias not in ("zero", "keep"):
        raise ConfigError(f"tau-norm bias is {bias!r}; use 'zero' (Kang et al.) or 'keep'")


def _check_taus(taus: Sequence[float] | np.ndarray) -> np.ndarray:
    tau_values = np.asarray(taus, dtype=np.float64).ravel()
    if tau_values.size == 0 or not np.all(np.isfinite(tau_values)) or np.any(tau_values < 0):
        raise ConfigError(f"taus are {tau_values.tolist()}; pass one or more finite values >= 0")
    return tau_values


def _check_classes(network: nn.Module, n_classes: int) -> None:
    classifier = linear_classifier(network)
    if classifier.out_features != n_classes:
        raise DataError(
            f"the classifier predicts {classifier.out_features} classes, the validation data has "
            f"{n_classes}; use the network trained on this dataset"
        )


def _candidate_tops(
    network: nn.Module,
    ds: Dataset,
    taus: np.ndarray,
    bias: Bias,
    groups: Sequence[str] | None,
    batch_size: int,
) -> list[TopK]:
    """Each row's `GAP_K` most probable classes over ``ds`` under the classifier as trained,
    then under each of ``taus`` (one forward pass over ``ds``)."""
    classifier = linear_classifier(network)
    inputs = _classifier_inputs(network, ds, network_groups(network, groups), batch_size)
    weight = classifier.weight.detach().float().cpu()  # (C, width)
    trained_bias = (
        classifier.bias.detach().float().cpu()
        if classifier.bias is not None
        else torch.zeros(weight.shape[0])
    )  # (C,)
    tops = [_top_k(inputs, weight, trained_bias, ds.task)]
    for tau in taus:
        b = trained_bias if bias == "keep" else torch.zeros_like(trained_bias)
        tops.append(_top_k(inputs, tau_normalize(weight, float(tau)), b, ds.task))
    return tops


def _table(
    tops: list[TopK],
    labels: sp.csr_matrix,
    train: sp.csr_matrix,
    task: Task,
    metric: str,
    taus: np.ndarray,
    bias: Bias,
    head: int,
    tail: int,
) -> TauSweep:
    """The `TauSweep` of ``tops`` (as trained, then one per tau) scored against ``labels``."""

    def row(tau: float | None, top: TopK) -> TauRow:
        return TauRow(
            tau=tau,
            metric=_score(top, labels, metric),
            bands=band_report(top, labels, train, task=task, head=head, tail=tail),
        )

    baseline = row(None, tops[0])
    rows = tuple(row(float(t), top) for t, top in zip(taus, tops[1:], strict=True))
    sign = -1.0 if lower_is_better(metric) else 1.0
    best = max(range(len(rows)), key=lambda i: (sign * rows[i].metric, -i))
    return TauSweep(
        metric=metric, baseline=baseline, rows=rows, best_tau=float(taus[best]), bias=bias
    )


def _classifier_inputs(
    network: nn.Module, ds: Dataset, groups: tuple[str, ...], batch_size: int
) -> torch.Tensor:
    """``(n_samples, width)`` float32 CPU inputs of the classifier over ``ds``, in row order."""
    captured: list[torch.Tensor] = []

    def keep(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured.append(args[0].detach().float().cpu())

    modes = [(m, m.training) for m in network.modules()]
    handle = linear_classifier(network).register_forward_pre_hook(keep)
    try:
        for _ in iter_scores(network, ds, groups, batch_size):
            pass
    finally:
        handle.remove()
        for module, mode in modes:
            module.training = mode
    width = linear_classifier(network).in_features
    return torch.cat(captured) if captured else torch.zeros(0, width)


def _top_k(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, task: Task) -> TopK:
    """Each row's ``GAP_K`` most probable classes under ``inputs @ weight.T + bias``."""
    k = min(GAP_K, weight.shape[0])
    indices, values = [], []
    for start in range(0, inputs.shape[0], _CHUNK):
        logits = torch.addmm(bias, inputs[start : start + _CHUNK], weight.T)  # (B, C)
        probs = logits.sigmoid() if task.multilabel else logits.softmax(dim=1)
        top = probs.topk(k, dim=1)
        indices.append(top.indices.numpy())
        values.append(top.values.numpy())
    if not indices:
        return TopK(np.zeros((0, k), np.int32), np.zeros((0, k), np.float32))
    return TopK(np.concatenate(indices), np.concatenate(values))


def _score(top: TopK, labels: sp.csr_matrix, metric: str) -> float:
    if metric == "gap@20":
        return gap_at_k(top, labels, k=GAP_K)
    if metric == "accuracy":
        return hit_at_1(top, labels)
    return mean_class_error(top, labels)
