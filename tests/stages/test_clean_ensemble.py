"""``webly clean`` and ``webly ensemble`` given a recipe's section (as --config) do what its
clean and ensemble stages did: the same rounds and blends, fitted on the same rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from webly import cli
from webly.config import load_recipe
from webly.pipeline import run_recipe
from webly.predictions import Predictions

RECIPE: dict[str, Any] = {
    "seed": 0,
    "data": {"synth": {"kind": "yt8m-like", "videos": 240, "classes": 10, "max_frames": 6}},
    "folds": {"n": 2},
    "zoo": {
        "k": 20,
        "train": {"epochs": 2, "batch_size": 64, "lr": 3e-3},
        "members": [{"name": "logistic"}, {"name": "mlp", "hparams": {"hidden": [16]}}],
    },
    "clean": {"rounds": 1, "patience": None, "rules": {"drop_fraction": 0.2}},
    "ensemble": {
        "blends": ["mean", "weighted"], "blend_options": {"weighted": {"n_trials": 20}},
        "stacker": {"rounds": 10, "min_data_in_leaf": 5, "threads": 1},
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("clean-ensemble")
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    assert not run_recipe(path, tmp / "run", [], Console(quiet=True)).failed
    return tmp / "run"


def invoke(base: Path, tmp_path: Path, command: str, source: Path, *args: str) -> str:
    """``webly COMMAND SOURCE --data --test --out tmp_path/cli --config`` the recipe's
    section, its output."""
    section = getattr(load_recipe(base / "recipe.yaml"), command)
    config = tmp_path / f"{command}.yaml"
    config.write_text(yaml.safe_dump(section.model_dump(mode="json")))
    result = CliRunner().invoke(cli.app, [
        command, str(source), "--data", str(base / "data" / "train"),
        "--test", str(base / "data" / "test"), "--out", str(tmp_path / "cli"),
        "--config", str(config), *args,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output


def manifest(base: Path, stage: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((base / stage / "manifest.json").read_text())
    return found


@pytest.mark.slow
def test_webly_clean_runs_the_recipes_section_as_the_stage_does(base: Path, tmp_path: Path) -> None:
    """The same rounds: equal config hashes (zoo, folds, labels, method, options, rules) and
    table rows."""
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump(load_recipe(base / "recipe.yaml").zoo.model_dump(mode="json")))
    printed = invoke(base, tmp_path, "clean", zoo)
    for r in (0, 1):
        ran, called = (
            json.loads((root / f"round-{r}" / "round.json").read_text())
            for root in (base / "clean", tmp_path / "cli")
        )
        assert ran["config_hash"] == called["config_hash"], r
        assert {**ran["row"], "seconds": 0} == {**called["row"], "seconds": 0}, r
    assert f"best: round {manifest(base, 'clean')['summary']['best']} " in printed


@pytest.mark.slow
def test_webly_ensemble_runs_the_recipes_section_as_the_stage_does(
    base: Path, tmp_path: Path
) -> None:
    """On the members the stage combined (the clean stage's best round): the same entries,
    weights and figures."""
    zoo_dir = base / "clean" / f"round-{manifest(base, 'clean')['summary']['best']}" / "zoo"
    printed = invoke(base, tmp_path, "ensemble", zoo_dir)
    stores = manifest(base, "ensemble")["outputs"]["stores"]
    assert list(stores) == ["mean", "weighted", "stacker"]
    for name, path in stores.items():
        ran = Predictions.open(base / path)
        called = Predictions.open(tmp_path / "cli" / Path(path).relative_to("ensemble"))
        assert ran.model == called.model, name
        for split in ("oof", "test"):
            assert ran.fold_metrics[split] == called.fold_metrics[split], (name, split)
        assert name in printed
