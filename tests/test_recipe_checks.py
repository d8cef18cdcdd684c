"""The whole recipe is checked before anything runs (issue 20, item 9): every member's training
settings and the stages' compatibility with the members, each message naming the recipe file
and the key path, and nothing written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from webly.config import load_recipe
from webly.data import Dataset
from webly.errors import ConfigError
from webly.pipeline import run_recipe
from webly.train.zoo import load_zoo

RECIPE: dict[str, Any] = {
    "seed": 0,
    "data": {"synth": {"kind": "yt8m-like", "videos": 60, "classes": 5, "max_frames": 0}},
    "folds": {"n": 2},
    "zoo": {
        "k": 20,
        "train": {"epochs": 1, "batch_size": 32, "lr": 1e-3},
        "members": [
            {"name": "logistic"},
            {"name": "mlp", "hparams": {"hidden": [8]}},
            {"name": "mlp", "id": "mlp2", "hparams": {"hidden": [8]}},
        ],
    },
}  # fmt: skip


def write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["zoo.members.2.train.epochs=0"], r"zoo\.members\[2\]\.train\.epochs: .*epochs is 0"),
        (["zoo.members.1.train.epochs=-3"], r"zoo\.members\[1\]\.train\.epochs: .*is -3"),
        (["zoo.train.epochs=0"], r": zoo\.train\.epochs: train epochs is 0; it must be >= 1"),
        (["zoo.train.lr=-0.1"], r": zoo\.train\.lr: train lr is -0\.1; use a rate > 0"),
        (["zoo.members.0.train.lr=-1.0"], r"zoo\.members\[0\]\.train\.lr: train lr is -1\.0"),
        (["zoo.members.2.train.batch_size=0"], r"zoo\.members\[2\]\.train\.batch_size: .* 0"),
        (["zoo.train.mixup_alpha=-1.0"], r"zoo\.train\.mixup_alpha: mixup_alpha is -1\.0"),
        (
            ["ensemble.blends=[mean]", "distill.final={name: mlp, train: {epochs: 0}}"],
            r"distill\.final\[0\]\.train\.epochs: train epochs is 0",
        ),
        (
            [
                "ensemble.blends=[mean]",
                "distill.students=[{name: mlp}, {name: logistic, train: {batch_size: 0}}]",
            ],
            r"distill\.students\[1\]\.train\.batch_size: train batch_size is 0",
        ),
        (
            ["zoo.members.2={name: lgbm, hparams: {n_estimators: 2}}", "clean={}"],
            r"clean\.rules\.down_weight: 0\.5 .*zoo\.members\[2\] \(lgbm\) is a gradient-boosted",
        ),
        (
            ["zoo.members.0={name: lgbm}", "clean.rules.down_weight=0.3"],
            r"clean\.rules\.down_weight: 0\.3 .*zoo\.members\[0\] \(lgbm\)",
        ),
        (
            ["ensemble.blends=[mean]", "distill.final={name: lgbm}"],
            r"distill\.final: lgbm is a gradient-boosted model, which takes no soft targets",
        ),
        (
            ["ensemble.blends=[mean]", "distill.students=[{name: mlp}, {name: lgbm}]"],
            r"distill\.students\[1\]: lgbm is a gradient-boosted model",
        ),
    ],
)
def test_bad_settings_and_stage_mismatches_name_the_file_and_key(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    path = write(tmp_path, RECIPE)
    with pytest.raises(ConfigError, match=message) as err:
        load_recipe(path, overrides)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"recipe {path}: "), text


@pytest.mark.parametrize(
    "overrides",
    [
        ["zoo.members.0={name: lgbm}", "clean.rules.down_weight=0.0"],
        ["zoo.members.0={name: lgbm}", "clean.rules.down_weight=1"],
        ["zoo.train.epochs=3", "zoo.members.1.train.lr=auto"],
    ],
)
def test_compatible_settings_pass(tmp_path: Path, overrides: list[str]) -> None:
    load_recipe(write(tmp_path, RECIPE), overrides)


def test_a_zoo_file_names_the_member_setting(tmp_path: Path) -> None:
    path = tmp_path / "zoo.yaml"
    members = [{"name": "logistic"}, {"name": "mlp", "train": {"epochs": 0}}]
    path.write_text(yaml.safe_dump({"members": members}))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: members[1].train.epochs: train")):
        load_zoo(path)


@pytest.mark.parametrize(
    "overrides",
    [
        ["zoo.members.2.train.epochs=0"],
        ["zoo.members.2={name: lgbm}", "clean={}"],
    ],
)
def test_a_bad_recipe_runs_nothing_and_writes_nothing(tmp_path: Path, overrides: list[str]) -> None:
    path = write(tmp_path, RECIPE)
    with pytest.raises(ConfigError, match=str(path)):
        run_recipe(path, tmp_path / "run", overrides)
    assert not (tmp_path / "run").exists()


def test_members_that_do_not_fit_the_given_store_fail_before_anything_is_written(
    tmp_path: Path, small_store: Dataset
) -> None:
    raw = {**RECIPE, "data": {"store": {"train": str(small_store.path)}}}
    raw["zoo"] = {**RECIPE["zoo"], "members": [{"name": "logistic"}, {"name": "dbof"}]}
    with pytest.raises(ConfigError, match="dbof"):
        run_recipe(write(tmp_path, raw), tmp_path / "run")
    assert not (tmp_path / "run").exists()
