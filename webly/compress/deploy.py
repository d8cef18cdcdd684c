"""Deploy what a run's size-budget choice chose, whole: one folder `load_exported` runs.

`export_choice` writes the candidate `webly.compress.budget.choose_under_budget` chose:

- a final network: an `webly.compress.export.export_onnx` folder (its compressed weights when
  a compressed variant was chosen);
- a blend of members or the stacker: an *ensemble* export::

      model.json               kind "ensemble": the classes, the feature groups the members
                               read (each at its own level), each member's id, fold folders
                               and top-k, how they combine (``combine``: the blend's method,
                               names and weights, or ``stacker``), the run's figures and every
                               shipped file's size and SHA-256
      members/<id>/fold-<f>/   each fold model as ``model.onnx`` + ``model.json`` (an
                               `export_onnx` folder without the weights file: the graph holds
                               them), or a LightGBM member's as the run saved it (``lgbm.json``
                               and its boosters' text files, run by LightGBM)
      stacker/                 the stacker's manifest and LightGBM text models (its own
                               pickle-free format, `webly.ensemble.stack.Stacker.load`)

  `webly.compress.exported.ExportedEnsemble` predicts as the run did: each member the mean of
  its fold graphs' probabilities, cut to the member's top-k with scores rounded to float16 (as
  the run's prediction stores hold them, which the blends and the stacker were fitted on), then
  the blend or the stacker.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import webly
from webly._fs import sha256_file, write_json
from webly.compress.budget import BudgetResult, Candidate, choose_under_budget, read_choice
from webly.compress.export import export_onnx
from webly.compress.exported import (
    EXPORT,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ExportedModel,
    load_exported,
)
from webly.compress.inputs import model_level
from webly.compress.options import PredictOptions
from webly.compress.quantize import compress_network
from webly.data.store import Dataset, FeatureSpec, Layout, atomic_output
from webly.ensemble.budget import format_size
from webly.ensemble.fit import STACKER
from webly.errors import ConfigError, DataError
from webly.models.gbdt import CONFIG_FILE as TREES_FILE
from webly.models.gbdt import LgbmModel
from webly.predictions import Predictions
from webly.rundir import DataRecord, EnsembleRecord, RunDir

MEMBERS_DIR, STACKER_DIR = "members", "stacker"
DEFAULT_MAX_SIZE = "1GB"
"""The size budget of an export that names none: the YouTube-8M 2018 challenge's."""


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
    predict_options : how `webly.compress.predict` predicts with it (test-time views take
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
            network, out, layout=layout,
            metrics={k: v for k, v in figures.items() if v is not None} or None,
            predict_options=predict_options, run=provenance, opset=opset, overwrite=overwrite,
        )  # fmt: skip
    else:
        if candidate.kind == STACKER and stacker is None:
            if candidate.refit:
                raise ConfigError(
                    f"{candidate.name} is a stacker fitted by the chooser; export the folder "
                    "compress --max-size --out wrote"
                )
            stacker = run_stacker(run)
        exported = _export_ensemble(
            run, candidate, Path(out), layout, predict_options or PredictOptions(), provenance,
            figures, opset, overwrite, stacker,
        )  # fmt: skip
    shipped = shipped_bytes(exported.folder)
    if max_bytes is not None and shipped > max_bytes:
        shutil.rmtree(exported.folder)
        raise ConfigError(
            f"{candidate.name} ships {format_size(shipped)} ({shipped:,} bytes), over the "
            f"{format_size(max_bytes)} budget its stored size fitted; raise --max-size"
        )
    return exported


def shipped_bytes(folder: Path) -> int:
    """Bytes of every file of an export folder."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _run_layout(run: Path) -> Layout:
    return Dataset.open(RunDir(run).need(DataRecord).train).layout


def _export_ensemble(
    run: Path,
    candidate: Candidate,
    out: Path,
    layout: Layout,
    options: PredictOptions,
    provenance: Mapping[str, Any],
    figures: Mapping[str, float | None],
    opset: int,
    overwrite: bool,
    stacker: Path | None,
) -> ExportedModel:
    """Write the ensemble export of ``candidate`` (see the module docstring); ``stacker``: the
    folder of its stacker's fold models."""
    paths = RunDir(run).members()
    missing = [name for name in candidate.members if name not in paths]
    if missing:
        raise DataError(
            f"{run}: member {missing[0]} of {candidate.name} was not trained in this run; choose "
            "again (webly compress RUN --max-size SIZE --out FOLDER)"
        )
    inputs = [paths[name].parent for name in candidate.members]
    with (
        atomic_output(out, overwrite=overwrite, kind=EXPORT, inputs=inputs) as tmp,
        tempfile.TemporaryDirectory() as scratch,
    ):
        members: list[dict[str, Any]] = []
        features: dict[str, FeatureSpec] = {}
        frames: list[int] = []  # the frame-level graphs' training max_frames
        for name in candidate.members:
            store = paths[name]
            folds = sorted(store.parent.glob("fold-*/model"), key=lambda p: int(p.parent.name[5:]))
            shipped = []
            for f, fold in enumerate(folds):
                where = f"{MEMBERS_DIR}/{name}/fold-{f}"
                if (fold / TREES_FILE).is_file():  # LightGBM's own files, as the run saved them
                    shutil.copytree(fold, tmp / where)
                    groups = LgbmModel.load(fold).input_dims
                    features |= {group: layout.feature(group) for group in groups}
                    shipped.append(where)
                    continue
                if candidate.compression is not None:  # the graph keeps the compressed weights
                    fold = compress_network(
                        fold,
                        Path(scratch) / where,
                        candidate.compression,  # type: ignore[arg-type]
                        min_elements=candidate.min_elements,
                    ).folder
                graph = export_onnx(
                    fold, tmp / where, layout=layout, opset=opset, ship_weights=False
                )
                features |= {spec.name: spec for spec in graph.features}
                frames += [int(graph.info["max_frames"])] if graph.info["max_frames"] else []
                shipped.append(where)
            members.append({"id": name, "k": Predictions.open(store).k, "folds": shipped})
        if stacker is not None:
            shutil.copytree(stacker, tmp / STACKER_DIR)
            combine: dict[str, Any] = {"stacker": STACKER_DIR}
        else:
            combine = {"blend": candidate.blend}
        specs = list(features.values())
        level = model_level(specs)
        options.check_level(level, candidate.name)
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": "ensemble",
            "webly_version": webly.__version__,
            "exported_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "name": candidate.name,
            "level": level,
            "task": layout.task,
            "n_classes": layout.n_classes,
            "class_names": list(layout.class_names)
            if layout.class_names is not None
            else [str(i) for i in range(layout.n_classes)],
            "class_descriptions": list(layout.class_descriptions)
            if layout.class_descriptions is not None
            else None,
            "features": [asdict(spec) for spec in specs],
            "members": members,
            "combine": combine,
            "metrics": {k: v for k, v in figures.items() if v is not None} or None,
            "predict": options.to_json(),
            "run": dict(provenance),
            "max_frames": max(frames, default=None),
            "files": {
                str(path.relative_to(tmp)): {
                    "bytes": path.stat().st_size,
                    "sha256": sha256_file(path),
                }
                for path in sorted(tmp.rglob("*"))
                if path.is_file()
            },
        }
        write_json(tmp / MANIFEST, info)
    return load_exported(out)


def run_stacker(run: Path) -> Path:
    """The folder of the run's fitted stacker (``ensemble/stacker/model``)."""
    ensemble = RunDir(run).read(EnsembleRecord)
    if ensemble is None or STACKER not in ensemble.stores:
        raise DataError(f"{run}: its ensemble stage fitted no stacker; choose again")
    return ensemble.stores[STACKER].parent / "model"
