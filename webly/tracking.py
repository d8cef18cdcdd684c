"""Experiment tracking of a run (``tracking: mlflow`` in a recipe): the resolved recipe as
parameters, each stage's seconds and the evaluation's figures as metrics, the report as an
artifact, logged to MLflow.

By default the store is an MLflow file store in ``RUN/mlruns`` (open it with
``mlflow ui --backend-store-uri RUN/mlruns``); ``tracking.uri`` points elsewhere (another
folder, or an ``http://`` tracking server). MLflow keeps its file store in maintenance mode
behind ``MLFLOW_ALLOW_FILE_STORE``, which a file-store URI sets for this process.

One `webly run` is one MLflow run; running the same recipe again in the same run directory
(resuming) logs into the same MLflow run, whose id ``RUN/tracking.json`` keeps. A changed
recipe starts a new MLflow run, since MLflow refuses to change a logged parameter.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from webly.errors import ConfigError
from webly.stages.context import write_atomic

STATE_FILE = "tracking.json"
MLFLOW_PIN = "mlflow-skinny==3.17.2"
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


class NoTracker:
    """No tracking (a recipe without ``tracking:``)."""

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
    uri : MLflow tracking URI; None: a file store in ``RUN/mlruns``
    experiment : MLflow experiment name (made when missing)
    """

    def __init__(
        self, run: Path, recipe: Mapping[str, Any], uri: str | None, experiment: str
    ) -> None:
        mlflow = _import_mlflow()
        uri = uri or (run / "mlruns").absolute().as_uri()
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = mlflow.MlflowClient(tracking_uri=uri)
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


def open_tracker(tracking: Any, run: Path, recipe: Mapping[str, Any]) -> Tracker:
    """The tracker a recipe's ``tracking`` section asks for (`webly.config.TrackingConfig`,
    or None for `NoTracker`)."""
    if tracking is None:
        return NoTracker()
    return MlflowTracker(run, recipe, tracking.uri, tracking.experiment)


# --------------------------------------------------------------------------- internals


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ConfigError(
            f"tracking: mlflow needs the mlflow package; install it (pip install {MLFLOW_PIN}) "
            "or remove tracking from the recipe"
        ) from None
    return mlflow


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(key.path, value as text)`` of every leaf of a parsed recipe; lists stay whole."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, json.dumps(node) if not isinstance(node, str) else node


def _metric_key(model: str, column: str) -> str:
    """An MLflow metric name (letters, digits, ``_-. /``): ``evaluate.mlp.GAP_20``."""
    text = f"evaluate.{model}.{column}"
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in text)
