"""Budgets: the chosen subset is the best that fits (checked against every subset), the
frontier is Pareto, greedy selection fits too, and budgets no member fits are refused naming
the smallest member."""

from __future__ import annotations

from itertools import combinations

import pytest

from tests.ensemble.conftest import multilabel_members
from webly.ensemble.budget import BudgetPoint, pareto_frontier, select_under_budget
from webly.errors import ConfigError
from webly.metrics.ranking import gap_at_k
from webly.predictions import merge_topk

NAMES = ["big", "good", "fair", "noise"]
SIZES = [1000, 300, 100, 50]


def _subset_metrics(members: list, labels: object) -> dict[tuple[str, ...], float]:
    out = {}
    for size in range(1, len(members) + 1):
        for subset in combinations(range(len(members)), size):
            blend = merge_topk([members[m] for m in subset], k=20)
            out[tuple(NAMES[m] for m in subset)] = gap_at_k(blend, labels)
    return out


def test_picks_the_best_subset_that_fits() -> None:
    labels, members = multilabel_members([2.5, 1.5, 1.0, 0.0], seed=0)
    metrics = _subset_metrics(members, labels)
    for budget in (60, 160, 450, 2000):
        choice = select_under_budget(members, labels, "multilabel", NAMES, SIZES, max_bytes=budget)
        fitting = {
            s: m for s, m in metrics.items() if sum(SIZES[NAMES.index(n)] for n in s) <= budget
        }
        best = max(fitting, key=lambda s: fitting[s])
        assert choice.exact and choice.chosen.members == best
        assert choice.chosen.metric == pytest.approx(fitting[best], abs=1e-5)
        assert choice.chosen.size == sum(SIZES[NAMES.index(n)] for n in best) <= budget
        assert choice.chosen in choice.frontier
    # the frontier: no point is matched or beaten in both size and metric by another
    frontier = choice.frontier
    assert [p.size for p in frontier] == sorted(p.size for p in frontier)
    for p in frontier:
        assert not any(q.size <= p.size and q.metric >= p.metric for q in frontier if q != p)
    # and every subset is matched or beaten by a frontier point
    for subset, metric in metrics.items():
        size = sum(SIZES[NAMES.index(n)] for n in subset)
        assert any(p.size <= size and p.metric >= metric - 1e-5 for p in frontier)
    blend = choice.blend()
    assert blend.method == "mean" and blend.names == choice.chosen.members


def test_costs_and_greedy_search() -> None:
    labels, members = multilabel_members([2.5, 1.5, 1.0, 0.0], seed=0)
    costs = [5.0, 1.0, 1.0, 0.5]
    choice = select_under_budget(members, labels, "multilabel", NAMES, SIZES, costs, max_cost=2.0)
    assert choice.chosen.cost <= 2.0 and "big" not in choice.chosen.members
    greedy = select_under_budget(
        members, labels, "multilabel", NAMES, SIZES, costs, max_cost=2.0, search="greedy"
    )
    assert not greedy.exact and greedy.chosen.cost <= 2.0
    # greedy scores every single member that fits first, so it does no worse than the best
    alone = max(gap_at_k(merge_topk([members[m]], k=20), labels) for m in (1, 2, 3))
    assert greedy.chosen.metric >= alone - 1e-9
    sized = select_under_budget(
        members, labels, "multilabel", NAMES, ["1KB", "300B", "0.1 KB", 50], max_bytes="0.5KB"
    )
    assert sized.chosen.size <= 500


def test_budget_errors() -> None:
    labels, members = multilabel_members([1.0, 0.5, 0.3, 0.0], n=60, seed=1)
    below = r"max_bytes 40 \(40 B\) is below the smallest member, noise at 50 bytes"
    with pytest.raises(ConfigError, match=below):
        select_under_budget(members, labels, "multilabel", NAMES, SIZES, max_bytes=40)
    with pytest.raises(ConfigError, match=r"max_cost 0\.1 is below the cheapest member, noise"):
        select_under_budget(
            members, labels, "multilabel", NAMES, SIZES, [3, 2, 1, 0.5], max_cost=0.1
        )
    with pytest.raises(ConfigError, match="max_cost=1 given without costs"):
        select_under_budget(members, labels, "multilabel", NAMES, SIZES, max_cost=1)
    with pytest.raises(ConfigError, match="no member fits both"):
        select_under_budget(
            members, labels, "multilabel", NAMES, SIZES, [0.1, 1, 1, 1], max_bytes=500, max_cost=0.5
        )
    with pytest.raises(ConfigError, match="sizes_bytes has 3 entries for 4 members"):
        select_under_budget(members, labels, "multilabel", NAMES, SIZES[:3])
    with pytest.raises(ConfigError, match="search is 'beam'"):
        select_under_budget(members, labels, "multilabel", NAMES, SIZES, search="beam")


def test_pareto_frontier_keeps_one_of_equal_points() -> None:
    a = BudgetPoint(10, 1.0, 0.5, ("a",))
    same = BudgetPoint(10, 1.0, 0.5, ("b",))
    cheaper = BudgetPoint(10, 0.5, 0.4, ("c",))
    worse = BudgetPoint(20, 1.0, 0.5, ("a", "d"))
    assert pareto_frontier([a, same, cheaper, worse]) == (cheaper, a)
