"""Ensembles under a budget: the subset of members whose mean blend scores best on OOF and
whose total size (and serving cost) fits, with the Pareto frontier of size, cost and metric.

The YouTube-8M 2018 challenge capped the model at 1 GB; its winners chose which members to keep
by their OOF gain per byte. With at most `EXACT_MAX_MODELS` members every subset is scored (2^n
- 1 mean blends, each one running sum away from a smaller subset); with more, greedy forward
selection adds, while one fits, the member with the best metric gain per unit of budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from webly.core import LabelsLike, Task, TopK
from webly.ensemble.blend import Blend, OofScorer, Running
from webly.errors import ConfigError
from webly.sizes import format_size, parse_size

EXACT_MAX_MODELS = 12
SEARCHES = ("auto", "exact", "greedy")
_T = TypeVar("_T")


@dataclass(frozen=True)
class BudgetPoint:
    """A subset of members: total size in bytes, total cost, OOF metric of its mean blend."""

    size: int
    cost: float
    metric: float
    members: tuple[str, ...]


@dataclass(frozen=True)
class BudgetChoice:
    """The chosen subset, the Pareto frontier of the subsets scored, and how they were found.

    Attributes
    ----------
    chosen : BudgetPoint
        The best OOF metric among the subsets that fit (ties: the smaller, then the cheaper).
    frontier : tuple of BudgetPoint
        Subsets scored that no other beats or matches in size, cost and metric at once, by
        ascending size; some may exceed the budget.
    exact : bool
        True when every subset was scored, False for greedy selection.
    """

    chosen: BudgetPoint
    frontier: tuple[BudgetPoint, ...]
    exact: bool

    def blend(self) -> Blend:
        """The equal-weight mean `Blend` of the chosen members.

        Its ``oof_metric`` is left None: ``chosen.metric`` may be on a row sample and counts
        tied scores' misses first (`webly.ensemble.blend.OofScorer`).
        """
        n = len(self.chosen.members)
        return Blend("mean", self.chosen.members, (1 / n,) * n)


def select_under_budget(
    oof: Sequence[TopK],
    labels: LabelsLike,
    task: Task,
    names: Sequence[str],
    sizes_bytes: Sequence[int | str],
    costs: Sequence[float] | None = None,
    *,
    max_bytes: int | str | None = None,
    max_cost: float | None = None,
    metric_k: int = 20,
    search: str = "auto",
    rows: int | None = None,
    seed: int = 0,
) -> BudgetChoice:
    """The subset of members whose mean blend has the best OOF metric within the budgets.

    Parameters
    ----------
    oof : sequence of TopK, each (n_samples, k_m)
        Members' out-of-fold predictions, in ``names`` order.
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    task : {"multilabel", "multiclass"}
    names : sequence of str
        Member ids.
    sizes_bytes : sequence of int or size strings (`parse_size`)
        Each member's size, > 0 bytes.
    costs : sequence of float, optional
        Each member's serving cost (e.g. ms per batch), >= 0; every member costs 0 if None.
    max_bytes : int or size string, optional
        Budget on the summed size; none if None.
    max_cost : float, optional
        Budget on the summed cost (needs ``costs``); none if None.
    metric_k : int
        k of GAP@k.
    search : {"auto", "exact", "greedy"}
        ``auto`` scores every subset up to `EXACT_MAX_MODELS` members, else selects greedily:
        from no member, add the fitting member with the best metric gain per unit of budget
        (its share of ``max_bytes`` plus its share of ``max_cost``; of the total size with no
        budget) while one improves the metric.
    rows, seed : int, optional
        Score on this many random rows drawn with ``seed`` (faster); all rows if None.

    Returns
    -------
    BudgetChoice

    Raises
    ------
    ConfigError
        When a budget is below the smallest member, or no member fits both budgets.
    """
    if search not in SEARCHES:
        raise ConfigError(f"search is {search!r}; pass one of {', '.join(SEARCHES)}")
    scorer = OofScorer(oof, labels, task, metric_k=metric_k, rows=rows, seed=seed, names=names)
    n = scorer.n_models
    sizes = np.array([parse_size(s) for s in _per_member(sizes_bytes, n, "sizes_bytes")])
    if (sizes < 1).any():
        raise ConfigError(f"sizes_bytes {sizes.tolist()} hold a size < 1 byte; pass real sizes")
    cost = np.zeros(n) if costs is None else np.asarray(_per_member(costs, n, "costs"), float)
    if not np.isfinite(cost).all() or (cost < 0).any():
        raise ConfigError(f"costs {cost.tolist()} must be finite and >= 0")
    if max_cost is not None and costs is None:
        raise ConfigError(f"max_cost={max_cost} given without costs; pass each member's cost")
    byte_cap = None if max_bytes is None else parse_size(max_bytes)
    fits = _check_budgets(names, sizes, cost, byte_cap, max_cost)
    shares = [sizes / byte_cap] if byte_cap else []
    shares += [cost / max_cost] if max_cost else []
    price = np.maximum(sum(shares) if shares else sizes / sizes.sum(), 1e-12)
    exact = search == "exact" or (search == "auto" and n <= EXACT_MAX_MODELS)
    scored = _every_subset(scorer) if exact else _greedy(scorer, fits, price)
    points = [
        BudgetPoint(int(sizes[list(s)].sum()), float(cost[list(s)].sum()), metric, _named(names, s))
        for s, metric in scored
    ]
    fitting = [p for p, (s, _) in zip(points, scored, strict=True) if fits(s)]
    chosen = max(fitting, key=lambda p: (p.metric, -p.size, -p.cost))
    return BudgetChoice(chosen, pareto_frontier(points), exact)


def pareto_frontier(points: Sequence[BudgetPoint]) -> tuple[BudgetPoint, ...]:
    """The points no other point matches or beats in size, cost and metric with one strictly
    better (of equal points, the first), by ascending size then cost."""
    size = np.array([p.size for p in points], dtype=np.float64)
    cost = np.array([p.cost for p in points], dtype=np.float64)
    metric = np.array([p.metric for p in points], dtype=np.float64)
    kept = []
    for i, p in enumerate(points):
        weakly = (size <= p.size) & (cost <= p.cost) & (metric >= p.metric)
        strictly = (size < p.size) | (cost < p.cost) | (metric > p.metric)
        earlier_equal = weakly & ~strictly & (np.arange(len(points)) < i)
        if not (weakly & strictly).any() and not earlier_equal.any():
            kept.append(p)
    return tuple(sorted(kept, key=lambda p: (p.size, p.cost)))


def _per_member(values: Sequence[_T], n: int, what: str) -> list[_T]:
    listed = list(values)
    if len(listed) != n:
        raise ConfigError(f"{what} has {len(listed)} entries for {n} members; pass one per member")
    return listed


def _check_budgets(
    names: Sequence[str],
    sizes: np.ndarray,
    cost: np.ndarray,
    byte_cap: int | None,
    max_cost: float | None,
) -> _Fits:
    """Refuse budgets no member fits; return the test of whether a subset fits."""
    small = int(np.argmin(sizes))
    if byte_cap is not None and byte_cap < sizes[small]:
        raise ConfigError(
            f"max_bytes {byte_cap:,} ({format_size(byte_cap)}) is below the smallest member, "
            f"{names[small]} at {sizes[small]:,} bytes ({format_size(int(sizes[small]))}); "
            "raise the budget or add a smaller member"
        )
    cheap = int(np.argmin(cost))
    if max_cost is not None and max_cost < cost[cheap]:
        raise ConfigError(
            f"max_cost {max_cost:g} is below the cheapest member, {names[cheap]} at "
            f"{cost[cheap]:g}; raise the budget or add a cheaper member"
        )
    fits = _Fits(sizes, cost, byte_cap, max_cost)
    if not any(fits((m,)) for m in range(len(names))):
        raise ConfigError(
            f"no member fits both max_bytes {byte_cap:,} and max_cost {max_cost:g}; raise one"
        )
    return fits


@dataclass(frozen=True, eq=False)
class _Fits:
    sizes: np.ndarray
    cost: np.ndarray
    byte_cap: int | None
    max_cost: float | None

    def __call__(self, subset: Sequence[int]) -> bool:
        chosen = list(subset)
        return (self.byte_cap is None or self.sizes[chosen].sum() <= self.byte_cap) and (
            self.max_cost is None or self.cost[chosen].sum() <= self.max_cost * (1 + 1e-9)
        )


def _every_subset(scorer: OofScorer) -> list[tuple[tuple[int, ...], float]]:
    """Every non-empty subset with its metric, each a running sum one member from its parent."""
    scored = []
    stack: list[tuple[tuple[int, ...], Running]] = [((), Running())]
    while stack:
        subset, state = stack.pop()
        for m in range(subset[-1] + 1 if subset else 0, scorer.n_models):
            child = scorer.add(state, m)
            scored.append(((*subset, m), scorer.score(child)))
            stack.append(((*subset, m), child))
    return scored


def _greedy(
    scorer: OofScorer, fits: _Fits, price: np.ndarray
) -> list[tuple[tuple[int, ...], float]]:
    """Forward selection by metric gain per unit price; every subset scored on the way."""
    scored: list[tuple[tuple[int, ...], float]] = []
    subset: tuple[int, ...] = ()
    state, metric = Running(), 0.0
    while True:
        best_ratio, best = 0.0, None
        for m in sorted(set(range(scorer.n_models)) - set(subset)):
            if not fits((*subset, m)):
                continue
            child = scorer.add(state, m)
            child_metric = scorer.score(child)
            scored.append(((*subset, m), child_metric))
            ratio = (child_metric - metric) / price[m]
            if ratio > best_ratio:
                best_ratio, best = ratio, (m, child, child_metric)
        if best is None:
            return scored
        subset, state, metric = (*subset, best[0]), best[1], best[2]


def _named(names: Sequence[str], subset: Sequence[int]) -> tuple[str, ...]:
    return tuple(names[m] for m in subset)
