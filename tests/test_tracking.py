"""``tracking: mlflow``: the recipe as parameters, stage seconds and the evaluation as metrics,
the report as an artifact, in an MLflow file store; a resumed run logs into the same MLflow
run, a changed recipe into a new one; a missing mlflow package is a one-line error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlflow
import pytest

from tests.test_pipeline import RECIPE, run
from webly.config import TrackingConfig, parse_recipe
from webly.errors import ConfigError
from webly.rundir import ExportRecord, RunDir
from webly.tracking import open_tracker, tracking_uri


@pytest.mark.slow
def test_a_run_is_logged_to_mlflow_and_resumes_its_mlflow_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    recipe = {**RECIPE, "tracking": "mlflow"}
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result, printed = run(tmp_path, out, recipe=recipe)
    assert not result.failed
    assert "tracking: MLflow run" in printed and (out / "mlruns").as_uri() in printed
    client = mlflow.MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "webly"]
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED"
    assert logged.data.params["zoo.k"] == "20" and logged.data.params["folds.n"] == "3"
    metrics = logged.data.metrics
    assert metrics["zoo.seconds"] > 0
    gap = next(r["GAP@20"] for r in result.results["rows"] if r["model"] == "mlp")  # type: ignore[index]
    assert metrics["evaluate.mlp.GAP_20"] == pytest.approx(gap)
    artifacts = [a.path for a in client.list_artifacts(logged.info.run_id, "report")]
    assert artifacts == ["report/report.html"]
    curve = client.get_metric_history(logged.info.run_id, "zoo.mlp.fold-0.loss")
    assert [m.step for m in curve] == list(range(1, len(curve) + 1)) and len(curve) >= 1

    run(tmp_path, out, recipe=recipe)  # resumed: the same MLflow run
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [
        logged.info.run_id
    ]
    history = client.get_metric_history(logged.info.run_id, "zoo.seconds")
    assert len(history) == 2 and history[0].value == history[1].value  # skipped: same figure

    run(tmp_path, out, "evaluate.k=5", recipe=recipe)  # changed: a new MLflow run
    assert len(client.search_runs([experiment.experiment_id])) == 2


def test_tracking_shorthand_and_bad_kind() -> None:
    assert TrackingConfig.model_validate("mlflow") == TrackingConfig(kind="mlflow")
    with pytest.raises(ConfigError, match=r"tracking\.kind: Input should be 'mlflow'"):
        parse_recipe({**RECIPE, "tracking": "wandb"})
    typo = r"tracking\.experimnt: unknown key; did you mean 'experiment'\?"
    with pytest.raises(ConfigError, match=typo):
        parse_recipe({**RECIPE, "tracking": {"kind": "mlflow", "experimnt": "x"}})


def test_missing_mlflow_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(
        ConfigError,
        match=r"tracking: mlflow needs the mlflow package, which is "
        r"not installed; pip install 'webly\[tracking\]', or remove tracking",
    ):
        run(tmp_path, tmp_path / "run", recipe={**RECIPE, "tracking": "mlflow"})


def _fake_run(run: Path) -> None:
    """A run directory holding what the tracker reads: a zoo fold model's fit record with two
    epochs of history, and an export stage's model folder."""
    fit = run / "zoo" / "mlp" / "fold-0" / "model" / "fit.json"
    fit.parent.mkdir(parents=True)
    history = [
        {"epoch": 1, "loss": 0.9, "metric": 0.5, "seconds": 1.0, "samples_per_s": 9.0, "lr": 0.1},
        {"epoch": 2, "loss": 0.7, "metric": 0.6, "seconds": 1.0, "samples_per_s": 9.0, "lr": 0.1},
    ]
    fit.write_text(json.dumps({"epochs": 2, "best_epoch": 2, "history": history}))
    (run / "export" / "model").mkdir(parents=True)
    (run / "export" / "model" / "model.onnx").write_bytes(b"onnx")
    (run / "export" / "model" / "model.json").write_text("{}")
    exported = ExportRecord(model=run / "export" / "model", files={}, metrics=None)
    RunDir(run).write_manifest(
        "export", {"config_hash": "h", "state": "done", **exported.to_json(run)}
    )


def test_mlflow_tracking_uri_is_honoured_and_curves_and_the_model_are_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = (tmp_path / "elsewhere").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    run_dir = tmp_path / "run"
    _fake_run(run_dir)
    tracker = open_tracker(TrackingConfig(kind="mlflow"), run_dir, {"seed": 0})
    assert f"at {store}" in str(tracker.where())
    for _ in range(2):  # a resumed run logs each curve and the model once
        tracker.stage("zoo", {"state": "done", "seconds": 1.5})
        tracker.stage("export", RunDir(run_dir).manifest("export") or {})
    tracker.end(failed=False)
    assert not (run_dir / "mlruns").exists()
    client = mlflow.MlflowClient(tracking_uri=store)
    (experiment,) = [e for e in client.search_experiments() if e.name == "webly"]
    (logged,) = client.search_runs([experiment.experiment_id])
    loss = client.get_metric_history(logged.info.run_id, "zoo.mlp.fold-0.loss")
    assert [(m.step, m.value) for m in loss] == [(1, 0.9), (2, 0.7)]
    valid = client.get_metric_history(logged.info.run_id, "zoo.mlp.fold-0.valid_metric")
    assert [(m.step, m.value) for m in valid] == [(1, 0.5), (2, 0.6)]
    files = {a.path for a in client.list_artifacts(logged.info.run_id, "model")}
    assert files == {"model/model.onnx", "model/model.json"}


def test_tracking_uri_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path, None) == (tmp_path / "mlruns").absolute().as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking_uri(tmp_path, None) == "http://mlflow:5000"
    assert tracking_uri(tmp_path, "file:///x") == "file:///x"  # the recipe's wins
