"""The stage pipeline: a fresh run writes every stage, a re-run skips everything, a change
re-runs its stage and what is downstream of it (a changed member alone), failed members, a
SIGKILL mid-zoo resumed, `run_status`, stores read in place."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from rich.console import Console

import webly.distill.teachers as distill_teachers
import webly.pipeline as pipeline
from tests.data.test_yt8m import make_video_files
from tests.train.test_oof import spy_fit
from webly.config import load_recipe
from webly.data import Dataset
from webly.errors import ConfigError, DataError
from webly.metrics import gap_at_k
from webly.models.network import load_network
from webly.pipeline import STAGES, RunResult, run_recipe, run_status
from webly.predictions import Predictions
from webly.resume import DONE, STATE, read_record
from webly.rundir import DataRecord, RunDir
from webly.stages import StageContext, check_data, data_config, make_data

RECIPE: dict[str, Any] = {
    "seed": 0,
    "data": {
        "synth": {
            "kind": "yt8m-like", "videos": 200, "classes": 10, "max_frames": 8,
            "unlabeled_videos": 0,
        }
    },
    "folds": {"n": 3},
    "zoo": {
        "k": 20,
        "train": {"epochs": 1, "batch_size": 64, "lr": 1e-3},
        "members": [{"name": "logistic"}, {"name": "mlp", "hparams": {"hidden": [16]}}],
    },
}  # fmt: skip
NAMES = [stage.name for stage in STAGES]
OPTIONAL = ("clean", "ensemble", "distill", "longtail", "compress", "export")
"""The stages a recipe without their section records as "not in the recipe"."""


def from_stage(stage: str) -> list[str]:
    """``stage`` and every stage after it."""
    return NAMES[NAMES.index(stage) :]


def ran(result: RunResult) -> list[str]:
    """The stages a run ran (did not skip), in order."""
    return [s.name for s in result.stages if not s.skipped]


def run(
    tmp_path: Path, out: Path, *overrides: str, recipe: dict[str, Any] | None = None
) -> tuple[RunResult, str]:
    """Run ``recipe`` (default `RECIPE`) into ``out``; the result and what it printed."""
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe or RECIPE))
    console = Console(record=True, width=200)
    result = run_recipe(path, out, list(overrides), console)
    return result, console.export_text()


def files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its inode and modification time (ns)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def manifest(out: Path, stage: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / stage / "manifest.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult, str]:
    """One fresh run of `RECIPE`, copied by the tests that change it."""
    tmp = tmp_path_factory.mktemp("base")
    result, printed = run(tmp, tmp / "run")
    return tmp / "run", result, printed


@pytest.fixture
def copy(base: tuple[Path, RunResult, str], tmp_path: Path) -> Path:
    shutil.copytree(base[0], tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.slow
def test_fresh_run_writes_every_stage(base: tuple[Path, RunResult, str]) -> None:
    out, result, printed = base
    assert [s.name for s in result.stages] == NAMES
    assert NAMES[:4] == ["data", "folds", "zoo", "clean"]
    assert NAMES[4:] == [
        "ensemble", "distill", "longtail", "evaluate", "compress", "export", "report"
    ]  # fmt: skip
    assert all(s.state == "done" and not s.skipped for s in result.stages)
    assert not result.failed
    for name in NAMES:
        stage = manifest(out, name)
        assert (stage["stage"], stage["state"], stage["format"]) == (name, "done", "webly-stage")
        assert len(stage["config_hash"]) == 64 and stage["seconds"] >= 0 and stage["key"]
        assert stage["started"] <= stage["finished"] and stage["finished"].endswith("Z")
        assert (f"{name}: done in" in printed) == (name not in OPTIONAL)
    assert list(manifest(out, "zoo")["inputs"]) == ["data", "folds"]
    assert load_recipe(out / "recipe.yaml") == load_recipe(out.parent / "recipe.yaml")
    train, test = Dataset.open(out / "data" / "train"), Dataset.open(out / "data" / "test")
    assert (len(train), len(test)) == (200, 50)
    assert manifest(out, "data")["outputs"] == {
        "train": "data/train",
        "test": "data/test",
        "unlabeled": None,
        "valid": None,
    }
    folds = np.load(out / "folds" / "folds.npy")
    assert folds.dtype == np.int8 and folds.shape == (200,)
    np.testing.assert_array_equal(folds, train.folds(3, 0))
    assert manifest(out, "folds")["summary"]["rows"] == np.bincount(folds).tolist()

    results = json.loads((out / "evaluate" / "results.json").read_text())
    assert results == result.results
    assert (results["split"], results["labels"], results["metric"]) == ("test", "clean", "GAP@20")
    assert [row["model"] for row in results["rows"]] == ["logistic", "mlp", "zoo average"]
    stores = [Predictions.open(out / "zoo" / m / "predictions") for m in ("logistic", "mlp")]
    for row, store in zip(results["rows"], stores, strict=False):
        assert row["GAP@20"] == store.fold_metrics["test"]["metric"]  # read back, not recomputed
        assert row["BCE"] == store.fold_metrics["test"]["loss"] and row["frame-level"] is False
    # the members' folds are the folds artifact
    assert stores[0].model["folds"] == 3
    average = (stores[0].dense("test") + stores[1].dense("test")) / 2
    assert test.clean_labels is not None
    expected = gap_at_k(average, test.clean_labels, k=20)
    assert results["rows"][-1]["GAP@20"] == pytest.approx(expected, abs=1e-6)
    assert results["rows"][-1]["BCE"] is not None  # 10 classes <= k: stored dense, loss exact
    assert [s.state for s in run_status(out)] == ["done"] * len(NAMES)
    for stage in OPTIONAL:
        assert manifest(out, stage)["key"] == "not in the recipe"


def test_stages_not_in_the_recipe_print_nothing(base: tuple[Path, RunResult, str]) -> None:
    out, _, printed = base
    lines = printed.splitlines()
    assert not any(line.startswith(OPTIONAL) for line in lines)
    assert "not in the recipe" not in printed
    assert "zoo: running" in lines and "evaluate: running" in lines
    for stage in OPTIONAL:  # still recorded, so that later stages and webly status read them
        assert manifest(out, stage)["key"] == "not in the recipe"


def test_stage_seconds_add_up_every_attempt(copy: Path, tmp_path: Path) -> None:
    zoo = manifest(copy, "zoo")
    # a failed attempt (same config) recorded 1000 s; the retry adds its own
    (copy / "zoo" / "manifest.json").write_text(
        json.dumps({**zoo, "state": "failed", "seconds": 1000.0})
    )
    result, printed = run(tmp_path, copy)
    assert ran(result) == from_stage("zoo")
    assert manifest(copy, "zoo")["seconds"] >= 1000.0
    assert "zoo: done in 10" in printed  # 1000.x s
    # an attempt killed while running counts from its start to the last file it wrote
    zoo = manifest(copy, "zoo")
    started = zoo["attempt_started"]
    (copy / "zoo" / "manifest.json").write_text(
        json.dumps({**zoo, "state": "running", "seconds": 500.0})
    )
    written = copy / "zoo" / "mlp" / "config.json"
    os.utime(written, (started + 20.0, started + 20.0))
    os.utime(copy / "zoo" / "manifest.json", (started, started))
    for other in (copy / "zoo").rglob("*"):
        if other.is_file() and other != written:
            os.utime(other, (started, started))
    run(tmp_path, copy)
    assert manifest(copy, "zoo")["seconds"] >= 520.0
    # a changed config starts the count again
    run(tmp_path, copy, "zoo.members=[{name: logistic}]")
    assert manifest(copy, "zoo")["seconds"] < 500.0


def test_time_left_counts_the_training_of_the_stages_still_to_run(copy: Path) -> None:
    recipe = load_recipe(copy / "recipe.yaml")
    assert pipeline._training(recipe) == {"zoo": {"logistic": 3, "mlp": 3}}  # 1 epoch x 3 folds
    assert pipeline._to_do(recipe, RunDir(copy)) == set()  # all done: nothing left
    more = load_recipe(
        copy / "recipe.yaml",
        [
            "clean={rounds: 2}",
            "ensemble.blends=[mean]",
            "distill.students=[{name: mlp, id: mlp_student, train: {epochs: 4}}]",
            "distill.final={name: logistic}",
        ],
    )
    assert pipeline._training(more) == {
        "zoo": {"logistic": 3, "mlp": 3},
        "clean": {"logistic": 6, "mlp": 6},
        "distill": {"mlp_student": 36, "logistic": 3},  # at each lam of the default grid
    }
    grids = load_recipe(copy / "recipe.yaml", [
        "ensemble.blends=[mean]", "distill.students=[{name: mlp, id: mlp_student}]",
        "distill.final={name: logistic}", "distill.temperature=[1.0, 2.0]",
        "distill.frame_views=0.5",
    ])  # fmt: skip
    # the twin and lam 0.5 and 0.2 at 2 temperatures; the final model's 4 again with views
    assert pipeline._training(grids)["distill"] == {"mlp_student": 15, "logistic": 9}
    changed = load_recipe(copy / "recipe.yaml", ["zoo.members.1.hparams.hidden=[32]"])
    assert pipeline._to_do(changed, RunDir(copy)) == set(from_stage("zoo"))


def test_rerun_skips_everything_and_writes_nothing(copy: Path, tmp_path: Path) -> None:
    before = files(copy)
    result, printed = run(tmp_path, copy)
    assert all(s.skipped for s in result.stages) and not result.failed
    assert printed.count("done, skipped") == len(NAMES) - len(OPTIONAL)
    assert files(copy) == before
    assert not any(line.startswith(OPTIONAL) for line in printed.splitlines())
    assert result.results is not None and result.results["rows"][-1]["model"] == "zoo average"


def test_changing_one_member_retrains_only_that_member(copy: Path, tmp_path: Path) -> None:
    before = files(copy)
    result, _ = run(tmp_path, copy, "zoo.members.1.hparams.hidden=[32]")
    assert ran(result) == from_stage("zoo")
    after = files(copy)
    for name in ("logistic", "mlp"):
        store = [f for f in before if f.startswith(f"zoo/{name}/predictions/")]
        assert store
        unchanged = all(after.get(f) == before[f] for f in store)
        assert unchanged == (name == "logistic"), name
    assert Predictions.open(copy / "zoo" / "mlp" / "predictions").model["config"]["hparams"] == {
        "hidden": [32]
    }
    assert all(after[f] == before[f] for f in before if f.startswith(("data/", "folds/")))
    assert load_recipe(copy / "recipe.yaml").zoo.members[1].hparams == {"hidden": [32]}


def test_changing_folds_reruns_folds_zoo_and_evaluate(copy: Path, tmp_path: Path) -> None:
    before = files(copy)
    result, _ = run(tmp_path, copy, "folds.n=4")
    assert ran(result) == from_stage("folds")
    after = files(copy)
    assert after["data/manifest.json"] == before["data/manifest.json"]
    assert np.load(copy / "folds" / "folds.npy").max() == 3
    for name in ("logistic", "mlp"):
        path = f"zoo/{name}/predictions/manifest.json"
        assert after[path] != before[path]
        assert Predictions.open(copy / "zoo" / name / "predictions").model["folds"] == 4


def test_evaluate_k_rescores_members_from_their_stored_predictions(
    copy: Path, tmp_path: Path
) -> None:
    result, _ = run(tmp_path, copy, "evaluate.k=5")
    assert ran(result) == from_stage("evaluate")
    assert result.results is not None and result.results["metric"] == "GAP@5"
    test = Dataset.open(copy / "data" / "test")
    store = Predictions.open(copy / "zoo" / "logistic" / "predictions")
    assert test.clean_labels is not None
    expected = gap_at_k(store.test.topk(), test.clean_labels, k=5)
    assert result.results["rows"][0]["GAP@5"] == pytest.approx(expected, abs=1e-9)


def test_removed_member_is_kept_on_disk_and_not_evaluated(copy: Path, tmp_path: Path) -> None:
    before = files(copy)
    (copy / "zoo" / "wild" / "fold-0" / "model").mkdir(parents=True)  # failed in fold 2
    result, printed = run(tmp_path, copy, "zoo.members=[{name: logistic}]")
    assert "kept, not evaluated (no longer in the recipe): mlp\n" in printed
    assert "zoo: wild never finished training (1 fold model saved); no longer in" in printed
    assert result.results is not None
    assert [row["model"] for row in result.results["rows"]] == ["logistic", "zoo average"]
    assert files(copy / "zoo" / "mlp") == {
        f.removeprefix("zoo/mlp/"): v for f, v in before.items() if f.startswith("zoo/mlp/")
    }
    assert list(manifest(copy, "zoo")["outputs"]["members"]) == ["logistic"]
    # put back, it is found finished: nothing trained
    result, _ = run(tmp_path, copy)
    assert files(copy / "zoo" / "mlp") == {
        f.removeprefix("zoo/mlp/"): v for f, v in before.items() if f.startswith("zoo/mlp/")
    }
    assert result.results is not None and len(result.results["rows"]) == 3


@pytest.mark.slow
def test_failed_member_fails_the_zoo_and_the_run_goes_on(copy: Path, tmp_path: Path) -> None:
    wild = {"name": "logistic", "id": "wild", "train": {"lr": 1e30}}
    result, _ = run(tmp_path, copy, f"zoo.members=[{{name: logistic}}, {json.dumps(wild)}]")
    assert result.failed and "member wild failed" in result.errors[0]
    assert "training loss is nan" in result.errors[0]
    assert [s.state for s in result.stages] == ["done", "done", "failed"] + ["done"] * (
        len(NAMES) - 3
    )
    zoo = manifest(copy, "zoo")
    assert zoo["state"] == "failed" and zoo["errors"] == result.errors
    assert "1 of 2 members done, 1 failed" in zoo["key"]
    assert result.results is not None
    rows = {row["model"]: row for row in result.results["rows"]}
    assert "training loss is nan" in rows["wild"]["error"] and "GAP@20" not in rows["wild"]
    assert rows["zoo average"]["GAP@20"] == pytest.approx(rows["logistic"]["GAP@20"], abs=2e-3)
    assert [s.state for s in run_status(copy)] == [s.state for s in result.stages]
    # a failed stage is not skipped: the next run retries the failed member only
    before = files(copy / "zoo" / "logistic")
    again, _ = run(tmp_path, copy, f"zoo.members=[{{name: logistic}}, {json.dumps(wild)}]")
    assert ran(again) == from_stage("zoo")
    assert files(copy / "zoo" / "logistic") == before


def test_status_tells_stale_and_not_run_stages(copy: Path) -> None:
    recipe = (copy / "recipe.yaml").read_text()
    (copy / "recipe.yaml").write_text(recipe.replace("evaluate: {k: 20}", "evaluate: {k: 10}"))
    stale = len(from_stage("evaluate"))
    assert [s.state for s in run_status(copy)] == ["done"] * (len(NAMES) - stale) + [
        "stale"
    ] * stale
    (copy / "recipe.yaml").write_text(recipe.replace("hidden: [16]", "hidden: [8]"))
    assert [s.state for s in run_status(copy)] == ["done", "done"] + ["stale"] * (len(NAMES) - 2)
    (copy / "recipe.yaml").write_text(recipe)
    shutil.rmtree(copy / "folds")
    statuses = run_status(copy)
    assert [s.state for s in statuses] == ["done", "not run"] + ["stale"] * (len(NAMES) - 2)
    assert statuses[0].key == "200 train / 50 test rows, 10 classes (multilabel)"
    assert statuses[1].finished is None and statuses[2].seconds is not None


def test_status_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))  # a recipe, not a run
    with pytest.raises(DataError, match=r"not a run directory \(no recipe\.yaml made by webly"):
        run_status(tmp_path)


def test_out_must_be_new_empty_or_a_run(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"holds files but no recipe\.yaml made by webly run"):
        run(tmp_path, tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    with pytest.raises(DataError, match="is not a run directory"):
        run(tmp_path, tmp_path)  # the folder of the recipe itself: its recipe.yaml is kept
    assert yaml.safe_load((tmp_path / "recipe.yaml").read_text()) == RECIPE


def test_stores_are_read_in_place(base: tuple[Path, RunResult, str], tmp_path: Path) -> None:
    stores = tmp_path / "stores"
    shutil.copytree(base[0] / "data", stores)
    before = files(stores)
    paths = {"train": str(stores / "train"), "test": str(stores / "test")}
    out = tmp_path / "run"
    result, _ = run(tmp_path, out, recipe={**RECIPE, "data": {"store": paths}})
    assert not result.failed and files(stores) == before  # never modified
    assert [p.name for p in (out / "data").iterdir()] == ["manifest.json"]  # never copied
    assert manifest(out, "data")["outputs"] == paths | {"unlabeled": None, "valid": None}
    assert result.results == base[1].results | {"rows": result.results["rows"]}
    # a validation split carved out of a store: both parts written to the run, the store read
    carved = tmp_path / "carved"
    zoo = {**RECIPE["zoo"], "members": [{"name": "logistic"}]}
    recipe = {**RECIPE, "data": {"store": paths, "valid_fraction": 0.25}, "zoo": zoo}
    result, _ = run(tmp_path, carved, recipe=recipe)
    outputs = manifest(carved, "data")["outputs"]
    assert not result.failed and files(stores) == before
    assert outputs == {"train": "data/train", "test": paths["test"], "unlabeled": None,
                       "valid": "data/valid"}  # fmt: skip
    given = Dataset.open(stores / "train")
    train, valid = Dataset.open(carved / "data" / "train"), Dataset.open(carved / "data" / "valid")
    assert len(valid) == len(given) // 4 and len(train) + len(valid) == len(given)
    assert sorted([*train.ids, *valid.ids]) == sorted(given.ids)
    # a store changed in place makes the data stage and everything after it stale
    store_manifest = stores / "train" / "manifest.json"
    store_manifest.write_text(store_manifest.read_text().replace("{", "{ ", 1))
    assert [s.state for s in run_status(out)] == ["stale"] * len(NAMES)


def test_missing_store_fails_before_anything_is_written(tmp_path: Path) -> None:
    recipe = {**RECIPE, "data": {"store": {"train": str(tmp_path / "nope")}}}
    with pytest.raises(DataError, match=r"nope: no manifest\.json \(it does not exist\)"):
        run(tmp_path, tmp_path / "run", recipe=recipe)
    assert not (tmp_path / "run").exists()


def test_yt8m_source_imports_one_glob_a_split(tmp_path: Path) -> None:
    make_video_files(tmp_path / "tf", n_files=3, per_file=4)
    globs = {"train": str(tmp_path / "tf" / "v[01].tfrecord"), "test": str(tmp_path / "tf" / "v2*")}
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump({**RECIPE, "data": {"yt8m": globs}}))
    recipe = load_recipe(recipe_file)
    check_data(recipe)
    assert [len(files) for files in data_config(recipe)["files"].values()] == [2, 1]
    assert "unlabeled" not in data_config(recipe)["yt8m"]  # the hash of runs made before it
    context = StageContext(recipe, RunDir(tmp_path / "run").only(()), "data", Console(quiet=True))
    data = make_data(context).record
    assert isinstance(data, DataRecord)
    run = tmp_path / "run"
    assert (data.train, data.test, data.unlabeled) == (run / "data/train", run / "data/test", None)
    assert data.rows == {"train": 8, "test": 4} and data.classes == 3862
    assert Dataset.open(tmp_path / "run" / "data" / "train").ids[0] == "f0r0"
    # a validation split of its own files: imported beside the others
    recipe_file.write_text(yaml.safe_dump(
        {**RECIPE, "data": {"yt8m": {**globs, "train": globs["train"].replace("[01]", "0"),
                                     "valid": str(tmp_path / "tf" / "v1*")}}}
    ))  # fmt: skip
    context = StageContext(
        load_recipe(recipe_file), RunDir(tmp_path / "run2").only(()), "data", Console(quiet=True)
    )
    data = make_data(context).record
    assert isinstance(data, DataRecord) and data.valid == tmp_path / "run2" / "data" / "valid"
    assert data.rows == {"train": 4, "test": 4, "valid": 4}
    assert Dataset.open(data.valid).ids[0] == "f1r0"
    (tmp_path / "tf" / "v2.tfrecord").unlink()
    with pytest.raises(DataError, match=r"data\.yt8m\.test: no files match '.*v2\*'"):
        check_data(recipe)


KILLED_RUN_MEMBERS = [{"name": "logistic"}, {"name": "mlp", "id": "slow", "train": {"epochs": 30}}]


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_command(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump({**RECIPE, "zoo": {**RECIPE["zoo"], "members": KILLED_RUN_MEMBERS}})
    )
    out = tmp_path / "run"
    command = [sys.executable, "-m", "webly", "run", str(recipe), "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = out / "zoo" / "logistic" / "config.json"  # says done once its store is whole

    def finished() -> bool:
        return (read_record(record) or {}).get(STATE) == DONE

    deadline = time.monotonic() + 120
    while not finished() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert finished()
    assert [s.state for s in run_status(out)] == ["done", "done", "unfinished"] + ["not run"] * (
        len(NAMES) - 3
    )
    logistic = files(out / "zoo" / "logistic")
    data = files(out / "data")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "data: done, skipped" in result.stdout and "folds: done, skipped" in result.stdout
    assert files(out / "zoo" / "logistic") == logistic and files(out / "data") == data
    assert [s.state for s in run_status(out)] == ["done"] * len(NAMES)
    for stage in OPTIONAL:
        assert manifest(out, stage)["key"] == "not in the recipe"
    assert Predictions.open(out / "zoo" / "slow" / "predictions").model["id"] == "slow"


SECOND_LEVEL = [
    "ensemble.blends=[mean, greedy]",
    "ensemble.stacker={rounds: 20, min_data_in_leaf: 5, threads: 1}",
    "distill.lam=0.5",  # one setting: its models in distill/students/<id> (tests/stages: a grid)
    "distill.students=[{name: mlp, id: mlp_student, hparams: {hidden: [16]}}]",
    "distill.final={name: logistic}",
]


@pytest.mark.slow
def test_ensemble_and_distill_stages(copy: Path, tmp_path: Path) -> None:
    result, _ = run(tmp_path, copy, *SECOND_LEVEL)
    assert ran(result) == from_stage("ensemble")
    assert not result.failed
    ensemble = manifest(copy, "ensemble")
    assert set(ensemble["outputs"]["stores"]) == {"mean", "greedy", "stacker"}
    teacher = ensemble["outputs"]["teacher"]
    entries = ensemble["summary"]["entries"]
    assert entries[teacher]["oof_metric"] == max(e["oof_metric"] for e in entries.values())
    train = Dataset.open(copy / "data" / "train")
    for name, path in ensemble["outputs"]["stores"].items():
        store = Predictions.open(copy / path)
        assert len(store.oof) == len(train) and len(store.test) == 50, name
    assert result.results is not None
    rows = {row["model"]: row for row in result.results["rows"]}
    # the mean blend is the zoo's plain average, scored from its stored top-k
    assert rows["blend: mean"]["GAP@20"] == pytest.approx(rows["zoo average"]["GAP@20"], abs=2e-3)
    for label in ("blend: greedy", "stacker", "student: mlp_student", "final: logistic"):
        assert 0 < rows[label]["GAP@20"] <= 1, label
    assert {rows["logistic"]["in ensemble"], rows["mlp"]["in ensemble"]} <= {True, False}
    student = Predictions.open(copy / "distill" / "students" / "mlp_student" / "predictions")
    assert student.model["distilled"] and student.model["folds"] == 3
    final = manifest(copy, "distill")["outputs"]
    assert load_network(copy / final["model"]).config["name"] == "logistic"
    assert "final logistic: gap@20" in manifest(copy, "distill")["key"]

    # another teacher re-trains the students and the final model, nothing upstream
    result, _ = run(tmp_path, copy, *SECOND_LEVEL, "distill.teacher=mean")
    assert ran(result) == from_stage("distill")


@pytest.mark.slow
def test_students_learn_the_teachers_predictions_of_unlabeled_rows(
    base: tuple[Path, RunResult, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taught = spy_fit(monkeypatch, "pseudo")
    stores = {split: str(base[0] / "data" / split) for split in ("train", "test")}
    # the test rows again as unlabeled ones: the teacher's predictions of them are known
    recipe = {**RECIPE, "data": {"store": {**stores, "unlabeled": stores["test"]}}}
    out = tmp_path / "run"
    result, _ = run(tmp_path, out, *SECOND_LEVEL, "distill.unlabeled={max_rows: 30}",
                    "distill.teacher=students", recipe=recipe)  # fmt: skip
    assert not result.failed
    students, final = taught[-4:-1], taught[-1]  # 3 folds of mlp_student, then the final model
    assert all(p is students[0] for p in students) and students[0].rows.tolist() == list(range(30))
    ensemble = manifest(out, "ensemble")["outputs"]
    teacher = Predictions.open(out / ensemble["stores"][ensemble["teacher"]])
    np.testing.assert_allclose(
        students[0].targets.toarray(), teacher.test.dense(np.arange(30)), atol=2e-3
    )
    student = Predictions.open(out / "distill" / "students" / "mlp_student" / "predictions")
    assert student.model["pseudo_rows"] == 30
    np.testing.assert_allclose(  # the second round: taught by the student's own predictions
        final.targets.toarray(), student.test.dense(np.arange(30)), atol=2e-3
    )
    final_store = Predictions.open(out / manifest(out, "distill")["outputs"]["final"]["logistic"])
    assert final_store.model["pseudo_rows"] == 30
    assert manifest(out, "distill")["summary"]["unlabeled_rows"] == 30
    report = (out / "report" / "report.html").read_text()
    assert "also learnt the teacher&#39;s predictions of 30 unlabeled rows" in report
    # a distill stage killed before its manifest: predicted rows and trained models are reused
    (out / "distill" / "manifest.json").unlink()
    trained, predicted = len(taught), []
    monkeypatch.setattr(distill_teachers, "predict_zoo", lambda *a, **k: predicted.append(a))
    result, _ = run(tmp_path, out, *SECOND_LEVEL, "distill.unlabeled={max_rows: 30}",
                    "distill.teacher=students", recipe=recipe)  # fmt: skip
    assert ran(result) == from_stage("distill") and not predicted and len(taught) == trained


def test_unlabeled_distillation_needs_an_unlabeled_split(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"distill\.unlabeled: the data has no unlabeled split"):
        run(tmp_path, tmp_path / "run", *SECOND_LEVEL, "distill.unlabeled={}")
    assert not (tmp_path / "run").exists()


def test_student_above_the_size_budget_fails_before_training(copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"distill\.students: mlp_student has .* KB of float32 "
                       r"weights, above distill\.max_size 1 KB; shrink its hparams"):  # fmt: skip
        run(tmp_path, copy, *SECOND_LEVEL, "distill.max_size=1KB")
    assert manifest(copy, "ensemble")["state"] == "done"
    assert manifest(copy, "distill")["state"] == "failed"
    assert not (copy / "distill" / "students").exists()


@pytest.mark.slow
def test_compress_and_export_stages(copy: Path, tmp_path: Path) -> None:
    # the labels-only final (lam 1): a distilled one has no validation figure to be chosen on
    recipe = [*(o for o in SECOND_LEVEL if not o.startswith("distill.lam")), "distill.lam=1.0"]
    result, _ = run(tmp_path, copy, *recipe, "compress.max_size=1GB", "export={}")
    assert not result.failed and ran(result) == from_stage("ensemble")
    choice = json.loads((copy / "compress" / "choice" / "choice.json").read_text())
    frontier = json.loads((copy / "compress" / "choice" / "frontier.json").read_text())
    assert frontier["chosen"] == choice["name"] and frontier["max_bytes"] == 10**9
    best = max(c["metric"] for c in frontier["candidates"] if c["metric"] is not None)
    assert choice["metric"] == best  # everything fits 1 GB: the most accurate candidate
    exported = json.loads((copy / "export" / "model" / "model.json").read_text())
    assert exported["run"]["candidate"] == choice["name"]  # export ships the choice
    assert exported["metrics"] == {"validation": choice["metric"], "test": choice["test_metric"]}
    # a budget only the final network's smallest form fits: compress writes it, export takes it
    small = min(c["size"] for c in frontier["candidates"] if c["name"].startswith("final"))
    assert small < min(c["size"] for c in frontier["candidates"] if c["kind"] != "final")
    result, _ = run(tmp_path, copy, *recipe, f"compress.max_size={small}", "export={}")
    assert ran(result) == from_stage("compress")
    assert manifest(copy, "compress")["outputs"]["kind"] == "final"
    smallest = min(
        (c for c in frontier["candidates"] if c["kind"] == "final"), key=lambda c: c["size"]
    )
    assert f"{smallest['name']} exported" in manifest(copy, "export")["key"]
    assert (copy / "export" / "model" / "model.onnx").is_file()


@pytest.mark.slow
def test_clean_stage_reuses_the_zoo_as_round_0_and_feeds_the_ensemble(
    copy: Path, tmp_path: Path
) -> None:
    zoo_files = files(copy / "zoo")
    result, _ = run(
        tmp_path, copy, "clean.rounds=1", "ensemble.blends=[mean]", "ensemble.stacker=null"
    )
    assert not result.failed and files(copy / "zoo") == zoo_files  # round 0 trained nothing
    assert (copy / "clean" / "round-0" / "zoo").is_symlink()
    clean = manifest(copy, "clean")
    assert [row["round"] for row in clean["summary"]["rounds"]] == [0, 1]
    assert clean["summary"]["rounds"][1]["dropped"] > 0
    assert set(clean["outputs"]["members"]) == {"logistic", "mlp"}
    valid = [row["valid_metric"] for row in clean["summary"]["rounds"]]
    best = clean["summary"]["best"]
    assert best == int(np.argmax(valid))  # the round the given labels validate best
    kept = f"clean/round-{best}/zoo/"
    assert all(p.startswith(kept) for p in clean["outputs"]["members"].values())
    assert manifest(copy, "ensemble")["summary"]["members"] == ["logistic", "mlp"]
    mean = Predictions.open(copy / "ensemble" / "blend-mean")
    cleaned = [Predictions.open(copy / p) for p in clean["outputs"]["members"].values()]
    expected = (cleaned[0].dense("test") + cleaned[1].dense("test")) / 2
    np.testing.assert_allclose(mean.dense("test"), expected, atol=2e-3)
    assert_scored(result, copy, clean["outputs"]["members"])
    assert RunDir(copy).first_noise_report() == copy / "clean" / "round-0" / "report"
    # round 1 kept (round 0 validated best here): the stages reading clean score its members
    round_1 = {m: f"clean/round-1/zoo/{m}/predictions" for m in ("logistic", "mlp")}
    outputs, summary = {**clean["outputs"], "members": round_1}, {**clean["summary"], "best": 1}
    RunDir(copy).write_manifest("clean", {**clean, "outputs": outputs, "summary": summary})
    result, _ = run(
        tmp_path, copy, "clean.rounds=1", "ensemble.blends=[mean]", "ensemble.stacker=null"
    )
    assert ran(result) == from_stage("ensemble")
    assert_scored(result, copy, round_1)
    zoo_mlp = Predictions.open(copy / "zoo" / "mlp" / "predictions").fold_metrics["test"]
    assert result.results is not None and result.results["rows"][1]["BCE"] != zoo_mlp["loss"]


def assert_scored(result: RunResult, run: Path, members: dict[str, str]) -> None:
    """The evaluate stage's row of each of ``members`` (id -> store, relative to ``run``) holds
    its store's test figures."""
    assert result.results is not None
    rows = {row["model"]: row for row in result.results["rows"]}
    for name, path in members.items():
        figures = Predictions.open(run / path).fold_metrics["test"]
        assert rows[name]["GAP@20"] == figures["metric"] and rows[name]["BCE"] == figures["loss"]
