"""Blends: fixed combinations of members' predictions, fitted on out-of-fold rows.

A blend is fitted on the members' out-of-fold (OOF) predictions against the training labels and
applied, with the same weights, to the members' test predictions. Every input is a list of
`TopK`, one per member, predicting the same rows; nothing of size n_samples x n_classes is built
(`OofScorer` aligns members on each row's candidates, at most sum k_m of them).

Methods (`fit_blend`):

``mean``
    Equal-weight mean of the members' scores (`mean_blend`, a class outside a member's top k
    counts 0).
``rank_mean``
    Mean of rank scores (`rank_scores`): a member's class at rank r (0 = best) of its k_m slots
    scores ``(k_m - r) / k_m``, so its best is 1 and an absent class 0. Blends members whose
    scores are not calibrated alike for per-row metrics (accuracy); rank scores are the same in
    every row, so GAP, which ranks all rows' predictions together, loses each row's confidence.
``weighted``
    Weighted mean, weights from a random search on OOF (`search_weights`), as the YouTube-8M
    1st-place solution weighted its members.
``greedy``
    Caruana et al. (2004) forward selection with replacement (`greedy_selection`): weights are
    how often each member was picked.
``vote``, ``vote_logits``
    Majority votes of the members' top-1 classes, multi-class only (`webly.ensemble.vote`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from webly.core import LabelsLike, Task, TopK, canonical_labels, select_top_k
from webly.ensemble.vote import require_multiclass, vote, vote_logits
from webly.errors import ConfigError, DataError
from webly.metrics.evaluate import task_metric
from webly.metrics.ranking import hit_mask
from webly.predictions import merge_topk, union_candidates

_ALIGNED_BYTES = 1 << 30  # OofScorer aligns members on their candidates up to this


# --------------------------------------------------------------------------- combining


def mean_blend(
    preds: Sequence[TopK], weights: Sequence[float] | None = None, k: int | None = None
) -> TopK:
    """Weighted mean of the members' scores: `webly.predictions.merge_topk`.

    Parameters
    ----------
    preds : sequence of TopK, each (n_samples, k_m)
    weights : (n_models,) float, optional
        Non-negative, not all 0; equal if None.
    k : int, optional
        Classes kept per row; the largest k_m if None.

    Returns
    -------
    TopK
        (n_samples, k), best first.
    """
    return merge_topk(preds, weights, k)


def rank_scores(pred: TopK) -> TopK:
    """Replace each score by its rank score ``(k - r) / k``, r = classes scored higher.

    Parameters
    ----------
    pred : TopK, (n_samples, k)
        Any order within a row; padding stays padding.

    Returns
    -------
    TopK
        (n_samples, k), the same classes in the same slots: the best class of a row scores 1,
        the k-th 1/k; tied scores share the better rank.
    """
    order = np.argsort(-pred.scores, axis=1, kind="stable")  # (n, k), padding (-inf) last
    ordered = np.take_along_axis(pred.scores, order, axis=1)
    new = np.ones(ordered.shape, dtype=bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    rank = np.maximum.accumulate(np.where(new, np.arange(pred.k), 0), axis=1)
    values = np.empty(ordered.shape, dtype=np.float32)
    np.put_along_axis(values, order, (pred.k - rank) / np.float32(pred.k), axis=1)
    return TopK(pred.indices, values)


def rank_mean_blend(
    preds: Sequence[TopK], weights: Sequence[float] | None = None, k: int | None = None
) -> TopK:
    """Weighted mean of the members' rank scores (`rank_scores`; absent classes count 0).

    Parameters and returns as `mean_blend`; the scores are mean rank scores in [0, 1].
    """
    return merge_topk([rank_scores(p) for p in preds], weights, k)


def _vote_blend(
    preds: Sequence[TopK], weights: Sequence[float] | None = None, k: int | None = None
) -> TopK:
    return vote(preds, k)


def _vote_logits_blend(
    preds: Sequence[TopK], weights: Sequence[float] | None = None, k: int | None = None
) -> TopK:
    return vote_logits(preds, k)


# --------------------------------------------------------------------------- scoring on OOF


@dataclass(frozen=True, eq=False)
class Running:
    """A running sum of members' scores, as `OofScorer.add` builds it.

    ``sums`` is an aligned (n, width) float32 sum with ``present`` (n, width) bool marking the
    candidates some added member lists, or a (n, k) TopK of the mean; ``total`` members added.
    """

    sums: np.ndarray | TopK | None = None
    present: np.ndarray | None = None
    total: int = 0


class OofScorer:
    """The task metric of weighted means of members' OOF predictions, evaluated many times.

    Parameters
    ----------
    preds : sequence of TopK, each (n_samples, k_m)
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    task : {"multilabel", "multiclass"}
        GAP@metric_k or accuracy.
    metric_k : int
        k of GAP@k.
    rows : int, optional
        Evaluate on this many rows drawn at random (with ``seed``); all rows if None.
    names : sequence of str, optional
        Member names for error messages.

    Notes
    -----
    GAP here ranks tied scores' misses before their hits: the lowest GAP over tie orders, where
    `webly.metrics.ranking.gap_at_k` replays the YouTube-8M starter code's order (0.5 s a call
    on 4,000 rows of blended float16 scores, which tie often); the two differ by at most the
    tie spread. Accuracy is `webly.metrics.ranking.hit_at_1`.

    The members are aligned on each row's candidates (`webly.predictions.union_candidates`):
    member m's scores become a (rows, width) float32 array, 0 where m does not list the
    candidate, so a blend is a weighted sum of arrays. When rows x width x (5 n_models + 4)
    bytes exceed 1 GiB (pass ``rows``) blends are `merge_topk` of the TopKs instead (about 0.6 s
    per 4,000 rows of 10 members x k=100), and a running sum (`add`) keeps each row's best max
    k_m classes, so a class dropped from it counts 0 for the members added before.
    """

    def __init__(
        self,
        preds: Sequence[TopK],
        labels: LabelsLike,
        task: Task,
        *,
        metric_k: int = 20,
        rows: int | None = None,
        seed: int = 0,
        names: Sequence[str] | None = None,
    ) -> None:
        task = Task.parse(task)
        if metric_k < 1:
            raise ConfigError(f"metric_k is {metric_k}; it must be >= 1")
        csr = check_members(preds, labels, names)
        n = csr.shape[0]
        if rows is not None and rows < 1:
            raise ConfigError(f"rows is {rows}; pass a row count >= 1, or None for all rows")
        if rows is not None and rows < n:
            picked = np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
            preds = [TopK(p.indices[picked], p.scores[picked]) for p in preds]
            csr = csr[picked]
        self.task = task
        self.metric_k = metric_k
        self.labels = csr
        self.n_models = len(preds)
        self._preds = list(preds)
        self._width = max(p.k for p in preds)
        self._candidates = union_candidates(preds)  # (n, width) ascending, -1 at the end
        self.aligned = self._candidates.size * (5 * len(preds) + 4) <= _ALIGNED_BYTES
        if self.aligned:
            self._sums, self._present = self._align(csr.shape[1])
        else:
            del self._candidates

    def _align(self, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(n_models, n, width) float32 scores and bool presence on the candidates' columns.

        Row r's candidate c gets the key ``r * (n_classes + 1) + c`` (padding: n_classes), so
        the keys ascend over the whole flattened array and one searchsorted finds each score's
        slot.
        """
        n, width = self._candidates.shape
        offsets = np.arange(n, dtype=np.int64)[:, None] * (n_classes + 1)
        keys = (np.where(self._candidates >= 0, self._candidates, n_classes) + offsets).ravel()
        sums = np.zeros((self.n_models, n * width), dtype=np.float32)
        present = np.zeros((self.n_models, n * width), dtype=bool)
        for m, p in enumerate(self._preds):
            listed = p.indices >= 0
            slots = np.searchsorted(keys, (p.indices + offsets)[listed])
            sums[m, slots] = p.scores[listed]
            present[m, slots] = True
        return sums.reshape(self.n_models, n, width), present.reshape(self.n_models, n, width)

    def weighted(self, weights: Sequence[float] | np.ndarray) -> float:
        """Metric of the weighted mean with ``weights`` (n_models,), >= 0, not all 0."""
        w = check_weights(weights, self.n_models)
        if not self.aligned:
            return self._metric(merge_topk(self._preds, w.tolist(), k=self.metric_k))
        sums = np.tensordot((w / w.sum()).astype(np.float32), self._sums, axes=1)
        return self._metric_aligned(sums, np.any(self._present[w > 0], axis=0))

    def add(self, state: Running, m: int) -> Running:
        """``state`` with member ``m`` added once more (``state`` is left as it was)."""
        if self.aligned:
            if state.total == 0:
                return Running(self._sums[m], self._present[m], 1)
            assert isinstance(state.sums, np.ndarray) and state.present is not None
            return Running(
                state.sums + self._sums[m], state.present | self._present[m], state.total + 1
            )
        if state.total == 0:
            return Running(merge_topk([self._preds[m]], k=self._width), None, 1)
        assert isinstance(state.sums, TopK)
        both = merge_topk([state.sums, self._preds[m]], [state.total, 1], k=self._width)
        return Running(both, None, state.total + 1)

    def score(self, state: Running) -> float:
        """Metric of the running mean (0.0 for an empty one)."""
        if state.total == 0:
            return 0.0
        if isinstance(state.sums, TopK):
            return self._metric(state.sums)
        assert state.sums is not None and state.present is not None
        return self._metric_aligned(state.sums, state.present)

    def _metric(self, topk: TopK) -> float:
        if not self.task.multilabel:
            return task_metric(topk, self.labels, self.task)
        indices, scores = select_top_k(topk, self.metric_k)
        valid = indices >= 0
        hits = hit_mask(indices, self.labels)[valid]
        ranked = hits[np.lexsort((hits, -scores[valid]))]  # best first, tied misses first
        ranks = np.flatnonzero(ranked) + 1
        return float(np.sum(np.arange(1, ranks.size + 1) / ranks)) / max(self.labels.nnz, 1)

    def _metric_aligned(self, sums: np.ndarray, present: np.ndarray) -> float:
        """Metric of (n, width) aligned sums, candidates no added member lists left out."""
        top = TopK.from_dense(np.where(present, sums, -np.inf), self.metric_k)
        classes = np.take_along_axis(self._candidates, top.indices, axis=1)
        return self._metric(TopK(np.where(np.isneginf(top.scores), -1, classes), top.scores))


def check_members(
    preds: Sequence[TopK], labels: LabelsLike, names: Sequence[str] | None = None
) -> sp.csr_matrix:
    """Check members and labels line up; return the labels as canonical 0/1 CSR.

    Raises `DataError` when members predict different row counts, the labels have another row
    count, or a member predicts a class the labels do not have.
    """
    if not preds:
        raise ConfigError("no members given; a blend needs at least one member's predictions")
    tags = list(names) if names is not None else [f"#{m}" for m in range(len(preds))]
    if len(tags) != len(preds):
        raise ConfigError(f"{len(tags)} names given for {len(preds)} members; pass one per member")
    rows = {tag: p.n_samples for tag, p in zip(tags, preds, strict=True)}
    if len(set(rows.values())) > 1:
        listing = ", ".join(f"{tag}: {n}" for tag, n in rows.items())
        raise DataError(
            f"members predict different row counts ({listing}); blend members of the same rows"
        )
    n = preds[0].n_samples
    shape = np.shape(labels) if sp.issparse(labels) else np.asarray(labels).shape
    if shape[0] != n:
        raise DataError(
            f"labels have {shape[0]} rows but the members predict {n}; pass the labels of the "
            "rows the members predicted (the training rows for OOF predictions)"
        )
    if len(shape) == 2:
        n_classes = int(shape[1])
    else:
        ids = np.asarray(labels)
        n_classes = 1 + max(int(a.max(initial=-1)) for a in [ids, *(p.indices for p in preds)])
    for tag, p in zip(tags, preds, strict=True):
        top = int(p.indices.max(initial=-1))
        if top >= n_classes:
            raise DataError(
                f"member {tag} predicts class {top} but the labels have {n_classes} classes; "
                "blend members trained on these labels' class space"
            )
    return canonical_labels(labels, n, n_classes)


def check_weights(weights: Sequence[float] | np.ndarray, n_models: int) -> np.ndarray:
    """(n_models,) float64 weights, each finite and >= 0, not all 0; else a ConfigError."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_models,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(
            f"weights {np.ravel(w).tolist()} given for {n_models} members; pass one finite "
            "weight >= 0 per member, not all 0"
        )
    return w


# --------------------------------------------------------------------------- fitting weights


@dataclass(frozen=True, eq=False)
class WeightSearch:
    """Member weights found on OOF predictions.

    Attributes
    ----------
    weights : (n_models,) float64
        Non-negative, summing to 1.
    metric : float
        OOF metric (GAP@k or accuracy) of the weighted mean, on the rows searched (GAP counts
        tied scores' misses first, see `OofScorer`).
    equal_metric : float
        OOF metric of the equal-weight mean on the same rows.
    """

    weights: np.ndarray
    metric: float
    equal_metric: float


@dataclass(frozen=True, eq=False)
class GreedySelection(WeightSearch):
    """`WeightSearch` of Caruana selection; ``picks`` are the members added, in order."""

    picks: tuple[int, ...] = field(default=())


def search_weights(
    oof: Sequence[TopK],
    labels: LabelsLike,
    task: Task,
    *,
    n_trials: int = 200,
    seed: int = 0,
    rows: int | None = None,
    metric_k: int = 20,
) -> WeightSearch:
    """Random search of member weights maximising the OOF metric of the weighted mean.

    Evaluates equal weights, each member alone, and ``n_trials`` random weight vectors: the
    first half Dirichlet(1) weights over a random subset of the members (subset size uniform in
    1..n_models), the second half Dirichlet draws around the best so far (concentration 100,
    so each weight moves by about ``sqrt(w (1 - w) / 100)``). Keeps the best.

    Parameters
    ----------
    oof : sequence of TopK, each (n_samples, k_m)
        Members' out-of-fold predictions.
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    task : {"multilabel", "multiclass"}
    n_trials : int
        Random weight vectors drawn (>= 0).
    seed : int
        Seeds the draws and the row sample.
    rows : int, optional
        Search on this many random rows (faster); all rows if None.
    metric_k : int
        k of GAP@k.

    Returns
    -------
    WeightSearch
    """
    if n_trials < 0:
        raise ConfigError(f"n_trials is {n_trials}; pass a count >= 0")
    scorer = OofScorer(oof, labels, task, metric_k=metric_k, rows=rows, seed=seed)
    n_models = scorer.n_models
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    equal = np.full(n_models, 1 / n_models)
    best, best_metric = equal, scorer.weighted(equal)
    equal_metric = best_metric
    for m in range(n_models):
        candidate = np.eye(n_models)[m]
        metric = scorer.weighted(candidate)
        if metric > best_metric:
            best, best_metric = candidate, metric
    for trial in range(n_trials):
        if trial < n_trials // 2:
            chosen = rng.choice(n_models, size=rng.integers(1, n_models + 1), replace=False)
            candidate = np.zeros(n_models)
            candidate[chosen] = rng.dirichlet(np.ones(chosen.size))
        else:
            candidate = rng.dirichlet(100 * best + 0.01)
        metric = scorer.weighted(candidate)
        if metric > best_metric:
            best, best_metric = candidate, metric
    return WeightSearch(_frozen(best / best.sum()), best_metric, equal_metric)


def greedy_selection(
    oof: Sequence[TopK],
    labels: LabelsLike,
    task: Task,
    *,
    max_steps: int = 50,
    init_best: int = 1,
    patience: int = 5,
    metric_k: int = 20,
    rows: int | None = None,
    seed: int = 0,
) -> GreedySelection:
    """Caruana et al. (2004) ensemble selection: forward selection with replacement.

    Starts from the ``init_best`` members with the best OOF metric alone (each once); each step
    adds the member (possibly one already in) whose addition gives the running equal-weight mean
    the best OOF metric. Stops after ``max_steps`` additions, or ``patience`` additions in a row
    that did not beat the best ensemble so far, and returns that best ensemble.

    Parameters
    ----------
    oof : sequence of TopK, each (n_samples, k_m)
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    task : {"multilabel", "multiclass"}
    max_steps : int
        Additions after the initial members (>= 0).
    init_best : int
        Members to start from, 1..n_models.
    patience : int
        Additions without improvement before stopping (>= 1).
    metric_k : int
        k of GAP@k.
    rows, seed : int, optional
        Select on this many random rows drawn with ``seed``; all rows if None.

    Returns
    -------
    GreedySelection
        ``weights`` = how often each member was picked / picks; ``picks`` in order.
    """
    scorer = OofScorer(oof, labels, task, metric_k=metric_k, rows=rows, seed=seed)
    n_models = scorer.n_models
    if not 1 <= init_best <= n_models or max_steps < 0 or patience < 1:
        raise ConfigError(
            f"init_best={init_best}, max_steps={max_steps}, patience={patience}; pass "
            f"1 <= init_best <= {n_models} members, max_steps >= 0 and patience >= 1"
        )
    alone = [scorer.add(Running(), m) for m in range(n_models)]
    ranked = np.argsort([-scorer.score(s) for s in alone], kind="stable")
    state, picks = alone[ranked[0]], [int(ranked[0])]
    for m in ranked[1:init_best]:
        state = scorer.add(state, int(m))
        picks.append(int(m))
    best_metric, best_size, stale = scorer.score(state), len(picks), 0
    for _ in range(max_steps):
        step_metric, step_state, step_pick = -np.inf, state, -1
        for m in range(n_models):
            candidate = scorer.add(state, m)
            metric = scorer.score(candidate)
            if metric > step_metric:
                step_metric, step_state, step_pick = metric, candidate, m
        state = step_state
        picks.append(step_pick)
        if step_metric > best_metric:
            best_metric, best_size, stale = step_metric, len(picks), 0
        else:
            stale += 1
            if stale >= patience:
                break
    chosen = tuple(picks[:best_size])
    counts = np.bincount(chosen, minlength=n_models).astype(np.float64)
    equal_metric = scorer.weighted(np.ones(n_models))
    return GreedySelection(_frozen(counts / counts.sum()), best_metric, equal_metric, chosen)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


# --------------------------------------------------------------------------- the fitted blend


_Apply = Callable[[Sequence[TopK], Sequence[float] | None, int | None], TopK]


@dataclass(frozen=True)
class _Method:
    """How a method blends and how it fits weights: ``search`` (whose keyword-only parameters
    are the method's options) returns a `WeightSearch`; None means equal weights."""

    apply: _Apply
    search: Callable[..., WeightSearch] | None = None
    multiclass_only: bool = False

    def option_names(self) -> list[str]:
        if self.search is None:
            return []
        params = inspect.signature(self.search).parameters.values()
        return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


_METHODS: dict[str, _Method] = {
    "mean": _Method(mean_blend),
    "rank_mean": _Method(rank_mean_blend),
    "weighted": _Method(mean_blend, search_weights),
    "greedy": _Method(mean_blend, greedy_selection),
    "vote": _Method(_vote_blend, multiclass_only=True),
    "vote_logits": _Method(_vote_logits_blend, multiclass_only=True),
}
METHODS = tuple(_METHODS)


def _method(name: str) -> _Method:
    if name not in _METHODS:
        raise ConfigError(f"unknown blend method {name!r}; known: {', '.join(METHODS)}")
    return _METHODS[name]


@dataclass(frozen=True)
class Blend:
    """A fitted blend: how to combine the named members' predictions.

    Attributes
    ----------
    method : str
        One of `METHODS`.
    names : tuple of str
        Member ids, in the order `apply` takes their predictions.
    weights : tuple of float
        One per member, >= 0, relative (`apply` divides by their sum); `fit_blend`'s sum to 1,
        and are equal for the methods that fit no weights.
    oof_metric : float, optional
        The blend's metric on the OOF rows it was fitted on (`fit_blend` sets it).
    """

    method: str
    names: tuple[str, ...]
    weights: tuple[float, ...]
    oof_metric: float | None = None

    def __post_init__(self) -> None:
        method = _method(self.method)
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if len(set(self.names)) != len(self.names) or not self.names:
            raise ConfigError(f"blend members {list(self.names)}; pass distinct member names")
        w = check_weights(self.weights, len(self.names))
        if method.search is None and not np.allclose(w, w[0]):
            raise ConfigError(
                f"blend method {self.method!r} takes equal weights, got {w.tolist()}; use "
                "'weighted' for a weighted mean"
            )
        object.__setattr__(self, "weights", tuple(float(x) for x in w))

    def apply(self, preds: Sequence[TopK], k: int | None = None) -> TopK:
        """Blend ``preds``, one (n_samples, k_m) TopK per member in `names` order.

        Returns the (n_samples, k) blended TopK, k the largest k_m if None.
        """
        if len(preds) != len(self.names):
            raise ConfigError(
                f"{len(preds)} predictions given to a blend of {len(self.names)} members "
                f"({', '.join(self.names)}); pass one per member, in that order"
            )
        return _method(self.method).apply(preds, self.weights, k)

    def to_json(self) -> dict[str, Any]:
        """A plain dict (JSON-serialisable) that `from_json` reads back."""
        return {
            "method": self.method,
            "names": list(self.names),
            "weights": list(self.weights),
            "oof_metric": self.oof_metric,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Blend:
        """The blend `to_json` wrote."""
        keys = {"method", "names", "weights", "oof_metric"}
        if not isinstance(obj, Mapping) or set(obj) != keys:
            got = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
            raise ConfigError(f"a blend is a dict with keys {sorted(keys)}, got {got}")
        metric = obj["oof_metric"]
        return cls(
            obj["method"],
            tuple(obj["names"]),
            tuple(obj["weights"]),
            None if metric is None else float(metric),
        )


def fit_blend(
    method: str,
    oof: Sequence[TopK],
    labels: LabelsLike,
    task: Task,
    names: Sequence[str],
    *,
    metric_k: int = 20,
    **options: Any,
) -> Blend:
    """Fit a blend of the members' OOF predictions against the training labels.

    Parameters
    ----------
    method : str
        One of `METHODS` (see the module docstring).
    oof : sequence of TopK, each (n_samples, k_m)
        Members' out-of-fold predictions, in ``names`` order.
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    task : {"multilabel", "multiclass"}
    names : sequence of str
        Member ids.
    metric_k : int
        k of GAP@k, for fitting and for the blend's ``oof_metric``.
    **options
        Options of the method's fitting function: `search_weights` for ``weighted``,
        `greedy_selection` for ``greedy``; the other methods take none.

    Returns
    -------
    Blend
        With ``oof_metric`` the blend's metric on all OOF rows.
    """
    entry = _method(method)
    task = Task.parse(task)
    if entry.multiclass_only:
        require_multiclass(task, method)
    csr = check_members(oof, labels, names)
    allowed = [name for name in entry.option_names() if name != "metric_k"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"blend method {method!r} takes options {allowed or 'none'}, got {unknown}; drop them"
        )
    if entry.search is None:
        weights = np.full(len(oof), 1 / len(oof))
    else:
        weights = entry.search(oof, csr, task, metric_k=metric_k, **options).weights
    fitted = Blend(method, tuple(names), tuple(weights))
    metric = task_metric(fitted.apply(oof), csr, task, k=metric_k)
    return Blend(method, fitted.names, fitted.weights, metric)
