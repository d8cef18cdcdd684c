"""The ready recipes in ``recipes/``: every one loads, and products, webvision and yt8m (on small
frame-level TFRecord files written here) run end to end, shrunk with ``--set``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from webly.config import load_recipe
from webly.data import tfrecord as tr
from webly.pipeline import RunResult, run_recipe
from webly.predictions import Predictions

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
READY = ("demo.yaml", "yt8m.yaml", "products.yaml", "webvision.yaml")

SMALL_PRODUCTS = (
    "data.synth.n_classes=20", "data.synth.n_products=300", "data.synth.test_products_per_class=4",
    "data.synth.image_dim=32", "folds.n=2", "zoo.train.epochs=5", "zoo.train.batch_size=32",
)  # fmt: skip
"""Shared by the two products-like recipes: 20 classes, about 800 training rows, 2 folds."""

SMALL_FRAME_MODELS = {
    "netvlad": {"clusters": 2, "hidden": 8},
    "nextvlad": {"clusters": 2, "n_groups": 2, "expansion": 2, "hidden": 8},
    "netfv": {"clusters": 2, "hidden": 8},
    "dbof": {"cluster_size": 8, "hidden": 8},
    "gru": {"hidden": 4, "bidirectional": True, "readout": "attention"},
    "attention_pool": {"heads": 2, "attention_dim": 4, "hidden": 8},
    "resnet_av": {"blocks": 1, "inner": 8},
    "moe": {"experts": 2},
}
"""Hyper-parameters shrinking each model of yt8m.yaml."""


def stage_summary(run: Path, stage: str) -> Any:
    """The summary the stage's manifest records (None when it made nothing)."""
    return json.loads((run / stage / "manifest.json").read_text())["summary"]


def run(recipe: str, out: Path, *overrides: str) -> RunResult:
    result = run_recipe(RECIPES / recipe, out, list(overrides))
    assert not result.failed, result.errors
    assert all(s.state == "done" for s in result.stages), [(s.name, s.state) for s in result.stages]
    return result


def row(result: RunResult, model: str) -> dict[str, Any]:
    assert result.results is not None
    found: dict[str, Any] = next(r for r in result.results["rows"] if r["model"] == model)
    return found


def test_every_recipe_loads_with_the_winning_teams_methods() -> None:
    assert set(READY) <= {p.name for p in RECIPES.glob("*.yaml")}
    for name in READY:
        recipe = load_recipe(RECIPES / name)
        assert recipe.distill is not None and recipe.distill.final is not None, name
        header = [line for line in (RECIPES / name).read_text().splitlines() if line][:3]
        assert all(line.startswith("#") for line in header), name  # what it is, how to run it
    products = load_recipe(RECIPES / "products.yaml")
    assert products.clean is not None and products.clean.rounds == 3
    assert products.clean.method == "disagree_low_conf"
    assert products.longtail is not None and products.longtail.method == "tau_norm"
    assert products.export is not None and products.export.predict["group_aggregation"] == "belief"
    webvision = load_recipe(RECIPES / "webvision.yaml")
    assert webvision.clean is not None and webvision.clean.method == "semantic"
    assert webvision.zoo.train["class_weight_power"] == 0.5
    yt8m = load_recipe(RECIPES / "yt8m.yaml")
    assert yt8m.data.yt8m is not None and yt8m.data.yt8m.level == "frame"
    assert {m.name for m in yt8m.zoo.members} == set(SMALL_FRAME_MODELS)
    assert yt8m.distill is not None and yt8m.distill.family
    assert yt8m.compress is not None and yt8m.compress.methods == ["int8_partial"]


@pytest.mark.slow
def test_products_recipe_runs_and_its_longtail_stage_moves_the_bands(tmp_path: Path) -> None:
    result = run(
        "products.yaml", tmp_path / "run", *SMALL_PRODUCTS, "clean.rounds=1",
        "ensemble.stacker.rounds=10",
    )  # fmt: skip
    longtail = stage_summary(tmp_path / "run", "longtail")
    assert longtail["method"] == "tau_norm" and longtail["chosen_on"].startswith("out of fold")
    assert [c["tau"] for c in longtail["sweep"]] == [None, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4]
    assert longtail["tau"] is not None  # a tau beat the classifier as trained
    before, after = longtail["bands"]["before"], longtail["bands"]["after"]
    assert before["metric"] == "top1_accuracy" and before["n_classes"] == after["n_classes"]
    assert before["values"] != after["values"]
    assert row(result, "longtail: mlp")["accuracy"] == longtail["test"]["metric"]
    exported = json.loads((tmp_path / "run" / "export" / "model" / "model.json").read_text())
    key = json.loads((tmp_path / "run" / "export" / "manifest.json").read_text())["key"]
    assert key.startswith(f"{exported['run']['candidate']} exported")  # the best within 1 GB
    assert exported["predict"]["group_aggregation"] == "belief"
    cleaned = stage_summary(tmp_path / "run", "clean")["rounds"]
    assert cleaned[-1]["dropped"] > 0  # disagree_low_conf dropped rows


@pytest.mark.slow
def test_webvision_recipe_runs_with_semantic_cleaning_and_class_weights(tmp_path: Path) -> None:
    run(
        "webvision.yaml", tmp_path / "run", *SMALL_PRODUCTS, "data.synth.n_classes=10",
        "data.synth.n_products=200", "zoo.train.epochs=2", "ensemble.stacker.rounds=10",
    )  # fmt: skip
    rounds = stage_summary(tmp_path / "run", "clean")["rounds"]
    assert rounds[-1]["down_weighted"] > 0 and rounds[-1]["precision"] > 0.5  # texts judged
    member = json.loads((tmp_path / "run" / "zoo" / "mlp" / "config.json").read_text())
    assert member["config"]["train"]["class_weight_power"] == 0.5


def write_frame_files(folder: Path, prefix: str, n_files: int, per_file: int) -> str:
    """YouTube-8M 2018 frame-level files of random videos with labels in 0..9; their glob."""
    rng = np.random.default_rng(len(prefix))
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(n_files):
        payloads = []
        for r in range(per_file):
            labels = np.sort(rng.choice(10, size=rng.integers(1, 3), replace=False))
            n_frames = int(rng.integers(2, 6))
            payloads.append(
                tr.encode_sequence_example(
                    {"id": [f"{prefix}{f}-{r}".encode()], "labels": labels.astype(np.int64)},
                    {
                        "rgb": rng.integers(0, 256, (n_frames, 1024), dtype=np.uint8),
                        "audio": rng.integers(0, 256, (n_frames, 128), dtype=np.uint8),
                    },
                )
            )
        tr.write_records(folder / f"{prefix}{f:04d}.tfrecord", payloads)
    return str(folder / f"{prefix}*.tfrecord")


@pytest.mark.slow
def test_yt8m_recipe_runs_on_frame_level_tfrecord_files(tmp_path: Path) -> None:
    train = write_frame_files(tmp_path / "tf", "train", n_files=2, per_file=20)
    test = write_frame_files(tmp_path / "tf", "validate", n_files=1, per_file=12)
    unlabeled = write_frame_files(tmp_path / "tf", "test", n_files=1, per_file=10)
    raw = yaml.safe_load((RECIPES / "yt8m.yaml").read_text())
    shrink = [
        f"{where}.hparams={json.dumps(SMALL_FRAME_MODELS[member['name']])}"
        for section, members in (
            ("zoo.members", raw["zoo"]["members"]),
            ("distill.students", raw["distill"]["students"]),
        )
        for where, member in ((f"{section}.{i}", m) for i, m in enumerate(members))
    ]
    result = run(
        "yt8m.yaml", tmp_path / "run", f"data.yt8m.train={train}", f"data.yt8m.test={test}",
        f"data.yt8m.unlabeled={unlabeled}",
        "data.yt8m.n_classes=10", "folds.n=2", "zoo.train.epochs=1", "zoo.train.max_frames=4",
        "ensemble.stacker.rounds=5", "ensemble.blend_options={weighted: {n_trials: 20}}",
        f"distill.final.hparams={json.dumps(SMALL_FRAME_MODELS['netvlad'])}", *shrink,
    )  # fmt: skip
    assert result.results is not None and result.results["metric"] == "GAP@20"
    assert {r["model"] for r in result.results["rows"]} >= {*SMALL_FRAME_MODELS, "stacker"}
    assert stage_summary(tmp_path / "run", "longtail") is None  # not in this recipe
    assert (tmp_path / "run" / "export" / "model" / "model.json").is_file()
    final = json.loads((tmp_path / "run" / "distill" / "manifest.json").read_text())["outputs"]
    (store,) = final["final"].values()
    assert Predictions.open(tmp_path / "run" / store).model["pseudo_rows"] == 10


def write_video_files(folder: Path, prefix: str, n_files: int, per_file: int) -> str:
    """YouTube-8M 2018 video-level files of random videos with labels in 0..9; their glob."""
    rng = np.random.default_rng(len(prefix))
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(n_files):
        payloads = [
            tr.encode_example(
                {
                    "id": [f"{prefix}{f}-{r}".encode()],
                    "labels": np.sort(rng.choice(10, size=2, replace=False)).astype(np.int64),
                    "mean_rgb": rng.normal(size=1024).astype(np.float32),
                    "mean_audio": rng.normal(size=128).astype(np.float32),
                }
            )
            for r in range(per_file)
        ]
        tr.write_records(folder / f"{prefix}{f:04d}.tfrecord", payloads)
    return str(folder / f"{prefix}*.tfrecord")


@pytest.mark.slow
def test_yt8m_video_recipe_runs_as_it_stands_on_video_level_files(tmp_path: Path) -> None:
    raw = yaml.safe_load((RECIPES / "yt8m-video.yaml").read_text())
    assert "lr" not in raw["zoo"]["train"] and "epochs" not in raw["zoo"]["train"]
    assert all("lr" not in m.get("train", {}) for m in raw["zoo"]["members"])
    train = write_video_files(tmp_path / "tf", "train", n_files=2, per_file=30)
    test = write_video_files(tmp_path / "tf", "validate", n_files=1, per_file=12)
    result = run(
        "yt8m-video.yaml", tmp_path / "run", f"data.yt8m.train={train}",
        f"data.yt8m.test={test}", "data.yt8m.n_classes=10", "folds.n=2",
        "zoo.train.epochs=2", "zoo.train.lr_probe_steps=2", "ensemble.stacker.rounds=5",
        "ensemble.blend_options={weighted: {n_trials: 20}}",
    )  # fmt: skip
    assert result.results is not None
    models = {r["model"] for r in result.results["rows"]}
    assert {"logistic", "mlp", "mlp_audio", "resnet_av", "stacker"} <= models
    fold = Predictions.open(tmp_path / "run" / "zoo" / "mlp" / "predictions").fold_metrics["0"]
    assert fold["lr"] in (3e-4, 1e-3, 3e-3, 1e-2, 3e-2) and len(fold["lr_search"]) == 5
