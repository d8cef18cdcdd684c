"""``choose_under_budget``: on a real run, the most accurate candidate within each budget, a
frontier that is Pareto, the compressed final network written (and scored as it is), an
ensemble choice written as choice.json, and the errors that write nothing."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from webly.compress import open_network
from webly.compress.budget import BudgetResult, choose_under_budget
from webly.data import Dataset
from webly.ensemble.tta import scores_topk
from webly.errors import ConfigError
from webly.metrics.evaluate import task_metric
from webly.train.loop import iter_scores


@pytest.fixture(scope="module")
def everything(tiny_run: Path) -> BudgetResult:
    """Every candidate of the run, all tensors compressible, under a budget they all fit."""
    return choose_under_budget(tiny_run, "1GB", min_elements=0)


def assert_pareto(result: BudgetResult) -> None:
    """The frontier: by ascending size, each more accurate than the last; no candidate is at
    least as small and as accurate as a frontier point with one strictly; every candidate off
    it is matched or beaten by a frontier point."""
    scored = {c.name: (c.size, float(c.metric)) for c in result.candidates if c.metric is not None}
    front = [scored[c.name] for c in result.frontier]
    assert front == sorted(front) and all(b[1] > a[1] for a, b in itertools.pairwise(front))
    for size, metric in front:
        assert not any(
            s <= size and m >= metric and (s < size or m > metric) for s, m in scored.values()
        )
    for size, metric in scored.values():
        assert any(s <= size and m >= metric for s, m in front)


@pytest.mark.slow
def test_candidates_and_frontier(everything: BudgetResult) -> None:
    names = [c.name for c in everything.candidates]
    assert names[:3] == [
        "final logistic fp32",
        "final logistic fp16",
        "final logistic int8_partial",
    ]
    assert "stacker" in names and "blend greedy" in names
    assert any(n.startswith(("member ", "mean ")) for n in names)
    fp32, fp16, int8 = everything.candidates[:3]
    assert int8.size < fp16.size < 0.6 * fp32.size
    assert abs(int8.metric - fp32.metric) < 0.01  # type: ignore[operator]
    stacker = next(c for c in everything.candidates if c.name == "stacker")
    assert set(stacker.members) == {"logistic", "mlp"} and stacker.size == sum(
        stacker.parts.values()
    )
    assert everything.scored_on == "test split, clean labels, 50 rows"
    assert everything.metric == "GAP@20" and everything.subsets_exact
    assert_pareto(everything)
    best = max(c.metric for c in everything.candidates if c.metric is not None)
    assert everything.chosen.metric == best and everything.chosen in everything.frontier


def test_each_budget_gets_the_best_that_fits(
    tiny_run: Path, everything: BudgetResult, tmp_path: Path
) -> None:
    int8 = everything.candidates[2]
    budget = int8.size + 100  # only the 8-bit final network fits
    result = choose_under_budget(tiny_run, budget, tmp_path / "out", min_elements=0)
    assert result.chosen.name == "final logistic int8_partial"
    assert_pareto(result)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "choice.json", "compression.json", "frontier.json", "model.json",
        "weights.quantized.safetensors",
    ]  # fmt: skip
    choice = json.loads((out / "choice.json").read_text())
    assert choice["method"] == "int8_partial" and choice["size"] == result.chosen.size
    frontier = json.loads((out / "frontier.json").read_text())
    assert frontier["chosen"] == result.chosen.name and frontier["max_bytes"] == budget
    assert [c["name"] for c in frontier["frontier"]] == [c.name for c in result.frontier]
    # its figure is the 8-bit network's own, on the test split's clean labels
    test = Dataset.open(tiny_run / "data" / "test")
    network = open_network(out)
    top = scores_topk(iter_scores(network, test, list(network.config["input_dims"])), 20)
    assert result.chosen.metric == pytest.approx(
        task_metric(top, test.clean_labels, "multilabel", 20), abs=1e-12
    )
    assert f"wrote the network to {out}" in str(result)
    assert f"--data {tiny_run / 'data' / 'train'}" in str(result)
    for budget in sorted({c.size for c in everything.frontier})[1:3]:
        fits = [c for c in everything.candidates if c.size <= budget and c.metric is not None]
        chosen = choose_under_budget(tiny_run, budget, min_elements=0).chosen
        assert chosen.size <= budget and chosen.metric == max(c.metric for c in fits)  # type: ignore[type-var]


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | changes))


def test_an_ensemble_choice_is_written_as_choice_json(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")  # as if the recipe had no distill.final
    manifest = json.loads((run / "distill" / "manifest.json").read_text())
    edit_json(run / "distill" / "manifest.json", outputs={}, key="not in the recipe")
    assert manifest["outputs"]["model"]
    result = choose_under_budget(run, "1GB", tmp_path / "out")
    assert result.chosen.kind in ("ensemble", "stacker")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["choice.json", "frontier.json"]
    choice = json.loads((tmp_path / "out" / "choice.json").read_text())
    assert choice["members"] and choice["size"] == sum(choice["parts"].values())
    if result.chosen.kind == "ensemble":
        assert len(choice["weights"]) == len(choice["members"])
        assert sum(choice["weights"]) == pytest.approx(1.0)
    assert "Exporting an ensemble to ONNX is out of scope" in str(result)


def test_a_budget_below_every_candidate_writes_nothing(
    tiny_run: Path, everything: BudgetResult, tmp_path: Path
) -> None:
    smallest = min(c.size for c in choose_under_budget(tiny_run, "1GB").candidates)
    with pytest.raises(ConfigError, match=f"the smallest is .* \\({smallest:,} bytes\\)") as raised:
        choose_under_budget(tiny_run, "1KB", tmp_path / "out")
    assert "max size 1 KB (1,000 bytes) is below every candidate" in str(raised.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="'1 parsec' is not a size"):
        choose_under_budget(tiny_run, "1 parsec", tmp_path / "out")
    with pytest.raises(Exception, match="is not a run directory"):
        choose_under_budget(tiny_run / "zoo", "1GB", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_without_test_labels_the_final_network_is_unscored(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    edit_json(run / "evaluate" / "results.json", split="oof", labels="given")
    result = choose_under_budget(run, "1GB")
    finals = [c for c in result.candidates if c.kind == "final"]
    assert finals and all(c.metric is None for c in finals)
    assert result.chosen.kind != "final" and result.scored_on.startswith("oof split, given")
    stacker = next(c for c in result.candidates if c.name == "stacker")
    oof = json.loads((run / "ensemble" / "stacker" / "predictions" / "manifest.json").read_text())
    assert np.isclose(stacker.metric, oof["fold_metrics"]["oof"]["metric"], atol=2e-3)  # type: ignore[arg-type]
    only_final = min(c.size for c in result.candidates if c.kind != "final") - 1
    with pytest.raises(ConfigError, match=r"where the final model .* has no figure"):
        choose_under_budget(run, only_final)
