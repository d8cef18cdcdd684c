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

from webly.data.store import Dataset
from webly.errors import ConfigError, DataError
from webly.longtail.bands import BandReport, band_report
from webly.longtail.classifier import linear_classifier, network_groups
from webly.longtail.labels import label_matrix
from webly.metrics.classification import mean_class_error
from webly.metrics.ranking import LabelsLike, TopK, gap_at_k, hit_at_1
from webly.train.loop import iter_scores

Bias = Literal["zero", "keep"]
SweepMetric = Literal["auto", "gap@20", "accuracy", "mean_class_error"]
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

DEFAULT_TAUS = tuple(float(t) for t in np.round(np.linspace(0.0, 2.0, 11), 6))
GAP_K = 20
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
    metric_name = _metric_name(metric, valid.task)
    tau_values = np.asarray(taus, dtype=np.float64).ravel()
    if tau_values.size == 0 or not np.all(np.isfinite(tau_values)) or np.any(tau_values < 0):
        raise ConfigError(f"taus are {tau_values.tolist()}; pass one or more finite values >= 0")
    classifier = linear_classifier(network)
    if classifier.out_features != valid.n_classes:
        raise DataError(
            f"the classifier predicts {classifier.out_features} classes, the validation data has "
            f"{valid.n_classes}; use the network trained on this dataset"
        )
    train = label_matrix(train_labels, valid.n_classes)
    inputs = _classifier_inputs(network, valid, network_groups(network, groups), batch_size)
    weight = classifier.weight.detach().float().cpu()  # (C, width)
    trained_bias = (
        classifier.bias.detach().float().cpu()
        if classifier.bias is not None
        else torch.zeros(weight.shape[0])
    )  # (C,)

    def row(tau: float | None) -> TauRow:
        w = weight if tau is None else tau_normalize(weight, tau)
        b = trained_bias if tau is None or bias == "keep" else torch.zeros_like(trained_bias)
        top = _top_k(inputs, w, b, valid.task)
        return TauRow(
            tau=tau,
            metric=_score(top, valid.labels, metric_name),
            bands=band_report(top, valid.labels, train, task=valid.task, head=head, tail=tail),
        )

    rows = tuple(row(float(t)) for t in tau_values)
    sign = -1.0 if metric_name == "mean_class_error" else 1.0
    best = max(range(len(rows)), key=lambda i: (sign * rows[i].metric, -i))
    return TauSweep(
        metric=metric_name,
        baseline=row(None),
        rows=rows,
        best_tau=float(tau_values[best]),
        bias=bias,
    )


# --------------------------------------------------------------------------- internals


def _check_bias(bias: str) -> None:
    if bias not in ("zero", "keep"):
        raise ConfigError(f"tau-norm bias is {bias!r}; use 'zero' (Kang et al.) or 'keep'")


def _metric_name(metric: str, task: str) -> str:
    if metric == "auto":
        return "gap@20" if task == "multilabel" else "mean_class_error"
    if metric not in ("gap@20", "accuracy", "mean_class_error"):
        raise ConfigError(
            f"tau sweep metric is {metric!r}; use auto, gap@20, accuracy or mean_class_error"
        )
    return metric


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


def _top_k(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, task: str) -> TopK:
    """Each row's ``GAP_K`` most probable classes under ``inputs @ weight.T + bias``."""
    k = min(GAP_K, weight.shape[0])
    indices, values = [], []
    for start in range(0, inputs.shape[0], _CHUNK):
        logits = torch.addmm(bias, inputs[start : start + _CHUNK], weight.T)  # (B, C)
        probs = logits.sigmoid() if task == "multilabel" else logits.softmax(dim=1)
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
