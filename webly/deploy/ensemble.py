"""An ensemble export: a blend of members or the stacker, whole, as one folder `load_exported`
runs (`webly.compress.choice` exports a run's choice through it)::

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

`webly.deploy.exported.ExportedEnsemble` predicts as the run did: each member the mean of its
fold graphs' probabilities, cut to the member's top-k with scores rounded to float16 (as the
run's prediction stores hold them, which the blends and the stacker were fitted on), then the
blend or the stacker.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import webly
from webly._fs import atomic_output, sha256_file, write_json
from webly.data.store import FeatureSpec, Layout
from webly.deploy.export import export_onnx
from webly.deploy.exported import (
    EXPORT,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ExportedModel,
    load_exported,
)
from webly.deploy.inputs import model_level
from webly.deploy.options import PredictOptions
from webly.models.gbdt import CONFIG_FILE as TREES_FILE
from webly.models.gbdt import LgbmModel

MEMBERS_DIR, STACKER_DIR = "members", "stacker"


@dataclass(frozen=True)
class MemberFolds:
    """A member an ensemble export ships.

    ``k``: the top-k its prediction store keeps (its scores are cut to it); ``folder``: where
    it was trained (the export may not overlap it); ``folds``: its fold models in fold order,
    network folders (plain or compressed, `webly.models.quantized.open_network`) or LightGBM
    model folders (`webly.models.gbdt.LgbmModel`).
    """

    id: str
    k: int
    folder: Path
    folds: tuple[Path, ...]


def export_ensemble(
    name: str,
    members: Sequence[MemberFolds],
    out: str | Path,
    *,
    combine: Path | Mapping[str, Any],
    layout: Layout,
    predict_options: PredictOptions | None = None,
    metrics: Mapping[str, float] | None = None,
    run: Mapping[str, Any] | None = None,
    opset: int = 17,
    overwrite: bool = False,
) -> ExportedModel:
    """Export ``members`` combined by ``combine`` to the folder ``out`` (see the module
    docstring; built in a temporary folder and renamed into place, so nothing is left there on
    error).

    Parameters
    ----------
    name : the ensemble's name (e.g. the chooser's ``blend greedy``)
    combine : the folder of the stacker's fold models (`webly.ensemble.stack.Stacker`), or a
        blend's rule (`webly.ensemble.blend.Blend.to_json`: method, names, weights)
    layout : the layout of the store the members were trained on
    predict_options : how `webly.deploy.predict` predicts with it (test-time views take
        frame-level groups)
    metrics, run : the figures and the provenance ``model.json`` records

    Returns
    -------
    ExportedModel
        The export loaded back through `load_exported`, so every check has passed.
    """
    out = Path(out)
    options = predict_options or PredictOptions()
    inputs = [member.folder for member in members]
    inputs += [combine] if isinstance(combine, Path) else []
    with atomic_output(out, overwrite=overwrite, kind=EXPORT, inputs=inputs) as tmp:
        shipped_members: list[dict[str, Any]] = []
        features: dict[str, FeatureSpec] = {}
        frames: list[int] = []  # the frame-level graphs' training max_frames
        for member in members:
            shipped = []
            for f, fold in enumerate(member.folds):
                where = f"{MEMBERS_DIR}/{member.id}/fold-{f}"
                shipped.append(where)
                if (fold / TREES_FILE).is_file():  # LightGBM's own files, as the run saved them
                    shutil.copytree(fold, tmp / where)
                    groups = LgbmModel.load(fold).input_dims
                    features |= {group: layout.feature(group) for group in groups}
                    continue
                graph = export_onnx(
                    fold, tmp / where, layout=layout, opset=opset, ship_weights=False
                )
                features |= {spec.name: spec for spec in graph.features}
                frames += [int(graph.info["max_frames"])] if graph.info["max_frames"] else []
            shipped_members.append({"id": member.id, "k": member.k, "folds": shipped})
        if isinstance(combine, Path):
            shutil.copytree(combine, tmp / STACKER_DIR)
            combined: dict[str, Any] = {"stacker": STACKER_DIR}
        else:
            combined = {"blend": dict(combine)}
        specs = list(features.values())
        level = model_level(specs)
        options.check_level(level, name)
        info = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": "ensemble",
            "webly_version": webly.__version__,
            "exported_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "name": name,
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
            "members": shipped_members,
            "combine": combined,
            "metrics": dict(metrics) if metrics is not None else None,
            "predict": options.to_json(),
            "run": dict(run) if run is not None else None,
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
