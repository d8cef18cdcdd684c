"""What compress and export read from a run directory (``webly run RECIPE --out RUN``).

A run directory is recognised by its ``recipe.yaml``; each stage's ``RUN/<stage>/manifest.json``
records its state and, under ``outputs``, the paths it made (relative to ``RUN``, or absolute
for stores read in place):

- ``data``: the ``train`` (and ``test``) stores;
- ``zoo``: ``members``, member id -> its prediction store ``zoo/<id>/predictions``, whose
  folder holds the fold models ``fold-<f>/model``; ``clean``: the same for the members of its
  last round, which the ensemble combines in place of the zoo's (`run_members`);
- ``ensemble``: ``stores``, entry -> prediction store (``blend-<method>``, the stacker's
  ``stacker/predictions`` beside its fold models ``stacker/model``);
- ``distill``: ``model``, the final network's folder (``distill/final/<id>/full/model``) and
  ``final``, its id -> its prediction store;
- ``longtail``: the same two for the final network with its classifier re-balanced
  (``longtail/final/model``), which a run deploys in place of distill's (`final_stage`);
- ``evaluate``: ``results``, the run's figures (``results.json``: the split and labels they
  were measured on, and one row per model).

`export_run` exports the final network with the run's figures and training store recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webly.data.store import Dataset, Layout
from webly.deploy.export import export_onnx
from webly.deploy.exported import ExportedModel
from webly.deploy.options import PredictOptions
from webly.errors import ConfigError, DataError

RECIPE_FILE, STAGE_MANIFEST = "recipe.yaml", "manifest.json"
_NO_FINAL = (
    "add distill.final to the recipe (e.g. distill: {final: {name: mlp}}) and run it again "
    "(webly run RECIPE --out RUN)"
)


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a run directory (it holds ``recipe.yaml``)."""
    return (Path(path) / RECIPE_FILE).is_file()


def stage_manifest(run: Path, stage: str) -> dict[str, Any] | None:
    """``RUN/<stage>/manifest.json``, None when the stage never ran."""
    path = run / stage / STAGE_MANIFEST
    if not path.is_file():
        return None
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable ({err}); run the recipe again") from None
    return manifest


def stage_output(run: Path, stage: str, key: str) -> Any:
    """What a finished stage recorded under ``key`` in its outputs; None when it did not (or
    did not finish)."""
    manifest = stage_manifest(run, stage)
    if manifest is None or manifest.get("state") != "done":
        return None
    return manifest.get("outputs", {}).get(key)


FINAL_STAGES = ("longtail", "distill")
"""Stages that record a final network (outputs ``model`` and ``final``); a run deploys the
first one that did."""
RESULT_ROW = {"longtail": "longtail", "distill": "final"}
"""The label of each final stage's row in ``results.json``: ``"<label>: <id>"``."""


def final_stage(run: str | Path) -> str | None:
    """The stage whose final network the run in ``run`` deploys: ``longtail`` when that stage
    finished with one (distill's network, re-balanced), else ``distill`` when it made one;
    None when neither did."""
    for stage in FINAL_STAGES:
        if stage_output(Path(run), stage, "model") is not None:
            return stage
    return None


@dataclass(frozen=True)
class RunFinal:
    """The final distilled network of a run: its id, folder and the run's figures for it.

    ``metrics``: its row of ``results.json`` (e.g. ``{"GAP@20": 0.81, "BCE": 0.05}``), None
    when the run measured none (no test labels: it has no out-of-fold predictions);
    ``measured_on``: the split, labels and rows they were measured on, in words; ``stage``:
    the stage that made the network (`final_stage`).
    """

    run: Path
    id: str
    folder: Path
    metrics: dict[str, float] | None
    measured_on: str | None
    stage: str = "distill"


def run_final(run: str | Path) -> RunFinal:
    """The final network of the run in ``run`` (its long-tail-adjusted form when the run made
    one); a `ConfigError` when it has none."""
    run = Path(run)
    stage = final_stage(run)
    if stage is None:
        manifest = stage_manifest(run, "distill")
        state = "never ran" if manifest is None else f"is {manifest.get('state')}"
        if manifest is not None and manifest.get("state") == "done":
            state = "made no final model"
        raise ConfigError(f"{run} has no final model (its distill stage {state}); {_NO_FINAL}")
    folder = stage_output(run, stage, "model")
    (final_id,) = stage_output(run, stage, "final")
    results = run_results(run)
    metrics = measured_on = None
    if results is not None:
        label = f"{RESULT_ROW[stage]}: {final_id}"
        row = next((r for r in results["rows"] if r["model"] == label), None)
        if row is not None:
            metrics = {
                name: float(row[name])
                for name in (results["metric"], results["loss"])
                if row.get(name) is not None
            }
            measured_on = (
                f"{results['split']} split, {results['labels']} labels, "
                f"{results['rows_scored']} rows"
            )
    return RunFinal(run, final_id, run / folder, metrics or None, measured_on, stage)


def run_results(run: Path) -> dict[str, Any] | None:
    """The run's ``results.json``, None before the evaluate stage finished."""
    path = stage_output(run, "evaluate", "results")
    if path is None:
        return None
    results: dict[str, Any] = json.loads((run / path).read_text())
    return results


def run_members(run: Path) -> dict[str, Path]:
    """``{member id: prediction store}`` of the zoo members the run's ensemble combines: the
    clean stage's last round when it ran, else the zoo stage's (``{}`` before either ran)."""
    paths = stage_output(run, "clean", "members") or stage_output(run, "zoo", "members") or {}
    return {name: run / path for name, path in paths.items()}


def run_store(run: Path, split: str) -> Path | None:
    """The ``train`` or ``test`` store the data stage made or pointed at; None without one."""
    path = stage_output(run, "data", split)
    return run / path if path is not None else None


def export_run(
    run: str | Path,
    out: str | Path,
    *,
    layout: Layout | None = None,
    metrics: Mapping[str, float] | None = None,
    predict_options: PredictOptions | None = None,
    opset: int = 17,
    overwrite: bool = False,
) -> ExportedModel:
    """Export the final distilled network of the run in ``run`` to ``out`` (`export_onnx`).

    ``model.json`` records the run's figures for the network (its row of ``results.json``:
    GAP@k or accuracy, and the loss, on the test split when the run has test labels) under
    ``metrics``, and under ``run`` the run folder, the final model's id and folder, the
    training store and what the figures were measured on. The inputs are those of the training
    store (``layout`` overrides it, e.g. when the store moved); ``metrics`` adds figures (and
    wins over the run's). A run without a final model is a one-line `ConfigError`, before
    anything is written.
    """
    run = Path(run)
    final = run_final(run)
    train = run_store(run, "train")
    if layout is None:
        if train is None:
            raise DataError(f"{run}: its data stage did not finish; finish the run first")
        layout = Dataset.open(train).layout
    figures = {**(final.metrics or {}), **(metrics or {})}
    provenance = {
        "folder": str(run.resolve()),
        "final": final.id,
        "model_folder": str(final.folder.resolve()),
        "training_store": str(train.resolve()) if train is not None else None,
        "metrics_on": final.measured_on,
    }
    return export_onnx(
        final.folder, out, layout=layout, metrics=figures or None,
        predict_options=predict_options, run=provenance, opset=opset, overwrite=overwrite,
    )  # fmt: skip
