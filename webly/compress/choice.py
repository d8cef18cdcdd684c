"""What a run's size-budget choice chose, exported whole: one folder `load_exported` runs.

`export_choice` exports the candidate `webly.compress.budget.choose_under_budget` chose:

- a final network as a `webly.deploy.export_onnx` folder (its compressed weights when a
  compressed variant was chosen);
- a blend of members or the stacker as an ensemble export (`webly.deploy.ensemble`), every
  member's fold networks compressed first when the chooser weighed them compressed.

`export_best` chooses and exports in one call. `run_compress` and `run_export` are the
``compress`` and ``export`` stages' work on their recipe sections, which ``webly compress RUN``
and ``webly export RUN`` build from ``--config`` and ``--set`` and run the same way. This module
reads the run directory (`webly.rundir.RunDir`) and compresses; `webly.deploy` writes and
checks the folders.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from webly.compress.budget import BudgetResult, Candidate, choose_under_budget, read_choice
from webly.compress.quantize import compress_network
from webly.config import DEFAULT_MAX_SIZE, CompressConfig, ExportConfig
from webly.data.store import Dataset, Layout
from webly.deploy.ensemble import STACKER_DIR, MemberFolds, export_ensemble
from webly.deploy.export import export_onnx
from webly.deploy.exported import ExportedModel, shipped_bytes
from webly.deploy.options import PredictOptions
from webly.ensemble.fit import STACKER
from webly.errors import ConfigError, DataError
from webly.models.gbdt import CONFIG_FILE as TREES_FILE
from webly.predictions import Predictions
from webly.rundir import DataRecord, EnsembleRecord, RunDir
from webly.sizes import format_size


def run_compress(
    section: CompressConfig,
    run: str | Path | RunDir,
    out: str | Path | None,
    *,
    overwrite: bool = False,
) -> BudgetResult:
    """The compress stage on its recipe ``section``: among the run's candidates, the most
    accurate on validation rows within ``section.max_size`` (and ``max_latency_ms``), written
    to ``out`` (None: nothing written); `choose_under_budget` with the section's fields."""
    return choose_under_budget(
        run, section.max_size, out, max_latency_ms=section.max_latency_ms,
        measure_latency=section.measure_latency, methods=tuple(section.methods),
        min_elements=section.min_elements, overwrite=overwrite,
    )  # fmt: skip


def run_export(
    section: ExportConfig,
    run: str | Path | RunDir,
    out: str | Path,
    *,
    choice: Path | None,
    layout: Layout | None = None,
    overwrite: bool = False,
) -> ExportedModel:
    """The export stage on its recipe ``section``: the candidate the compress stage chose
    (``choice``, its folder), or without one the best within `DEFAULT_MAX_SIZE`
    (`export_best`), exported to ``out`` with the section's predict options and opset;
    ``layout`` as `export_candidate`."""
    options = PredictOptions.from_json(section.predict)
    if choice is not None:
        return export_choice(
            choice, out, layout=layout, predict_options=options, opset=section.opset,
            overwrite=overwrite,
        )  # fmt: skip
    _, exported = export_best(
        run, out, DEFAULT_MAX_SIZE, layout=layout, predict_options=options, opset=section.opset,
        overwrite=overwrite,
    )  # fmt: skip
    return exported


def export_best(
    run: str | Path | RunDir,
    out: str | Path,
    max_size: int | str = DEFAULT_MAX_SIZE,
    *,
    max_latency_ms: float | None = None,
    layout: Layout | None = None,
    predict_options: PredictOptions | None = None,
    opset: int = 17,
    overwrite: bool = False,
) -> tuple[BudgetResult, ExportedModel]:
    """Choose what the run in ``run`` deploys within ``max_size`` (and ``max_latency_ms``) on
    validation rows (`choose_under_budget`) and export it to ``out`` (`export_choice`); the
    choice is weighed in a temporary folder, so nothing but ``out`` is written."""
    with tempfile.TemporaryDirectory() as work:
        chosen = Path(work) / "choice"
        result = choose_under_budget(run, max_size, chosen, max_latency_ms=max_latency_ms)
        exported = export_choice(
            chosen, out, layout=layout, predict_options=predict_options, opset=opset,
            overwrite=overwrite, max_bytes=result.max_bytes,
        )  # fmt: skip
    return result, exported


def export_choice(
    folder: str | Path,
    out: str | Path,
    *,
    layout: Layout | None = None,
    predict_options: PredictOptions | None = None,
    opset: int = 17,
    overwrite: bool = False,
    max_bytes: int | None = None,
) -> ExportedModel:
    """Export the candidate a `choose_under_budget` output ``folder`` records (``choice.json``)
    to ``out``: the network the folder holds, or the ensemble from the run it names; the
    arguments as `export_candidate`."""
    folder = Path(folder)
    run, candidate = read_choice(folder)
    return export_candidate(
        run, candidate, out, network=folder if candidate.kind == "final" else None,
        stacker=folder / STACKER_DIR if candidate.refit else None, layout=layout,
        predict_options=predict_options, opset=opset, overwrite=overwrite, max_bytes=max_bytes,
    )  # fmt: skip


def export_candidate(
    run: str | Path,
    candidate: Candidate,
    out: str | Path,
    *,
    network: Path | None = None,
    stacker: Path | None = None,
    layout: Layout | None = None,
    predict_options: PredictOptions | None = None,
    opset: int = 17,
    overwrite: bool = False,
    max_bytes: int | None = None,
) -> ExportedModel:
    """Export ``candidate`` of the run in ``run`` to the folder ``out`` (built in a temporary
    folder and renamed into place; nothing is left there on error).

    Parameters
    ----------
    run : the run directory the candidate was weighed in
    candidate : a final network (then ``network`` is its folder, compressed or not), a blend of
        members or a stacker (the run's, or with ``refit`` the one fitted in ``stacker``)
    layout : the training store's layout (the run's own training store by default)
    predict_options : how `webly.deploy.predict` predicts with it (test-time views take
        frame-level groups)
    max_bytes : refuse an export whose files (every one shipped) exceed it, naming both sizes

    Returns
    -------
    ExportedModel
        The export loaded back through `load_exported`, so every check has passed.
    """
    run = Path(run)
    layout = layout or _run_layout(run)
    figures = {"validation": candidate.metric, "test": candidate.test_metric}
    metrics = {k: v for k, v in figures.items() if v is not None} or None
    provenance = {
        "folder": str(run.resolve()),
        "candidate": candidate.name,
        "kind": candidate.kind,
        "training_store": str(RunDir(run).need(DataRecord).train),
    }
    if candidate.kind == "final":
        if network is None:
            raise ConfigError(f"{candidate.name} is a network; give the folder that holds it")
        exported = export_onnx(
            network, out, layout=layout, metrics=metrics, predict_options=predict_options,
            run=provenance, opset=opset, overwrite=overwrite,
        )  # fmt: skip
    else:
        if candidate.kind == STACKER and stacker is None:
            if candidate.refit:
                raise ConfigError(
                    f"{candidate.name} is a stacker fitted by the chooser; export the choice "
                    "folder webly compress RUN --out DIR wrote"
                )
            stacker = run_stacker(run)
        combine = stacker if stacker is not None else candidate.blend
        if combine is None:
            raise DataError(f"{candidate.name}: its choice records no blend rule; choose again")
        with tempfile.TemporaryDirectory() as scratch:
            exported = export_ensemble(
                candidate.name, _members(run, candidate, Path(scratch)), out, combine=combine,
                layout=layout, predict_options=predict_options, metrics=metrics,
                run=provenance, opset=opset, overwrite=overwrite,
            )  # fmt: skip
    shipped = shipped_bytes(exported.folder)
    if max_bytes is not None and shipped > max_bytes:
        shutil.rmtree(exported.folder)
        raise ConfigError(
            f"{candidate.name} ships {format_size(shipped)} ({shipped:,} bytes), over the "
            f"{format_size(max_bytes)} budget its stored size fitted; raise max_size"
        )
    return exported


def _run_layout(run: Path) -> Layout:
    return Dataset.open(RunDir(run).need(DataRecord).train).layout


def _members(run: Path, candidate: Candidate, scratch: Path) -> list[MemberFolds]:
    """The members of ``candidate`` as the run trained them, each fold network compressed into
    ``scratch`` as the chooser weighed it when ``candidate.compression`` says so."""
    paths = RunDir(run).members()
    missing = [name for name in candidate.members if name not in paths]
    if missing:
        raise DataError(
            f"{run}: member {missing[0]} of {candidate.name} was not trained in this run; choose "
            "again (webly compress RUN --out FOLDER)"
        )
    members = []
    for name in candidate.members:
        store = paths[name]
        folds = sorted(store.parent.glob("fold-*/model"), key=lambda p: int(p.parent.name[5:]))
        if candidate.compression is not None:  # the graph keeps the compressed weights
            folds = [
                fold
                if (fold / TREES_FILE).is_file()
                else compress_network(
                    fold,
                    scratch / name / f"fold-{f}",
                    candidate.compression,  # type: ignore[arg-type]
                    min_elements=candidate.min_elements,
                ).folder
                for f, fold in enumerate(folds)
            ]
        members.append(MemberFolds(name, Predictions.open(store).k, store.parent, tuple(folds)))
    return members


def run_stacker(run: Path) -> Path:
    """The folder of the run's fitted stacker (``ensemble/stacker/model``)."""
    ensemble = RunDir(run).read(EnsembleRecord)
    if ensemble is None or STACKER not in ensemble.stores:
        raise DataError(f"{run}: its ensemble stage fitted no stacker; choose again")
    return ensemble.stores[STACKER].parent / "model"
