"""The ``longtail`` stage: tau chosen out of fold on the students (or on fold 0 without them),
cRT with the rest of the network untouched, the adjusted network deployed in place of distill's,
the stage left out, and a final network it cannot adjust."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from webly import cli
from webly.compress.run import run_final
from webly.config import load_recipe
from webly.errors import ConfigError
from webly.longtail import apply_tau
from webly.models.network import load_network
from webly.pipeline import RunResult, run_recipe
from webly.predictions import Predictions
from webly.rundir import DistillRecord, LongtailRecord, RunDir

RECIPE: dict[str, Any] = {
    "seed": 0,
    "data": {
        "synth": {
            "kind": "products-like", "n_classes": 10, "n_products": 200,
            "test_products_per_class": 4, "image_dim": 16, "latent_dim": 8,
        }
    },
    "folds": {"n": 2},
    "zoo": {
        "k": 20,
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.01},
        "members": [{"name": "mlp", "hparams": {"hidden": [16]}}],
    },
    "ensemble": {"blends": ["mean"], "stacker": None},
    "distill": {
        "students": [{"name": "mlp", "id": "student", "hparams": {"hidden": [16]}}],
        "final": {"name": "mlp", "hparams": {"hidden": [16]}},
    },
    "longtail": {"taus": [0.0, 0.5, 1.0, 2.0], "head": 40, "tail": 15},
}  # fmt: skip
"""Products-like, 10 classes, about 500 training rows; tau-norm swept on one student."""


def run(tmp_path: Path, out: Path, *overrides: str) -> RunResult:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return run_recipe(path, out, list(overrides))


def classifier(folder: Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The classifier's weight and bias, and every other tensor, of a saved network."""
    state = load_network(folder).state_dict()
    rest = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    return state["classifier.weight"], state["classifier.bias"], rest


def stage_summary(run: Path, stage: str) -> dict[str, Any]:
    """The summary the stage's manifest records."""
    summary: dict[str, Any] = json.loads((run / stage / "manifest.json").read_text())["summary"]
    return summary


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("longtail")
    result = run(tmp, tmp / "run")
    assert not result.failed and all(s.state == "done" for s in result.stages)
    return tmp / "run"


@pytest.fixture
def copy(base: Path, tmp_path: Path) -> Path:
    shutil.copytree(base, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.slow
def test_tau_is_chosen_out_of_fold_and_applied_to_the_final_network(base: Path) -> None:
    summary = stage_summary(base, "longtail")
    assert summary["method"] == "tau_norm" and summary["metric"] == "mean_class_error"
    assert summary["chosen_on"].startswith("out of fold: student(s) student")
    assert [c["candidate"] for c in summary["sweep"]] == [
        "as trained", "tau 0", "tau 0.5", "tau 1", "tau 2"
    ]  # fmt: skip
    assert all(c["eligible"] for c in summary["sweep"])  # out of fold: as trained may win
    best = min(summary["sweep"], key=lambda c: c["metric"])  # lower is better, first of equals
    assert (summary["chosen"], summary["tau"]) == (best["candidate"], best["tau"])
    for when in ("before", "after"):
        bands = summary["bands"][when]
        assert set(bands["values"]) == {"head", "medium", "tail"}
        assert sum(bands["n_classes"].values()) == 10
    model = RunDir(base).need(LongtailRecord).model
    assert model == base / "longtail" / "final" / "model"
    original = RunDir(base).need(DistillRecord).model
    assert original is not None
    weight, bias, rest = classifier(model)
    network = load_network(original)
    if summary["tau"] is not None:
        apply_tau(network, summary["tau"], "zero")
    torch.testing.assert_close(weight, network.state_dict()["classifier.weight"])
    torch.testing.assert_close(bias, network.state_dict()["classifier.bias"])
    assert all(torch.equal(v, classifier(original)[2][k]) for k, v in rest.items())
    store = Predictions.open(base / "longtail" / "final" / "predictions")
    assert store.fold_metrics["test"]["metric"] == summary["test"]["metric"]
    results = json.loads((base / "evaluate" / "results.json").read_text())
    labels = [r["model"] for r in results["rows"]]
    assert labels[-2:] == ["final: mlp", "longtail: mlp"]
    final = run_final(base)
    assert (final.stage, final.folder) == ("longtail", model)
    assert final.metrics == {
        "accuracy": results["rows"][-1]["accuracy"],
        "log-loss": results["rows"][-1]["log-loss"],
    }


def test_without_students_tau_is_chosen_on_fold_0(copy: Path, tmp_path: Path) -> None:
    result = run(tmp_path, copy, "distill.students=[]")
    assert not result.failed
    summary = stage_summary(copy, "longtail")
    assert summary["chosen_on"].startswith("fold 0 of the training rows")
    trained, *taus = summary["sweep"]
    assert not trained["eligible"] and all(c["eligible"] for c in taus)  # it saw those rows
    assert summary["tau"] == min(taus, key=lambda c: c["metric"])["tau"]


@pytest.mark.slow
def test_crt_retrains_only_the_classifier(copy: Path, tmp_path: Path) -> None:
    result = run(tmp_path, copy, "longtail.method=crt", "longtail.crt.epochs=3")
    skipped = {s.name: s.skipped for s in result.stages}
    assert all(skipped[name] for name in ("data", "folds", "zoo", "ensemble", "distill"))
    assert not skipped["longtail"] and not skipped["evaluate"]
    summary = stage_summary(copy, "longtail")
    assert (summary["method"], summary["chosen"], summary["tau"]) == ("crt", "crt", None)
    assert [(c["candidate"], c["eligible"]) for c in summary["sweep"]] == [
        ("as trained", False), ("crt", True)
    ]  # fmt: skip
    assert summary["sweep"][1]["best_epoch"] in (1, 2, 3)
    assert summary["chosen_on"].startswith("fold 0 of the training rows")
    weight, _, rest = classifier(copy / "longtail" / "final" / "model")
    trained = RunDir(copy).need(DistillRecord).model
    assert trained is not None
    trained_weight, _, trained_rest = classifier(trained)
    assert rest.keys() == trained_rest.keys()
    assert all(torch.equal(v, trained_rest[k]) for k, v in rest.items())  # frozen
    assert not torch.equal(weight, trained_weight)
    assert not (copy / "longtail" / "crt-work").exists()


def test_without_a_longtail_section_distills_final_is_deployed(copy: Path, tmp_path: Path) -> None:
    result = run(tmp_path, copy, "longtail=null")
    assert RunDir(copy).read(LongtailRecord) is None
    assert result.results is not None
    assert "longtail: mlp" not in [r["model"] for r in result.results["rows"]]
    final = run_final(copy)
    assert (final.stage, final.folder) == ("distill", RunDir(copy).need(DistillRecord).model)


def test_a_final_without_a_linear_classifier_fails_the_stage(copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'moe' has a MixtureOfExperts as its final classifier"):
        run(tmp_path, copy, "distill.final={name: moe}")
    manifest = json.loads((copy / "longtail" / "manifest.json").read_text())
    assert manifest["state"] == "failed"


def test_longtail_needs_a_final_network(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    with pytest.raises(ConfigError, match="longtail: the longtail stage adjusts the final"):
        load_recipe(path, ["distill.final=null"])
    with pytest.raises(ConfigError, match=r"distill\.final is 'lgbm', a gradient-boosted model"):
        load_recipe(path, ["distill.final={name: lgbm}"])
    with pytest.raises(ConfigError, match=r"longtail\.taus: -1\.0 is not a finite value >= 0"):
        load_recipe(path, ["longtail.taus=[-1]"])


def test_webly_longtail_runs_the_recipes_section_as_the_stage_does(
    base: Path, tmp_path: Path
) -> None:
    """The same section (the recipe's, as --config) on the run's final network and students:
    the same choice, key and adjusted classifier."""
    recipe = load_recipe(base / "recipe.yaml")
    assert recipe.longtail is not None
    zoo, section = tmp_path / "zoo.yaml", tmp_path / "longtail.yaml"
    zoo.write_text(yaml.safe_dump(recipe.zoo.model_dump(mode="json")))
    section.write_text(yaml.safe_dump(recipe.longtail.model_dump(mode="json")))
    distill = json.loads((base / "distill" / "manifest.json").read_text())["outputs"]
    (final,) = distill["final"].values()  # OUT/final/SETTING/ID/predictions
    students = [arg for store in distill["students"].values()
                for arg in ("--student", str((base / store).parent))]  # fmt: skip
    out = tmp_path / "cli"
    result = CliRunner().invoke(cli.app, [
        "longtail", str(zoo), "--final", str((base / final).parent), *students,
        "--data", str(base / "data" / "train"), "--test", str(base / "data" / "test"),
        "--out", str(out), "--config", str(section),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    stage = json.loads((base / "longtail" / "manifest.json").read_text())
    assert stage["key"] in " ".join(result.output.split())
    weight, bias, _ = classifier(out / "final" / "model")
    torch.testing.assert_close(weight, classifier(base / "longtail" / "final" / "model")[0])
    torch.testing.assert_close(bias, classifier(base / "longtail" / "final" / "model")[1])
    store = Predictions.open(out / "final" / "predictions")
    assert store.fold_metrics["test"] == stage_summary(base, "longtail")["test"]
