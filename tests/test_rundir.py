"""`webly.rundir`: the run directory's layout, versioned manifests, typed stage records, declared
inputs and the members a run ends with; `webly.resume`. That no package imports another in a
cycle is tests/test_import_graph.py's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from webly import resume
from webly.core import Task
from webly.errors import DataError
from webly.pipeline import STAGES
from webly.rundir import (
    MANIFEST,
    RECIPE_HEADER,
    STAGE_NAMES,
    VERSION,
    CleanRecord,
    DataRecord,
    RunDir,
    UndeclaredInput,
    ZooRecord,
)


def write(run: RunDir, stage: str, outputs: Any, summary: Any, state: str = "done") -> None:
    run.write_manifest(
        stage, {"config_hash": "h", "state": state, "outputs": outputs, "summary": summary}
    )


def record(run: RunDir, made: Any, state: str = "done") -> None:
    write(run, made.STAGE, **made.to_json(run.root), state=state)


def test_layout_and_claim(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    assert run.folder("zoo") == tmp_path / "run" / "zoo"
    assert run.manifest_file("zoo") == tmp_path / "run" / "zoo" / MANIFEST
    assert not run.is_run()
    run.claim()  # a new folder becomes a run's
    run.recipe_file.write_text(RECIPE_HEADER + "seed: 0\n")
    assert run.is_run() and run.recipe_text() == "seed: 0\n"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a run directory"):
        RunDir(other).claim()
    with pytest.raises(DataError, match="not a run directory"):
        RunDir(other).check_run()
    assert tuple(stage.name for stage in STAGES) == STAGE_NAMES  # one order of the stages


def test_a_manifest_of_another_version_is_a_one_line_error(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.manifest("data") is None
    write(run, "data", None, None)
    assert run.manifest("data")["version"] == VERSION  # type: ignore[index]
    old = {"format": "webly-stage", "format_version": 1, "stage": "data", "state": "done"}
    run.manifest_file("data").write_text(json.dumps(old))
    with pytest.raises(DataError) as err:
        run.manifest("data")
    message = str(err.value)
    assert "\n" not in message and str(run.manifest_file("data")) in message
    assert "version 1" in message and "run the recipe again into a new folder" in message


def test_typed_records_round_trip(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    data = DataRecord(
        train=tmp_path / "data" / "train", test=Path("/elsewhere/test"), unlabeled=None,
        rows={"train": 10, "test": 5}, classes=3, task="multiclass", levels=["video"],
        noise=None,
    )  # fmt: skip
    assert data.task is Task.MULTICLASS  # a Task however it was given
    record(run, data)
    saved = json.loads(run.manifest_file("data").read_text())
    assert saved["outputs"] == {
        "train": "data/train",
        "test": "/elsewhere/test",
        "unlabeled": None,
        "valid": None,
    }
    assert saved["summary"]["classes"] == 3
    assert run.read(DataRecord) == data and run.need(DataRecord).task is Task.MULTICLASS
    zoo = ZooRecord(members={"mlp": tmp_path / "zoo/mlp/predictions"}, table=[{"model": "mlp"}])
    record(run, zoo)
    assert json.loads(run.manifest_file("zoo").read_text())["summary"] == {
        "members": [{"model": "mlp"}]
    }  # the field ``table`` is kept under the key ``members``
    assert run.read(ZooRecord) == zoo


def test_a_missing_key_is_a_one_line_error_naming_stage_file_and_key(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    write(run, "zoo", {"stores": {}}, {"members": []})  # ``members`` renamed
    with pytest.raises(DataError) as err:
        run.read(ZooRecord)
    message = str(err.value)
    assert "\n" not in message
    assert "zoo stage" in message and str(run.manifest_file("zoo")) in message
    assert "outputs key 'members'" in message


def test_a_stage_that_made_nothing_has_no_record(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.read(CleanRecord) is None  # never ran
    write(run, "clean", None, None)  # not in the recipe
    assert run.read(CleanRecord) is None
    write(run, "zoo", {"members": {}}, {"members": []}, state="running")
    assert run.read(ZooRecord) is None  # not finished
    with pytest.raises(DataError, match="the zoo stage has not finished"):
        run.need(ZooRecord)


def test_an_undeclared_input_is_refused(tmp_path: Path) -> None:
    run = RunDir(tmp_path).only(("data",))
    assert run.read(DataRecord) is None
    with pytest.raises(UndeclaredInput, match="the zoo stage is not among the inputs"):
        run.read(ZooRecord)
    compress = next(stage for stage in STAGES if stage.name == "compress")
    assert "data" in compress.reads  # it weighs candidates on the data stage's stores


def test_members_are_the_clean_stages_after_clean_else_the_zoos(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.members() == {}
    zoo = {"a": tmp_path / "zoo/a/predictions", "b": tmp_path / "zoo/b/predictions"}
    record(run, ZooRecord(members=zoo, table=[]))
    assert run.members() == zoo
    cleaned = {"a": tmp_path / "clean/round-1/zoo/a/predictions"}
    record(
        run,
        CleanRecord(
            members=cleaned, report=tmp_path / "clean/round-0/report", metric="accuracy",
            rounds=[], best=1,
        ),
    )  # fmt: skip
    assert run.members() == cleaned


def test_the_first_noise_report_is_round_0s_in_manifests_with_and_without_reports(
    tmp_path: Path,
) -> None:
    run = RunDir(tmp_path)
    assert run.first_noise_report() is None  # no clean stage
    reports = [tmp_path / f"clean/round-{r}/report" for r in range(3)]
    kept = CleanRecord(
        members={}, report=reports[1], metric="accuracy", rounds=[], best=2, reports=reports
    )
    record(run, kept)
    assert run.read(CleanRecord) == kept and run.first_noise_report() == reports[0]
    outputs = {"members": {}, "report": "clean/round-0/report"}  # written before ``reports``
    summary = {"metric": "accuracy", "rounds": [], "best": 1}
    write(run, "clean", outputs, summary)
    assert run.need(CleanRecord).reports == [] and run.first_noise_report() == reports[0]
    write(run, "clean", {**outputs, "report": "clean/round-1/report"}, {**summary, "best": 2})
    with pytest.raises(DataError) as err:
        run.first_noise_report()
    message = str(err.value)
    assert "\n" not in message and str(run.manifest_file("clean")) in message
    assert "names no first-round noise report" in message


def test_resume_is_done_only_under_the_same_hash(tmp_path: Path) -> None:
    path = tmp_path / "step" / "record.json"
    resume.claim(path.parent, path.name, "one", {"config": 1})
    assert resume.read_record(path) == {"config": 1, "config_hash": "one", "state": "running"}
    assert resume.finished(path, "one") is None  # running: a killed step is never done
    (path.parent / "partial").write_text("kept")
    resume.mark(path, "one", resume.DONE, {"config": 1})
    assert resume.finished(path, "one") is not None and resume.finished(path, "two") is None
    resume.claim(path.parent, path.name, "one", {"config": 1})  # same hash: work kept
    assert (path.parent / "partial").is_file()
    resume.claim(path.parent, path.name, "two", {"config": 2})  # another: emptied
    assert not (path.parent / "partial").exists()
