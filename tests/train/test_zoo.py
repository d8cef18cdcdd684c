"""The zoo file: loading, one-line errors, resolving members against the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import random_batch
from webly.data import Dataset, DatasetWriter, FeatureSpec, Layout
from webly.errors import ConfigError
from webly.train.zoo import load_zoo, parse_zoo, plan_zoo

DEMO = Path(__file__).resolve().parents[2] / "recipes" / "zoo-demo.yaml"


def test_demo_zoo_loads() -> None:
    zoo = load_zoo(DEMO)
    assert zoo.folds == 5 and zoo.k == 100 and zoo.train["epochs"] == 8
    ids = [m.member_id for m in zoo.members]
    assert ids == ["logistic", "mlp", "resnet_av", "mlp_audio", "dbof", "lgbm"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("members: [", r"invalid YAML at line \d+"),
        ("- logistic\n", r"holds list; write a mapping with members:"),
        ("folds: 3\n", r"members: Field required"),
        ("members: [{name: logistic}]\nepochs: 3\n", r"epochs: Extra inputs"),
        ("folds: many\nmembers: [{name: logistic}]\n", r"folds: Input should be a valid integer"),
        ("members: []\n", r"members is empty"),
        ("members: [{name: mlp}]\nmembers: []\n", r"key 'members' is given twice \(line 1 and"),
        ("train: {lr: .nan}\nmembers: [{name: mlp}]\n", r"zoo\.yaml: train\.lr: nan is not a fin"),
        ("members: [{name: mlp, id: " + "x" * 300 + "}]\n", r"members\[0\]\.id: 'x+'\.\.\. is 300"),
    ],
)
def test_bad_zoo_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "zoo.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_zoo(path)
    assert "\n" not in str(err.value)


def test_zoo_file_reads_exponents_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "zoo.yaml"
    path.write_text("train: {lr: 1e-3}\nmembers: [{name: logistic, train: {lr: 3E-2}}]\n")
    zoo = load_zoo(path)
    assert zoo.train["lr"] == 0.001 and zoo.members[0].train["lr"] == 0.03


def test_missing_zoo_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_zoo(tmp_path / "none.yaml")


def test_plan_resolves_groups_seeds_and_train_settings(small_store: Dataset) -> None:
    zoo = parse_zoo(
        {
            "folds": 3,
            "train": {"epochs": 2, "lr": 0.01},
            "members": [
                {"name": "mlp", "hparams": {"hidden": [4]}, "train": {"lr": 0.1}},
                {"name": "logistic", "id": "audio", "options": {"groups": ["audio"]}},
            ],
        }
    )
    mlp, audio = plan_zoo(zoo, small_store)
    assert mlp.groups == ("rgb", "audio") and mlp.input_dims == {"rgb": 16, "audio": 4}
    assert (mlp.train.epochs, mlp.train.lr) == (2, 0.1) and audio.train.lr == 0.01
    assert audio.options["groups"] == ["audio"] and len(mlp.fold_seeds) == 3
    assert mlp.train_config(0).seed != mlp.train_config(1).seed
    # seeds follow the member id, not its position in the zoo
    (alone,) = plan_zoo(
        parse_zoo({"folds": 3, "members": [zoo.members[1].model_dump()]}), small_store
    )
    assert alone.train_config(2).seed == audio.train_config(2).seed


def test_test_store_must_match(small_store: Dataset, tmp_path: Path) -> None:
    layout = Layout(features=(FeatureSpec("rgb", 16, "uint8"),), n_classes=20)
    with DatasetWriter(tmp_path / "test", layout) as writer:
        writer.write_batch(random_batch(np.random.default_rng(1), layout, 10))
    test = Dataset.open(tmp_path / "test")
    zoo = parse_zoo({"members": [{"name": "logistic", "groups": ["rgb"]}]})
    assert plan_zoo(zoo, small_store, test)[0].groups == ("rgb",)
    with pytest.raises(ConfigError, match=r"group 'audio' .* but the test data lacks it"):
        plan_zoo(parse_zoo({"members": [{"name": "logistic"}]}), small_store, test)
