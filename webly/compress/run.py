"""The final network of a run directory (``webly run RECIPE --out RUN``) and its export.

What a run recorded is read through `webly.rundir.RunDir`: its final network is the long-tail
stage's when that stage made one (distill's network, re-balanced), else the distill stage's
(`RunDir.final`); its figures are its row of the evaluate stage's ``results.json``.

`export_run` exports the final network with the run's figures and training store recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from webly.data.store import Dataset, Layout
from webly.deploy.export import export_onnx
from webly.deploy.exported import ExportedModel
from webly.deploy.options import PredictOptions
from webly.errors import ConfigError
from webly.rundir import DataRecord, RunDir

_NO_FINAL = (
    "add distill.final to the recipe (e.g. distill: {final: {name: mlp}}) and run it again "
    "(webly run RECIPE --out RUN)"
)


@dataclass(frozen=True)
class RunFinal:
    """The final distilled network of a run: its id, folder and the run's figures for it.

    ``metrics``: its row of ``results.json`` (e.g. ``{"GAP@20": 0.81, "BCE": 0.05}``), None
    when the run measured none (no test labels: it has no out-of-fold predictions);
    ``measured_on``: the split, labels and rows they were measured on, in words; ``stage``:
    the stage that made the network (`RunDir.final`).
    """

    run: Path
    id: str
    folder: Path
    metrics: dict[str, float] | None
    measured_on: str | None
    stage: str = "distill"


def run_final(run: str | Path | RunDir) -> RunFinal:
    """The final network of the run in ``run`` (its long-tail-adjusted form when the run made
    one); a `ConfigError` when it has none."""
    rundir = RunDir.of(run)
    final = rundir.final()
    if final is None or final.model is None:
        manifest = rundir.manifest("distill")
        state = "never ran" if manifest is None else f"is {manifest.get('state')}"
        if manifest is not None and manifest.get("state") == "done":
            state = "made no final model"
        raise ConfigError(
            f"{rundir.root} has no final model (its distill stage {state}); {_NO_FINAL}"
        )
    (final_id,) = final.final
    results = rundir.results()
    metrics = measured_on = None
    if results is not None:
        label = f"{final.ROW}: {final_id}"
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
    return RunFinal(rundir.root, final_id, final.model, metrics or None, measured_on, final.STAGE)


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
    train = RunDir(run).need(DataRecord).train
    if layout is None:
        layout = Dataset.open(train).layout
    figures = {**(final.metrics or {}), **(metrics or {})}
    provenance = {
        "folder": str(run.resolve()),
        "final": final.id,
        "model_folder": str(final.folder.resolve()),
        "training_store": str(train.resolve()),
        "metrics_on": final.measured_on,
    }
    return export_onnx(
        final.folder, out, layout=layout, metrics=figures or None,
        predict_options=predict_options, run=provenance, opset=opset, overwrite=overwrite,
    )  # fmt: skip
