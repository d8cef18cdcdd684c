"""Exported models opened for inference with ONNX Runtime: `load_exported`.

An export folder holds ``model.json`` (this format's name and version, the classes, the
feature groups read, how to predict, where it came from and every shipped file's size and
SHA-256) and either one network's graph (`webly.deploy.export.export_onnx`:
`ExportedNetwork`) or an ensemble's members, fold by fold, and how they combine
(`webly.deploy.ensemble`: `ExportedEnsemble`). Both predict ``(B, n_classes)`` float32 scores
of a batch of stored feature groups (`ExportedModel.feeds`), which is all `webly predict` and
`webly serve` use.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

import webly
from webly._fs import OutputKind, sha256_file
from webly.core import TopK, select_top_k
from webly.data.store import FeatureSpec
from webly.deploy.options import PredictOptions
from webly.ensemble.blend import Blend
from webly.ensemble.stack import Stacker
from webly.errors import ConfigError, DataError
from webly.models.gbdt import CONFIG_FILE as TREES_FILE
from webly.models.gbdt import LgbmModel
from webly.predictions import float16_topk

FORMAT, FORMAT_VERSION = "webly-export", 1
MANIFEST, ONNX_FILE, EXPORT_WEIGHTS = "model.json", "model.onnx", "weights.safetensors"
EXPORT = OutputKind("a webly export", MANIFEST, FORMAT)
"""What ``webly export --overwrite`` replaces."""
LENGTHS, OUTPUT = "lengths", "probabilities"
_ORT_ERRORS = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.InvalidGraph,
    ort_errors.InvalidProtobuf,
    ort_errors.NoSuchFile,
    ort_errors.NotImplemented,
    ort_errors.RuntimeException,
)


@dataclass(frozen=True)
class ExportedModel(ABC):
    """An export opened for ONNX Runtime (CPU): a network (`ExportedNetwork`) or an ensemble
    (`ExportedEnsemble`); see `load_exported`. ``features``: the feature groups it reads, each
    at its own level."""

    folder: Path
    info: dict[str, Any]
    features: tuple[FeatureSpec, ...]

    @property
    def level(self) -> str:
        """``frame`` when some group it reads is frame-level (a batch has ``lengths``), else
        ``video``."""
        return str(self.info["level"])

    @property
    def name(self) -> str:
        """What it is, in a few words: the network's name, or the ensemble's candidate name."""
        network = self.info.get("network")
        return str(network["name"]) if isinstance(network, dict) else str(self.info["name"])

    @property
    def n_classes(self) -> int:
        return int(self.info["n_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.info["class_names"])

    @property
    def options(self) -> PredictOptions:
        """How to predict with it (``model.json``'s ``predict``; the defaults without one)."""
        return PredictOptions.from_json(self.info.get("predict") or {})

    @abstractmethod
    def predict(
        self, groups: Mapping[str, np.ndarray], lengths: np.ndarray | None = None
    ) -> np.ndarray:
        """Probabilities ``(B, n_classes)`` float32 of a batch; the arguments as `feeds`."""

    def feeds(
        self, groups: Mapping[str, np.ndarray], lengths: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The graph's inputs for a batch, checked: a `DataError` names a missing group, or one
        of another width, dtype or number of rows.

        Parameters
        ----------
        groups : group name -> ``(B, dim)`` (a video-level group) or ``(B, T, dim)`` (a
            frame-level one), each at its `FeatureSpec`'s level, values in the group's stored
            dtype (see ``features``).
        lengths : ``(B,)`` real frames a row, when some group is frame-level (fed as
            ``LENGTHS`` only then).
        """
        frame_level = any(spec.level == "frame" for spec in self.features)
        feeds: dict[str, np.ndarray] = {}
        batch = None
        for spec in self.features:
            if spec.name not in groups:
                raise DataError(
                    f"feature group {spec.name!r} is missing; the model reads "
                    f"{', '.join(s.name for s in self.features)}"
                )
            x = np.asarray(groups[spec.name])
            rank = 3 if spec.level == "frame" else 2
            per = "frame" if spec.level == "frame" else "row"
            if x.ndim != rank or x.shape[-1] != spec.dim:
                got = x.shape[-1] if x.ndim == rank else f"an array of shape {x.shape}"
                raise DataError(
                    f"feature group {spec.name!r}: the model expects {spec.dim} values per "
                    f"{per}, got {got}; pass the features the model was trained on"
                )
            if x.dtype != np.dtype(spec.dtype):
                raise DataError(
                    f"feature group {spec.name!r} is {x.dtype}; the model reads {spec.dtype} "
                    "(the stored dtype); convert it or export against the right store"
                )
            if batch is not None and len(x) != batch:
                raise DataError(f"feature group {spec.name!r} has {len(x)} rows, not {batch}")
            batch = len(x)
            feeds[spec.name] = x
        if frame_level:
            if lengths is None or np.shape(lengths) != (batch,):
                raise DataError(f"lengths must be ({batch},) frames a row for this frame model")
            feeds[LENGTHS] = np.asarray(lengths, dtype=np.int64)
        return feeds


@dataclass(frozen=True)
class ExportedNetwork(ExportedModel):
    """One network's ONNX graph (`webly.deploy.export.export_onnx`)."""

    session: ort.InferenceSession

    def predict(
        self, groups: Mapping[str, np.ndarray], lengths: np.ndarray | None = None
    ) -> np.ndarray:
        """Probabilities ``(B, n_classes)`` float32 of a batch; the arguments as `feeds`."""
        return self.session.run([OUTPUT], self.feeds(groups, lengths))[0]


@dataclass(frozen=True)
class ExportedTrees(ExportedModel):
    """One LightGBM fold model of an ensemble member (`webly.models.gbdt.LgbmModel`'s own
    pickle-free folder: ``lgbm.json`` and the boosters' text files), run by LightGBM: ONNX has
    no exact form of its boosters here. It reads its video-level groups decoded to float32 and
    concatenated in its training order, as the zoo trained it."""

    model: LgbmModel

    def predict(
        self, groups: Mapping[str, np.ndarray], lengths: np.ndarray | None = None
    ) -> np.ndarray:
        """Probabilities ``(B, n_classes)`` float32 of a batch; the arguments as `feeds`."""
        self.feeds(groups)
        return self.model.predict(
            np.concatenate([spec.decode(groups[spec.name]) for spec in self.features], axis=1)
        )


@dataclass(frozen=True)
class EnsembleMember:
    """One member of an exported ensemble: its fold models (ONNX graphs, or LightGBM's) and
    the top ``k`` its predictions are cut to."""

    id: str
    folds: tuple[ExportedModel, ...]
    k: int

    def topk(self, groups: Mapping[str, np.ndarray], lengths: np.ndarray | None) -> TopK:
        """``(B, k)`` best classes of the mean of the fold graphs' probabilities, scores
        rounded and ordered as the run's prediction stores hold them (`float16_topk`)."""
        total = None
        for fold in self.folds:
            probs = fold.predict(
                {spec.name: groups[spec.name] for spec in fold.features},
                lengths if fold.level == "frame" else None,
            )
            total = probs if total is None else total + probs
        assert total is not None  # an ensemble member has at least one fold
        return float16_topk(TopK(*select_top_k(total / len(self.folds), self.k, sort=True)))


@dataclass(frozen=True)
class ExportedEnsemble(ExportedModel):
    """Members' fold graphs and how they combine (a blend or the stacker), exported whole by
    `webly.deploy.ensemble.export_ensemble`."""

    members: tuple[EnsembleMember, ...]
    combine: Callable[[Sequence[TopK]], TopK]

    def predict(
        self, groups: Mapping[str, np.ndarray], lengths: np.ndarray | None = None
    ) -> np.ndarray:
        """Scores ``(B, n_classes)`` float32 of a batch: the blend's or the stacker's, 0 for the
        classes it does not rank; the arguments as `feeds`."""
        self.feeds(groups, lengths)
        top = self.combine([member.topk(groups, lengths) for member in self.members])
        out = np.zeros((top.n_samples, self.n_classes), np.float32)
        rows, slots = np.nonzero(top.indices >= 0)
        out[rows, top.indices[rows, slots]] = top.scores[rows, slots]
        return out


def load_exported(folder: str | Path, threads: int | None = None) -> ExportedModel:
    """Open an export folder (a network's or an ensemble's) for ONNX Runtime's CPU provider.

    Checks, each failure a one-line `DataError`: ``model.json`` is an export of this format
    version, every shipped file has the recorded size and SHA-256 (a missing, truncated or
    corrupt file is named), each graph's inputs and output match the recorded feature groups
    and classes, and an ensemble's blend or stacker combines exactly its members.
    ``threads``: ONNX Runtime's intra-op threads (default: its own choice).
    """
    folder = Path(folder)
    info = _read_info(folder)
    if info.get("kind") == "ensemble":
        return _load_ensemble(folder, info, threads)
    return _load_network(folder, info, threads)


def shipped_bytes(folder: Path) -> int:
    """Bytes of every file of an export folder."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _check_files(folder: Path, files: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a folder where a file ``files`` records is missing, of another size or SHA-256."""
    for name, recorded in files.items():
        path = folder / name
        size = path.stat().st_size if path.is_file() else -1
        if size != recorded["bytes"]:
            found = "no file" if size < 0 else f"{size} bytes"
            raise DataError(
                f"{path}: {found}, model.json records {recorded['bytes']}; the file is missing, "
                "truncated or replaced, re-export the model"
            )
        if sha256_file(path) != recorded["sha256"]:
            raise DataError(f"{path}: SHA-256 mismatch; the file is corrupt, re-export the model")


def _load_network(folder: Path, info: dict[str, Any], threads: int | None) -> ExportedNetwork:
    """An `export_onnx` folder, checked (`load_exported`)."""
    _check_files(folder, _shipped_files(folder, info))
    _check_classes(folder / MANIFEST, info)
    features = tuple(FeatureSpec(**spec) for spec in info["features"])
    try:
        PredictOptions.from_json(info.get("predict") or {}).check_level(info["level"], folder.name)
    except ConfigError as err:
        raise DataError(f"{folder / MANIFEST}: {err}; re-export the model") from None
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(
            str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )
    except _ORT_ERRORS as err:
        raise DataError(f"{folder / ONNX_FILE}: ONNX Runtime cannot load it ({err})") from None
    _check_signature(folder, session, info, features)
    return ExportedNetwork(folder, info, features, session)


def _load_ensemble(folder: Path, info: dict[str, Any], threads: int | None) -> ExportedEnsemble:
    """An ensemble export folder (`webly.deploy.ensemble`), checked (`load_exported`)."""
    path = folder / MANIFEST
    try:
        files = {str(k): dict(v) for k, v in info["files"].items()}
        features = tuple(FeatureSpec(**spec) for spec in info["features"])
        listed = [
            (str(m["id"]), [str(f) for f in m["folds"]], int(m["k"])) for m in info["members"]
        ]
        combine = dict(info["combine"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise DataError(
            f"{path}: not an ensemble export ({err!r} unreadable); re-export it"
        ) from None
    _check_files(folder, files)
    _check_classes(path, info)
    members = tuple(
        EnsembleMember(name, tuple(_fold(folder / fold, info, threads) for fold in folds), k)
        for name, folds, k in listed
    )
    names = [member.id for member in members]
    if "stacker" in combine:
        stacker = Stacker.load(folder / str(combine["stacker"]))
        if stacker.members != names or stacker.n_classes != int(info["n_classes"]):
            raise DataError(
                f"{path}: the stacker was fitted on {', '.join(stacker.members)} "
                f"({stacker.n_classes} classes), the export ships {', '.join(names)} "
                f"({info['n_classes']} classes); re-export the model"
            )
        apply: Callable[[Sequence[TopK]], TopK] = stacker.predict_topk
    else:
        try:
            blend = Blend.from_json(combine["blend"])
        except (ConfigError, KeyError, TypeError) as err:
            raise DataError(f"{path}: unreadable blend ({err}); re-export the model") from None
        if list(blend.names) != names:
            raise DataError(
                f"{path}: the blend combines {', '.join(blend.names)}, the export ships "
                f"{', '.join(names)}; re-export the model"
            )
        apply = blend.apply
    try:
        PredictOptions.from_json(info.get("predict") or {}).check_level(info["level"], folder.name)
    except ConfigError as err:
        raise DataError(f"{path}: {err}; re-export the model") from None
    return ExportedEnsemble(folder, info, features, members, apply)


def _fold(folder: Path, ensemble: dict[str, Any], threads: int | None) -> ExportedModel:
    """One fold model of an ensemble (its files checked by the ensemble's ``model.json``),
    checked to predict the ensemble's classes from groups the ensemble records."""
    if (folder / TREES_FILE).is_file():
        return _trees(folder, ensemble)
    info = _read_info(folder)
    if info.get("kind") == "ensemble" or info.get("n_classes") != ensemble["n_classes"]:
        raise DataError(
            f"{folder}: not a network of the ensemble's {ensemble['n_classes']} classes; "
            "re-export the model"
        )
    return _load_network(folder, info, threads)


def _trees(folder: Path, ensemble: dict[str, Any]) -> ExportedTrees:
    """A LightGBM fold model of an ensemble, checked against the ensemble's classes and groups."""
    model = LgbmModel.load(folder)
    specs = {spec["name"]: FeatureSpec(**spec) for spec in ensemble["features"]}
    features = tuple(specs.get(name) for name in model.input_dims)
    if model.n_classes != ensemble["n_classes"] or any(
        spec is None or spec.dim != model.input_dims[spec.name] for spec in features
    ):
        raise DataError(
            f"{folder}: a LightGBM model of {model.n_classes} classes over "
            f"{', '.join(f'{n}:{d}' for n, d in model.input_dims.items())}, not of the "
            "ensemble's classes and groups; re-export the model"
        )
    info = {
        "level": "video",
        "name": "lgbm",
        **{k: ensemble[k] for k in ("n_classes", "class_names")},
    }
    return ExportedTrees(folder, info, tuple(s for s in features if s is not None), model)


def _read_info(folder: Path) -> dict[str, Any]:
    """``model.json`` of an export folder, checked to be of this export format version."""
    path = folder / MANIFEST
    if not path.is_file():
        hint = "it is not an exported webly model" if folder.is_dir() else "it does not exist"
        raise DataError(f"{folder}: no {MANIFEST} ({hint}); export one with webly export")
    try:
        info: dict[str, Any] = json.loads(path.read_text())
        fmt, version = info.get("format"), info.get("format_version")
    except (OSError, ValueError, AttributeError) as err:
        raise DataError(f"{path}: unreadable ({err}); re-export the model") from None
    if fmt != FORMAT:
        raise DataError(f"{path}: format {fmt!r}, not {FORMAT!r}; pass a webly export folder")
    if type(version) is not int:
        raise DataError(
            f"{path}: format_version is {version!r} ({type(version).__name__}); it must be the "
            f"integer {FORMAT_VERSION}, re-export the model"
        )
    if version != FORMAT_VERSION:
        raise DataError(
            f"{path}: written by webly {info.get('webly_version')} in export format v{version}; "
            f"webly {webly.__version__} reads v{FORMAT_VERSION}, re-export the model with it"
        )
    return info


def _check_classes(path: Path, info: dict[str, Any]) -> None:
    """Refuse a ``model.json`` whose class names do not name every one of its classes."""
    n_classes, names = info.get("n_classes"), info.get("class_names")
    if type(n_classes) is not int or n_classes < 1:
        raise DataError(f"{path}: n_classes is {n_classes!r}, not a count; re-export the model")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise DataError(f"{path}: class_names is not a list of names; re-export the model")
    if len(names) != n_classes:
        raise DataError(
            f"{path}: class_names lists {len(names)} names for {n_classes} classes; give one "
            "name per class, or re-export the model"
        )


def _shipped_files(folder: Path, info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``model.json``'s ``files`` entries, checked to list every shipped file (the ONNX graph
    and, unless exported without it, the weights) with its size and SHA-256, so none can escape
    the integrity check."""
    path = folder / MANIFEST
    files = info.get("files")
    if not isinstance(files, dict):
        got = "no 'files' key" if files is None else f"'files' is {type(files).__name__}"
        raise DataError(f"{path}: {got}, so the model files cannot be checked; re-export the model")
    shipped = (ONNX_FILE, EXPORT_WEIGHTS)
    checked: dict[str, dict[str, Any]] = {}
    weighed = EXPORT_WEIGHTS in files or (folder / EXPORT_WEIGHTS).exists()
    for name in shipped if weighed else (ONNX_FILE,):
        entry = files.get(name)
        if not (
            isinstance(entry, dict)
            and type(entry.get("bytes")) is int
            and isinstance(entry.get("sha256"), str)
        ):
            problem = "does not list" if entry is None else "has no size and SHA-256 for"
            raise DataError(f"{path}: 'files' {problem} {name}; re-export the model")
        checked[name] = entry
    unknown = sorted(set(files) - set(shipped))
    if unknown:
        raise DataError(
            f"{path}: 'files' lists {unknown[0]!r}, not a file of an export (only "
            f"{', '.join(shipped)}); re-export the model"
        )
    return checked


_ORT_TYPES = {"uint8": "tensor(uint8)", "float16": "tensor(float16)", "float32": "tensor(float)"}


def _check_signature(
    folder: Path,
    session: ort.InferenceSession,
    info: dict[str, Any],
    features: Sequence[FeatureSpec],
) -> None:
    """Refuse a graph whose inputs or output disagree with ``model.json``."""
    inputs = {i.name: i for i in session.get_inputs()}
    expected: dict[str, tuple[str, int | None]] = {
        spec.name: (_ORT_TYPES[spec.dtype], spec.dim) for spec in features
    }
    if info["level"] == "frame":
        expected[LENGTHS] = ("tensor(int64)", None)
    problems = [name for name in expected if name not in inputs] + [
        name for name in inputs if name not in expected
    ]
    for name, (dtype, dim) in expected.items():
        node = inputs.get(name)
        if node is not None and (node.type != dtype or (dim is not None and node.shape[-1] != dim)):
            problems.append(name)
    output = session.get_outputs()[0]
    if problems or output.name != OUTPUT or output.shape[-1] != info["n_classes"]:
        raise DataError(
            f"{folder}: the graph's inputs/output ({', '.join(inputs)} -> {output.name} "
            f"{output.shape}) do not match model.json (first problem: "
            f"{problems[0] if problems else output.name}); re-export the model"
        )
