"""The distill stage: settings and teacher chosen on validation, never on the test split; the
labels-only twin kept when distillation does not beat it; mixed rows taught by the teacher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
import yaml
from rich.console import Console
from typer.testing import CliRunner

import webly.distill.run as distill_run
from tests.train.test_oof import spy_fit
from webly import cli
from webly.config import load_recipe
from webly.core import Task, TopK
from webly.data import Dataset, DatasetWriter
from webly.data.relabel import label_list_array
from webly.distill.mixed import mix_rows
from webly.distill.soft_labels import sharpen
from webly.ensemble.fit import load_entry
from webly.pipeline import run_recipe
from webly.predictions import Predictions
from webly.train.oof import held_out_rows, predict_zoo

RECIPE: dict[str, Any] = {
    "seed": 0,
    "data": {
        "synth": {
            "kind": "yt8m-like", "videos": 300, "classes": 10, "max_frames": 8,
            "unlabeled_videos": 0,
        }
    },
    "folds": {"n": 3},
    "zoo": {
        "k": 20,
        "train": {"epochs": 4, "batch_size": 64, "lr": 3e-3, "patience": None},
        "members": [{"name": "logistic"}, {"name": "mlp", "hparams": {"hidden": [16]}}],
    },
    "ensemble": {"blends": ["mean"], "stacker": {"rounds": 20, "min_data_in_leaf": 5,
                                                 "threads": 1}},
    "distill": {"final": {"name": "logistic"}},
}  # fmt: skip


def run(tmp_path: Path, out: Path, *overrides: str, recipe: dict[str, Any] = RECIPE) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = run_recipe(path, out, list(overrides), Console(quiet=True))
    assert not result.failed


def manifest(out: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / "distill" / "manifest.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run up to the ensemble, and the default distill stage: lam 1.0, 0.5, 0.2."""
    tmp = tmp_path_factory.mktemp("base")
    run(tmp, tmp / "run")
    return tmp / "run"


@pytest.mark.slow
def test_every_lam_is_tried_and_the_best_on_the_held_out_rows_kept(base: Path) -> None:
    stage = manifest(base)
    summary, outputs = stage["summary"], stage["outputs"]
    tried = summary["final_tried"]
    assert [t["setting"] for t in tried] == ["labels", "lam-0.5", "lam-0.2"]
    valid = [t["valid"] for t in tried]
    assert all(0 < v <= 1 for v in valid) and all(0 < t["test"] <= 1 for t in tried)
    chosen = int(np.argmax(valid))
    assert [t["chosen"] for t in tried] == [i == chosen for i in range(3)]
    assert outputs["model"] == f"distill/final/{tried[chosen]['setting']}/logistic/full/model"
    assert summary["final_setting"] == tried[chosen]["setting"]
    assert summary["distilled"] == (chosen != 0)
    # the figure is the final model's on the rows its training held out, the same for each
    held = held_out_rows(base / outputs["model"])
    assert held is not None and held.size == 30
    for t in tried:
        model = base / "distill" / "final" / t["setting"] / "logistic" / "full" / "model"
        assert np.array_equal(held_out_rows(model), held)
    # the teacher: the entry of best out-of-fold figure, said with every candidate's
    teacher = summary["teacher"]
    assert set(teacher["candidates"]) == {"mean", "stacker"}
    assert teacher["final"] == max(teacher["candidates"], key=teacher["candidates"].get)
    assert set(teacher["on the final's held-out rows"]) == {"mean", "stacker"}


@pytest.mark.slow
def test_a_teacher_worse_than_the_labels_leaves_the_twin(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A teacher whose soft labels belong to other rows: distillation cannot beat the labels
    on validation, so the twin is the final model, and the stage says so."""
    teach = distill_run.soft_targets

    def elsewhere(*args: Any, **kwargs: Any) -> sp.csr_matrix:
        targets = teach(*args, **kwargs)
        return targets[np.roll(np.arange(targets.shape[0]), 7)]

    monkeypatch.setattr(distill_run, "soft_targets", elsewhere)
    out = tmp_path / "run"
    run(tmp_path, out, "distill.lam=[0.0, 1.0]")
    stage = manifest(out)
    tried = stage["summary"]["final_tried"]
    assert [t["setting"] for t in tried] == ["labels", "lam-0"]
    assert tried[0]["chosen"] and tried[0]["valid"] > tried[1]["valid"]
    assert stage["summary"]["distilled"] is False
    assert stage["outputs"]["model"] == "distill/final/labels/logistic/full/model"
    assert "labels-only twin kept: no distillation setting beat it on validation" in stage["key"]


@pytest.mark.slow
def test_each_temperature_teaches_the_teacher_sharpened(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given: list[TopK] = []
    teach = distill_run.soft_targets

    def spy(teacher: TopK, *args: Any, **kwargs: Any) -> sp.csr_matrix:
        given.append(teacher)
        return teach(teacher, *args, **kwargs)

    monkeypatch.setattr(distill_run, "soft_targets", spy)
    out = tmp_path / "run"
    run(tmp_path, out, "distill.lam=[1.0, 0.5]", "distill.temperature=[1.0, 0.25]")
    tried = manifest(out)["summary"]["final_tried"]
    assert [(t["setting"], t["temperature"]) for t in tried] == [
        ("labels", 1.0), ("lam-0.5", 1.0), ("lam-0.5-t0.25", 0.25)
    ]  # fmt: skip
    plain, sharp = given[-2:]  # the twin is taught nothing
    expected = sharpen(plain, 0.25, Task.MULTILABEL)
    np.testing.assert_allclose(sharp.scores, expected.scores, rtol=1e-5)
    kept = plain.indices >= 0
    assert (np.abs(sharp.scores - 0.5) >= np.abs(plain.scores - 0.5) - 1e-6)[kept].all()


def _shuffled_labels(store: Dataset, out: Path) -> Dataset:
    """A copy of ``store`` whose rows carry the labels of other rows."""
    order = np.random.default_rng(0).permutation(len(store))
    columns = {"labels": store.labels[order]}
    if store.clean_labels is not None:
        columns["clean_labels"] = store.clean_labels[order]
    schema = store.layout.schema()
    with DatasetWriter(out, store.layout) as writer:
        for start, chunk in store.iter_chunks():
            arrays = {name: chunk.column(name) for name in schema.names}
            for name, labels in columns.items():
                arrays[name] = label_list_array(labels[start : start + chunk.num_rows])
            writer.write_record_batch(
                pa.RecordBatch.from_arrays([arrays[n] for n in schema.names], schema=schema)
            )
    return Dataset.open(out)


@pytest.mark.slow
def test_the_choice_never_depends_on_the_test_labels(base: Path, tmp_path: Path) -> None:
    test = _shuffled_labels(Dataset.open(base / "data" / "test"), tmp_path / "test-shuffled")
    stores = {"train": str(base / "data" / "train")}
    runs = {}
    for name, path in (("given", base / "data" / "test"), ("shuffled", test.path)):
        out = tmp_path / name
        run(tmp_path, out, recipe={**RECIPE, "data": {"store": {**stores, "test": str(path)}}})
        runs[name] = manifest(out)["summary"]
    given, shuffled = runs["given"], runs["shuffled"]
    assert [t["test"] for t in given["final_tried"]] != [t["test"] for t in shuffled["final_tried"]]
    for key in ("final_setting", "distilled"):
        assert given[key] == shuffled[key]
    assert [t["valid"] for t in given["final_tried"]] == pytest.approx(
        [t["valid"] for t in shuffled["final_tried"]], abs=1e-6
    )
    assert given["teacher"]["candidates"] == pytest.approx(shuffled["teacher"]["candidates"])


@pytest.mark.slow
def test_mixed_rows_are_taught_the_teachers_prediction_of_the_mixed_inputs(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taught = spy_fit(monkeypatch, "pseudo")
    out = tmp_path / "run"
    run(tmp_path, out, "distill.lam=[1.0, 0.5]", "distill.mixup=0.4")
    stage = manifest(out)
    assert [t["setting"] for t in stage["summary"]["final_tried"]] == [
        "labels", "lam-0.5", "lam-0.5-mixup"
    ]  # fmt: skip
    twin, plain, mixed = taught[-3:]
    assert twin is None and plain is None and mixed is not None
    train = Dataset.open(out / "data" / "train")
    held = held_out_rows(out / stage["outputs"]["model"])
    assert held is not None  # the rows the final validates on are never mixed into its rows
    assert mixed.rows.size == len(train) - held.size == len(mixed.dataset)
    trained = np.setdiff1d(np.arange(len(train)), held)
    again = mix_rows(train, tmp_path / "again", 0.4, RECIPE["seed"], rows=trained)
    assert again.manifest["source"] == mixed.dataset.manifest["source"]
    # the targets: the chosen teacher (an ensemble entry) re-applied to the mixed inputs
    teacher = stage["summary"]["teacher"]["final"]
    stores = json.loads((out / "ensemble" / "manifest.json").read_text())["outputs"]["stores"]
    entry = load_entry(out / stores[teacher])
    zoo = load_recipe(out / "recipe.yaml").zoo
    members = predict_zoo(zoo, train, mixed.dataset, out / "zoo")
    predicted = entry.predict([members[name] for name in entry.members])
    np.testing.assert_allclose(mixed.targets.toarray(), _dense(predicted, train.n_classes),
                               atol=2e-3)  # fmt: skip


def _dense(top: Any, n_classes: int) -> np.ndarray:
    out = np.zeros((top.n_samples, n_classes), np.float32)
    np.put_along_axis(out, top.indices, top.scores, axis=1)
    return out


@pytest.mark.slow
def test_webly_distill_runs_the_recipes_section_as_the_stage_does(
    base: Path, tmp_path: Path
) -> None:
    """The same section (the recipe's, as --config) on the run's zoo and ensemble: the same
    models trained on the same targets (equal config hashes), the same choices and key."""
    recipe = load_recipe(base / "recipe.yaml")
    assert recipe.distill is not None
    zoo, section = tmp_path / "zoo.yaml", tmp_path / "distill.yaml"
    zoo.write_text(yaml.safe_dump(recipe.zoo.model_dump(mode="json")))
    section.write_text(yaml.safe_dump(recipe.distill.model_dump(mode="json")))
    out = tmp_path / "cli"
    result = CliRunner().invoke(cli.app, [
        "distill", str(zoo), "--zoo-dir", str(base / "zoo"), "--ensemble", str(base / "ensemble"),
        "--data", str(base / "data" / "train"), "--test", str(base / "data" / "test"),
        "--out", str(out), "--config", str(section),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    stage = manifest(base)
    assert stage["key"] in " ".join(result.output.split())
    for tried in stage["summary"]["final_tried"]:
        store = Path("final") / tried["setting"] / "logistic" / "predictions"
        ran, called = (Predictions.open(root / store).model for root in (base / "distill", out))
        assert ran["config_hash"] == called["config_hash"], tried["setting"]


@pytest.mark.slow
def test_a_validation_split_carved_before_the_zoo_chooses_the_final_model(
    tmp_path: Path,
) -> None:
    """``data.valid_fraction``: its rows are in no training store of the run (so no fold
    model saw them), and the final model's teacher and setting are chosen on them."""
    out = tmp_path / "run"
    run(tmp_path, out, "data.valid_fraction=0.2", "distill.lam=[1.0, 0.5]")
    data = json.loads((out / "data" / "manifest.json").read_text())["outputs"]
    train, valid = Dataset.open(out / data["train"]), Dataset.open(out / data["valid"])
    assert len(train) + len(valid) == 300 and len(valid) == 60
    assert not set(train.ids) & set(valid.ids)
    assert len(np.load(out / "folds" / "folds.npy")) == len(train)
    members = Predictions.open(out / "zoo" / "logistic" / "predictions")
    assert len(members.oof.topk().indices) == len(train)
    summary = manifest(out)["summary"]
    assert summary["teacher"]["chosen on"] == "the validation split"
    assert "on the final's held-out rows" not in summary["teacher"]
    kept = next(t for t in summary["final_tried"] if t["chosen"])
    assert kept["valid"] == max(t["valid"] for t in summary["final_tried"])
    final = out / "distill" / "final" / kept["setting"] / "logistic" / "full" / "model"
    assert held_out_rows(final) is None
