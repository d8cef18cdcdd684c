"""``tracking: mlflow``: the recipe as parameters, stage seconds and the evaluation as metrics,
the report as an artifact, in an MLflow file store; a resumed run logs into the same MLflow
run, a changed recipe into a new one; a missing mlflow package is a one-line error."""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import pytest

from tests.test_pipeline import RECIPE, run
from webly.config import TrackingConfig, parse_recipe
from webly.errors import ConfigError


def test_a_run_is_logged_to_mlflow_and_resumes_its_mlflow_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    recipe = {**RECIPE, "tracking": "mlflow"}
    result, _ = run(tmp_path, out, recipe=recipe)
    assert not result.failed
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
    with pytest.raises(ConfigError, match=r"tracking: mlflow needs the mlflow package; install"):
        run(tmp_path, tmp_path / "run", recipe={**RECIPE, "tracking": "mlflow"})
