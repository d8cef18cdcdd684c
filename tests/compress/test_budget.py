"""``choose_under_budget``: on a real run, the most accurate candidate on validation rows within
each size and latency budget, a frontier that is Pareto, the compressed final network written
(and scored as it is), an ensemble choice written as choice.json, a choice the test split
cannot move, and the errors that write nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import webly.compress.budget as budget_module
from webly.compress.budget import BudgetResult, choose_under_budget
from webly.compress.run import run_final
from webly.core import TopK
from webly.data import Dataset
from webly.ensemble.blend import Blend
from webly.ensemble.stack import Stacker
from webly.ensemble.tta import scores_topk
from webly.errors import ConfigError
from webly.metrics.evaluate import task_metric
from webly.models.quantized import open_network
from webly.predictions import Predictions
from webly.report.run_files import RunFiles
from webly.report.summary import summary_cards
from webly.train.loop import iter_scores
from webly.train.oof import held_out_rows, predict_members


@pytest.fixture(scope="module")
def everything(tiny_run: Path) -> BudgetResult:
    """Every candidate of the run, all tensors compressible, under a budget they all fit."""
    return choose_under_budget(tiny_run, "1GB", min_elements=0)


def assert_pareto(result: BudgetResult) -> None:
    """The frontier: no scored candidate is at least as small, as fast and as accurate as a
    frontier point with one strictly; every candidate off it is matched or beaten by one."""
    scored = {
        c.name: (c.size, float(c.latency_ms or 0.0), float(c.metric))
        for c in result.candidates
        if c.metric is not None
    }
    front = [scored[c.name] for c in result.frontier]
    assert [p[0] for p in front] == sorted(p[0] for p in front)

    def beats(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return a[0] <= b[0] and a[1] <= b[1] and a[2] >= b[2] and a != b

    for point in front:
        assert not any(beats(other, point) for other in scored.values())
    for point in scored.values():
        assert any(f == point or beats(f, point) for f in front)


@pytest.mark.slow
def test_candidates_and_frontier(tiny_run: Path, everything: BudgetResult) -> None:
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
    assert abs(int8.metric - fp32.metric) < 0.02  # type: ignore[operator]
    stacker = next(c for c in everything.candidates if c.name == "stacker")
    assert set(stacker.members) == {"logistic", "mlp"} and stacker.size == sum(
        stacker.parts.values()
    )
    # every member's fold models compressed: a second pool, smaller, scored again
    compressed = {c.name: c for c in everything.candidates if c.compression == "int8_partial"}
    assert {"stacker int8_partial", "blend greedy int8_partial"} <= set(compressed)
    # each pool keeps the frontier of its own mean subsets (latency, measured, moves it): compare
    # the candidates both pools hold
    stored_by_name = {c.name: c for c in everything.candidates if c.compression is None}
    both = [n for n in compressed if n.removesuffix(" int8_partial") in stored_by_name]
    assert {"stacker int8_partial", "blend greedy int8_partial"} <= set(both)
    for name in both:
        c, stored = compressed[name], stored_by_name[name.removesuffix(" int8_partial")]
        assert c.size < 0.5 * stored.size and c.members == stored.members
        assert abs(c.metric - stored.metric) < 0.03 and c.metric != stored.metric  # type: ignore[operator]
    held = held_out_rows(run_final(tiny_run).folder)
    assert held is not None and 0 < held.size < 200
    assert everything.scored_on.startswith("validation rows (held out of the final network")
    assert everything.scored_on.endswith(f"given labels, {held.size} rows")
    assert everything.reported_on == "test split, clean labels, 50 rows"
    assert all(c.test_metric is not None for c in everything.candidates)
    assert all(c.latency_ms is not None and c.latency_ms > 0 for c in everything.candidates)
    assert stacker.latency_ms > max(  # type: ignore[operator]
        c.latency_ms
        for c in everything.candidates
        if c.name.startswith("member ")  # type: ignore[type-var]
    )
    assert everything.metric == "GAP@20" and everything.subsets_exact
    assert_pareto(everything)
    best = max(c.metric for c in everything.candidates if c.metric is not None)
    assert everything.chosen.metric == best and everything.chosen in everything.frontier
    # the stacker's validation figure is its own out-of-fold predictions' on the held-out rows
    store = Predictions.open(tiny_run / "ensemble" / "stacker" / "predictions")
    train = Dataset.open(tiny_run / "data" / "train")
    oof = store.topk("oof", held)
    assert stacker.metric == pytest.approx(
        task_metric(oof, train.labels[held], "multilabel", 20), abs=1e-12
    )


def test_each_budget_gets_the_best_that_fits(
    tiny_run: Path, everything: BudgetResult, tmp_path: Path
) -> None:
    int8 = everything.candidates[2]
    budget = int8.size + 100
    result = choose_under_budget(tiny_run, budget, tmp_path / "out", min_elements=0)
    fits = [c for c in result.candidates if c.size <= budget and c.metric is not None]
    assert result.chosen.size <= budget
    assert result.chosen.metric == max(c.metric for c in fits)  # type: ignore[type-var]
    assert_pareto(result)
    out = tmp_path / "out"
    frontier = json.loads((out / "frontier.json").read_text())
    assert frontier["chosen"] == result.chosen.name and frontier["max_bytes"] == budget
    assert [c["name"] for c in frontier["frontier"]] == [c.name for c in result.frontier]
    choice = json.loads((out / "choice.json").read_text())
    assert choice["run"] == str(tiny_run.resolve()) and choice["size"] == result.chosen.size
    assert f"(export it: webly export {out} --out EXPORT_DIR)" in str(result)


def test_the_compressed_final_network_is_written_and_scored_as_it_is(
    tiny_run: Path, everything: BudgetResult, tmp_path: Path
) -> None:
    """Only the 8-bit final network fits: its files are written, its figures are its own."""
    run = copy_run(tiny_run, tmp_path / "run")
    edit_json(run / "ensemble" / "manifest.json", outputs=None)  # as if no ensemble
    for member in ("zoo", "clean"):
        if (run / member / "manifest.json").is_file():
            edit_json(run / member / "manifest.json", state="failed", outputs=None)
    int8 = everything.candidates[2]
    result = choose_under_budget(run, int8.size + 100, tmp_path / "out", min_elements=0)
    assert result.chosen.name == "final logistic int8_partial"
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "choice.json", "compression.json", "frontier.json", "model.json",
        "weights.quantized.safetensors",
    ]  # fmt: skip
    choice = json.loads((out / "choice.json").read_text())
    assert choice["method"] == "int8_partial" and choice["size"] == result.chosen.size
    test = Dataset.open(run / "data" / "test")
    network = open_network(out)
    top = scores_topk(iter_scores(network, test, list(network.config["input_dims"])), 20)
    assert result.chosen.test_metric == pytest.approx(
        task_metric(top, test.clean_labels, "multilabel", 20), abs=1e-12
    )
    assert f"wrote the network to {out}" in str(result)


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | changes))


def test_blend_weights_are_fitted_out_of_fold_to_be_scored(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fitted blend is scored as honestly as the stacker: each fold's validation rows by
    weights fitted on the other folds' rows (never on the rows scored)."""
    folds = np.load(tiny_run / "folds" / "folds.npy")
    fitted: list[int] = []
    real = budget_module.fit_blend

    def spy(method: str, oof: list[TopK], labels: Any, *args: Any, **kwargs: Any) -> Blend:
        fitted.append(labels.shape[0])
        return real(method, oof, labels, *args, **kwargs)

    monkeypatch.setattr(budget_module, "fit_blend", spy)
    result = choose_under_budget(tiny_run, "1GB", member_methods=(), measure_latency=False)
    sizes = sorted(int((folds != f).sum()) for f in np.unique(folds))
    assert sorted(fitted) == sizes  # the greedy blend, once a fold, on the other folds' rows
    greedy = next(c for c in result.candidates if c.name == "blend greedy")
    store = Predictions.open(tiny_run / "ensemble" / "blend-greedy")
    test = Dataset.open(tiny_run / "data" / "test")
    assert greedy.test_metric == pytest.approx(
        task_metric(store.topk("test"), test.clean_labels, "multilabel", 20), abs=2e-3
    )


def test_the_test_split_never_moves_the_choice(
    tiny_run: Path, everything: BudgetResult, tmp_path: Path
) -> None:
    """With the run's figures on the training labels instead of the test split, every
    candidate keeps its validation figure and the same one is chosen; the test figures go."""
    run = copy_run(tiny_run, tmp_path / "run")
    edit_json(run / "evaluate" / "results.json", split="oof", labels="given")
    result = choose_under_budget(run, "1GB", min_elements=0, measure_latency=False)
    assert result.reported_on is None and all(c.test_metric is None for c in result.candidates)
    figures = {c.name: c.metric for c in everything.candidates}
    assert all(figures[c.name] == c.metric for c in result.candidates if c.name in figures)
    assert (
        result.chosen.name
        == max(
            (c for c in everything.candidates if c.metric is not None),
            key=lambda c: (c.metric, -c.size),
        ).name
    )


def test_an_ensemble_choice_is_written_as_choice_json(tiny_run: Path, tmp_path: Path) -> None:
    run = copy_run(tiny_run, tmp_path / "run")  # as if the recipe had no distill.final
    edit_json(
        run / "distill" / "manifest.json", outputs=None, summary=None, key="not in the recipe"
    )
    result = choose_under_budget(run, "1GB", tmp_path / "out", measure_latency=False)
    assert result.chosen.kind in ("ensemble", "stacker")
    assert result.scored_on == "every training row out of fold, given labels, 200 rows"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["choice.json", "frontier.json"]
    choice = json.loads((tmp_path / "out" / "choice.json").read_text())
    assert choice["members"] and choice["size"] == sum(choice["parts"].values())
    if result.chosen.kind == "ensemble":
        blend = choice["blend"]
        assert blend["names"] == choice["members"] and sum(blend["weights"]) == pytest.approx(1)


def test_a_distilled_final_network_is_not_scored_on_its_held_out_rows(
    tiny_run: Path, tmp_path: Path
) -> None:
    """Its teacher trained on those rows: they would flatter it. The choice is then made on
    every training row out of fold, without it."""
    run = copy_run(tiny_run, tmp_path / "run")
    outputs = json.loads((run / "distill" / "manifest.json").read_text())["outputs"]
    (path,) = outputs["final"].values()
    manifest = run / path / "manifest.json"
    recorded = json.loads(manifest.read_text())
    edit_json(manifest, model=recorded["model"] | {"distilled": True})
    result = choose_under_budget(run, "1GB", measure_latency=False)
    assert result.scored_on == "every training row out of fold, given labels, 200 rows"
    finals = [c for c in result.candidates if c.kind == "final"]
    assert finals and all(c.metric is None and c.test_metric is not None for c in finals)
    assert result.chosen.kind != "final"


def test_without_held_out_rows_the_final_network_is_unscored(
    tiny_run: Path, tmp_path: Path
) -> None:
    run = copy_run(tiny_run, tmp_path / "run")
    (run_final(run).folder / "held_out.npy").unlink()
    result = choose_under_budget(run, "1GB", measure_latency=False)
    finals = [c for c in result.candidates if c.kind == "final"]
    assert finals and all(c.metric is None and c.test_metric is not None for c in finals)
    assert result.chosen.kind != "final"
    only_final = min(c.size for c in result.candidates if c.kind != "final") - 1
    with pytest.raises(ConfigError, match=r"the final network has no validation figure"):
        choose_under_budget(run, only_final, measure_latency=False)


def test_a_budget_below_every_candidate_writes_nothing(
    tiny_run: Path, everything: BudgetResult, tmp_path: Path
) -> None:
    weighed = choose_under_budget(tiny_run, "1GB", measure_latency=False).candidates
    smallest = min(c.size for c in weighed)
    with pytest.raises(ConfigError, match=f"the smallest is .* \\({smallest:,} bytes\\)") as raised:
        choose_under_budget(tiny_run, "1KB", tmp_path / "out")
    assert "max size 1 KB (1,000 bytes) is below every candidate" in str(raised.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="'1 parsec' is not a size"):
        choose_under_budget(tiny_run, "1 parsec", tmp_path / "out")
    with pytest.raises(Exception, match="is not a run directory"):
        choose_under_budget(tiny_run / "zoo", "1GB", tmp_path / "out")
    with pytest.raises(ConfigError, match="give a positive number of milliseconds"):
        choose_under_budget(tiny_run, "1GB", tmp_path / "out", max_latency_ms=-1)
    assert list(tmp_path.iterdir()) == []


def test_a_latency_budget_keeps_the_fast_and_names_the_fastest(
    tiny_run: Path, everything: BudgetResult, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"runs a row in 1e-09 ms; the fastest is .* ms a row"):
        choose_under_budget(tiny_run, "1GB", tmp_path / "out", max_latency_ms=1e-9)
    assert list(tmp_path.iterdir()) == []
    stacker = next(c for c in everything.candidates if c.name == "stacker")
    assert stacker.latency_ms is not None
    result = choose_under_budget(tiny_run, "1GB", max_latency_ms=stacker.latency_ms / 2)
    assert result.chosen.name != "stacker"
    assert result.chosen.latency_ms <= stacker.latency_ms / 2  # type: ignore[operator]


@pytest.mark.slow
def test_with_a_validation_split_every_candidate_is_scored_on_it(valid_run: Path) -> None:
    """No model of the run trained on the split, so the final network (distilled or not) is
    weighed beside the members, blends and stacker, each predicting it whole."""
    result = choose_under_budget(valid_run, "1GB", measure_latency=False)
    valid = Dataset.open(valid_run / "data" / "valid")
    train = Dataset.open(valid_run / "data" / "train")
    assert result.scored_on == (
        "the validation split carved before the zoo (no model trained on it), given labels, "
        f"{len(valid)} rows"
    )
    assert all(c.metric is not None for c in result.candidates)
    by_name = {c.name: c for c in result.candidates}
    stores = {m: valid_run / "zoo" / m / "predictions" for m in ("logistic", "mlp")}
    predicted = predict_members(stores, train, valid)
    for name, top in predicted.items():
        expected = task_metric(top, valid.labels, valid.task, 20)
        assert by_name[f"member {name}"].metric == pytest.approx(expected)
    stacker = Stacker.load(valid_run / "ensemble" / "stacker" / "model")
    on_valid = stacker.predict_topk([predicted[m] for m in stacker.members])
    expected = task_metric(on_valid, valid.labels, valid.task, 20)
    assert by_name["stacker"].metric == pytest.approx(expected, abs=1e-6)
    final = run_final(valid_run).folder
    network = open_network(final)
    scores = scores_topk(iter_scores(network, valid, list(network.config["input_dims"]), 64), 20)
    (fp32,) = [c for c in result.candidates if c.name.endswith("fp32")]
    assert fp32.metric == pytest.approx(task_metric(scores, valid.labels, valid.task, 20))
    best = max(c.metric or 0.0 for c in result.candidates)
    assert result.chosen.metric == best
    (data,) = [c for c in summary_cards(RunFiles.open(valid_run)) if c.label == "Data"]
    assert data.value == f"{len(train):,} training rows"
    assert f"{len(valid):,} validation rows no model trained on" in data.detail
