"""Experiment tracking of a run (``tracking: mlflow`` in a recipe): the resolved recipe as
parameters, each stage's seconds and the evaluation's figures as metrics, every trained fold
model's per-epoch curves (training loss and validation metric, ``step`` = epoch) as metrics,
and the report and the deployed model (the export stage's folder) as artifacts, logged to
MLflow (``pip install 'webly[tracking]'``).

Where: the recipe's ``tracking.uri`` when it sets one, else ``MLFLOW_TRACKING_URI`` from the
environment (as MLflow itself reads it), else an MLflow file store in ``RUN/mlruns`` (open it
with ``mlflow ui --backend-store-uri RUN/mlruns``); the run's output says which. MLflow keeps
its file store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``, which a file-store URI
sets for this process.

One `webly run` is one MLflow run; running the same recipe again in the same run directory
(resuming) logs into the same MLflow run, whose id ``RUN/tracking.json`` keeps. A changed
recipe starts a new MLflow run, since MLflow refuses to change a logged parameter.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from webly._fs import write_atomic
from webly._optional import require
from webly.rundir import ExportRecord, RunDir

STATE_FILE = "tracking.json"
FIT_RECORDS = "**/model/fit.json"
"""A fold model's fit record (`webly.train.oof`) under a stage's folder; its ``history`` (one
`webly.train.loop.EpochStats` a trained epoch) gives the curves."""
DEPLOYED = "model"
"""The artifact folder of the export stage's model."""
_BATCH = 1000  # MLflow's most metrics in one log_batch
_PARAM_CHARS = 6000  # MLflow's longest parameter value


class Tracker(Protocol):
    """What the pipeline tells a tracker."""

    def stage(self, name: str, manifest: Mapping[str, Any]) -> None:
        """A stage finished (or was found done): its manifest."""

    def results(self, results: Mapping[str, Any]) -> None:
        """The evaluate stage's ``results.json``."""

    def artifact(self, path: Path, folder: str) -> None:
        """A file to keep beside the run (the report), under ``folder``."""

    def end(self, failed: bool) -> None:
        """The run ended (``failed``: a stage or member failed)."""

    def where(self) -> str | None:
        """Where the run is logged, for the run's output (None: nowhere)."""


class NoTracker:
    """No tracking (a recipe without ``tracking:``)."""

    def where(self) -> str | None:
        return None

    def stage(self, name: str, manifest: Mapping[str, Any]) -> None:
        pass

    def results(self, results: Mapping[str, Any]) -> None:
        pass

    def artifact(self, path: Path, folder: str) -> None:
        pass

    def end(self, failed: bool) -> None:
        pass


class MlflowTracker:
    """Logs a webly run into one MLflow run (see the module docstring).

    Parameters
    ----------
    run : the run directory
    recipe : the resolved recipe, as parsed YAML (a mapping of sections)
    uri : MLflow tracking URI; None: `tracking_uri`'s (``MLFLOW_TRACKING_URI``, else a file
        store in ``RUN/mlruns``)
    experiment : MLflow experiment name (made when missing)
    """

    def __init__(
        self, run: Path, recipe: Mapping[str, Any], uri: str | None, experiment: str
    ) -> None:
        mlflow = _import_mlflow()
        self.mlflow = mlflow
        uri = tracking_uri(run, uri)
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.uri, self.experiment, self.run = uri, experiment, run
        self.state = run / STATE_FILE
        params = dict(_flatten(recipe))
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        self.run_id = self._resumed(digest, uri)
        if self.run_id is None:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = (
                found.experiment_id if found else self.client.create_experiment(experiment)
            )
            created = self.client.create_run(
                experiment_id, run_name=run.name, tags={"webly.run": str(run.absolute())}
            )
            self.run_id = created.info.run_id
            self.client.log_batch(
                self.run_id,
                params=[mlflow.entities.Param(k, v[:_PARAM_CHARS]) for k, v in params.items()],
            )
            state = {"run_id": self.run_id, "uri": uri, "recipe_hash": digest}
            write_atomic(self.state, json.dumps(state).encode())
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def stage(self, name: str, manifest: Mapping[str, Any]) -> None:
        seconds = manifest.get("seconds")
        if isinstance(seconds, int | float):
            self.client.log_metric(self.run_id, f"{name}.seconds", float(seconds))
        if manifest.get("state") != "done":
            return
        self._curves(name)
        exported = RunDir(self.run).read(ExportRecord) if name == "export" else None
        if exported is None or not exported.model.is_dir():
            return
        if not self.client.list_artifacts(self.run_id, DEPLOYED):  # once a run
            self.client.log_artifacts(self.run_id, str(exported.model), DEPLOYED)

    def where(self) -> str:
        return f"MLflow run {self.run_id} of experiment {self.experiment!r} at {self.uri}"

    def _curves(self, stage: str) -> None:
        """Per-epoch ``<stage>.<member>.<fold>.loss`` and ``.valid_metric`` (step: epoch) of
        every fold model the stage's folder holds, each once per MLflow run."""
        metrics = []
        for record in sorted((self.run / stage).glob(FIT_RECORDS)):
            try:
                history = json.loads(record.read_text()).get("history") or []
            except (OSError, ValueError):
                continue
            where = record.parent.parent.relative_to(self.run).parts  # stage, member, fold
            prefix = _metric_name(".".join(where))
            if not history or self.client.get_metric_history(self.run_id, f"{prefix}.loss"):
                continue
            for epoch in history:
                step = int(epoch["epoch"])
                for key, column in (("loss", "loss"), ("valid_metric", "metric")):
                    value = epoch.get(column)
                    if isinstance(value, int | float):
                        metrics.append(
                            self.mlflow.entities.Metric(
                                f"{prefix}.{key}", float(value), _now_ms(), step
                            )
                        )
        for start in range(0, len(metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + _BATCH])

    def results(self, results: Mapping[str, Any]) -> None:
        for row in results.get("rows", []):
            model = str(row.get("model", "?"))
            for column, value in row.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.client.log_metric(self.run_id, _metric_key(model, column), value)

    def artifact(self, path: Path, folder: str) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def end(self, failed: bool) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")

    def _resumed(self, digest: str, uri: str) -> str | None:
        """The MLflow run id of an earlier ``webly run`` of the same recipe into the same
        store, None when there is none."""
        try:
            state = json.loads(self.state.read_text())
        except (OSError, ValueError):
            return None
        if state.get("recipe_hash") != digest or state.get("uri") != uri:
            return None
        run_id = state.get("run_id")
        return run_id if isinstance(run_id, str) else None


def tracking_uri(run: Path, uri: str | None) -> str:
    """The MLflow tracking URI of a run: ``uri`` (the recipe's), else ``MLFLOW_TRACKING_URI``,
    else a file store in ``RUN/mlruns``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or (run / "mlruns").absolute().as_uri()


def open_tracker(tracking: Any, run: Path, recipe: Mapping[str, Any]) -> Tracker:
    """The tracker a recipe's ``tracking`` section asks for (`webly.config.TrackingConfig`,
    or None for `NoTracker`)."""
    if tracking is None:
        return NoTracker()
    return MlflowTracker(run, recipe, tracking.uri, tracking.experiment)


# --------------------------------------------------------------------------- internals


def _import_mlflow() -> Any:
    return require("mlflow", "tracking: mlflow", "remove tracking from the recipe")


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(key.path, value as text)`` of every leaf of a parsed recipe; lists stay whole."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, json.dumps(node) if not isinstance(node, str) else node


def _metric_key(model: str, column: str) -> str:
    """An MLflow metric name (letters, digits, ``_-. /``): ``evaluate.mlp.GAP_20``."""
    return _metric_name(f"evaluate.{model}.{column}")


def _metric_name(text: str) -> str:
    """``text`` with what MLflow refuses in a metric name (not a letter, digit or ``_-. /``)
    made ``_``."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in text)


def _now_ms() -> int:
    return int(time.time() * 1000)
