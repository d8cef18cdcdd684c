"""`Predictor`: one object that owns a run, for a notebook or a script.

::

    from webly import Predictor
    predictor = Predictor(path="runs/digits").fit((X, y), test=(X_test, y_test))
    predictor.leaderboard()        # every deployable, scored on validation rows (and the test)
    predictor.label_issues()       # the training rows whose labels look wrong, worst first
    predictor.predict(X_new)       # with the deployable chosen on validation rows

It writes a recipe (`webly.config.Recipe`) from its arguments and runs it with
`webly.pipeline.run_pipeline`, as ``webly run`` does, so the CLI, recipes and the Predictor
train the same way. The folder ``path`` holds::

    predictor.json   what the Predictor was asked for and the data it was fitted on
    inputs/          the stores written from in-memory data (train/, test/, unlabeled/)
    run/             the run directory (webly status / webly report read it)

Re-fitting the same data into the same ``path`` resumes (nothing done is done again); other
data there needs ``overwrite=True``. What it deploys is the compress stage's choice within
``max_size`` (`webly.compress.budget.choose_under_budget`: the most accurate member, blend or
stacker on validation rows, never on the test split), exported whole to ``run/export/model``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from webly._fs import file_hash, write_atomic
from webly.clean.report import NoiseReport
from webly.compress.budget import FRONTIER_FILE
from webly.compress.choice import export_best
from webly.config import DEFAULT_MAX_SIZE, parse_recipe
from webly.core import Task
from webly.data.arrays import dataset_from_arrays, dataset_from_pandas
from webly.data.store import MANIFEST, Dataset
from webly.deploy.exported import ExportedModel, load_exported
from webly.deploy.inputs import store_batches
from webly.deploy.predict import view_probabilities
from webly.errors import ConfigError, DataError
from webly.pipeline import RunResult, run_pipeline
from webly.rundir import CompressRecord, ExportRecord, RunDir

FORMAT = "webly-predictor"
FORMAT_VERSION = 1
SPLITS = ("train", "test", "unlabeled")
STAGED = ".new"
"""The suffix of a store written from in-memory data before it replaces ``inputs/SPLIT``."""
DEFAULT_ROOT = Path("WeblyModels")
"""Where a Predictor without ``path`` writes: ``WeblyModels/run-YYYYmmdd-HHMMSS``."""
GBDT_MAX_CLASSES = 50
"""The default zoo's third member is LightGBM up to this many classes (it trains a booster
round a class), a wider MLP beyond."""
WIDE_MLP = {"name": "mlp", "id": "mlp_wide", "hparams": {"hidden": [2048], "dropout": 0.5}}
"""The default zoo's third member beyond `GBDT_MAX_CLASSES` classes: an MLP wider and more
regularised than the default one."""


class Predictor:
    """Train, judge, combine and deploy on one dataset, in one folder.

    Parameters
    ----------
    task : "multiclass" or "multilabel"; inferred from the labels when None (one id or name a
        row: multi-class; a 0/1 matrix or label lists: multi-label)
    path : the folder of the run (default ``WeblyModels/run-<time>``)
    zoo : "default" (video-level features: logistic, an MLP and LightGBM, or with more than
        `GBDT_MAX_CLASSES` classes a second, wider MLP (`WIDE_MLP`); frame-level: DBoF and
        NetVLAD), "fast" (logistic and an MLP; frame-level: DBoF), or a recipe ``zoo`` section
        (a dict with ``members``)
    clean : the recipe ``clean`` section (True: its defaults, confident learning and one
        round trained on the repaired labels; None: no cleaning, no `label_issues`)
    ensemble : the recipe ``ensemble`` section (True: blends and the LightGBM stacker)
    distill : the recipe ``distill`` section, or None (see `distill`)
    time_limit : seconds for the whole zoo (``zoo.time_limit``), or None
    max_size : the size budget of what `predict` uses and `export` ships (e.g. "50MB")
    valid_fraction : the share of the training rows carved out before anything trains
        (``data.valid_fraction``): the distilled model and what `predict` uses are chosen on
        rows no model saw; None: chosen out of fold
    folds : K of the out-of-fold training
    seed : the one seed of the run
    progress : print the stages, models, folds and epochs as they go (Rich: a terminal or a
        notebook)
    """

    def __init__(
        self,
        task: Task | None = None,
        path: str | Path | None = None,
        *,
        zoo: str | Mapping[str, Any] = "default",
        clean: bool | Mapping[str, Any] | None = True,
        ensemble: bool | Mapping[str, Any] | None = True,
        distill: Mapping[str, Any] | None = None,
        time_limit: float | None = None,
        max_size: int | str = DEFAULT_MAX_SIZE,
        valid_fraction: float | None = None,
        folds: int = 5,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        if isinstance(zoo, str) and zoo not in ("default", "fast"):
            raise ConfigError(f"zoo is {zoo!r}; pass 'default', 'fast' or a zoo section (dict)")
        self.task = None if task is None else Task.parse(task)
        self.path = Path(path) if path is not None else _new_path()
        self.settings: dict[str, Any] = {
            "zoo": zoo if isinstance(zoo, str) else dict(zoo),
            "clean": _section(clean),
            "ensemble": _section(ensemble),
            "distill": dict(distill) if distill is not None else None,
            "time_limit": time_limit,
            "max_size": max_size,
            "valid_fraction": valid_fraction,
            "folds": folds,
            "seed": seed,
        }
        self.progress = progress
        self.inputs: dict[str, str] = {}
        self.result: RunResult | None = None
        self._exported: ExportedModel | None = None

    # ---- fitting

    @property
    def run(self) -> Path:
        """The run directory (``webly status``, ``webly report`` and ``webly export`` read it)."""
        return self.path / "run"

    def fit(
        self, train: Any, test: Any = None, *, unlabeled: Any = None, overwrite: bool = False
    ) -> Predictor:
        """Run the recipe on ``train`` (and score it on ``test``); returns ``self``.

        ``train``, ``test`` and ``unlabeled`` are each a `Dataset`, a store folder, a pair
        ``(X, y)`` (``X`` ``(n_samples, dim)`` or ``{group: (n_samples, dim)}``), a triple
        ``(X_frames, lengths, y)`` (``(n_samples, T, dim)`` padded frames, ``(n_samples,)``
        real frames a row) or a pandas DataFrame with a ``label`` column (the other numeric
        columns are the features). ``unlabeled`` rows need no labels (``X`` alone).
        """
        self._claim(overwrite)
        given = {"train": train, "test": test, "unlabeled": unlabeled}
        stores: dict[str, Dataset] = {}
        for split in SPLITS:
            if given[split] is not None:
                stores[split] = self._stage(split, given[split], stores.get("train"))
        hashes = {split: file_hash(store.path / MANIFEST) for split, store in stores.items()}
        recorded = self._recorded()
        if recorded is not None and recorded.get("data") not in (None, hashes) and not overwrite:
            for store in stores.values():
                if store.path.name.endswith(STAGED):
                    shutil.rmtree(store.path)
            raise ConfigError(
                f"{self.path} holds a Predictor fitted on other data; pass overwrite=True to "
                "replace it, or another path"
            )
        stores = {split: self._commit(store) for split, store in stores.items()}
        if overwrite and self.run.exists():
            shutil.rmtree(self.run)
        self.inputs = {split: str(store.path.resolve()) for split, store in stores.items()}
        self.task = self.task or stores["train"].task
        recipe = parse_recipe(self.recipe(stores["train"]), source="Predictor")
        self._save(hashes)
        console = Console(stderr=True) if self.progress else None
        self.result = run_pipeline(recipe, self.run, console)
        self._exported = None
        if self.result.errors:
            raise DataError(f"the run in {self.run} failed: {self.result.errors[0]}")
        return self

    def recipe(self, train: Dataset) -> dict[str, Any]:
        """The recipe (parsed YAML) the Predictor runs on ``train``."""
        settings = self.settings
        data = {split: path for split, path in self.inputs.items()}
        zoo = settings["zoo"]
        zoo = dict(zoo) if isinstance(zoo, dict) else {"members": default_members(train, zoo)}
        if settings["time_limit"] is not None:
            zoo["time_limit"] = settings["time_limit"]
        raw: dict[str, Any] = {
            "seed": settings["seed"],
            "data": {"store": data},
            "folds": {"n": settings["folds"]},
            "zoo": zoo,
            "compress": {"max_size": settings["max_size"]},
            "export": {},
        }
        if settings.get("valid_fraction") is not None:  # absent from older predictor.json
            raw["data"]["valid_fraction"] = settings["valid_fraction"]
        for stage in ("clean", "ensemble", "distill"):
            if settings[stage] is not None:
                raw[stage] = settings[stage]
        if raw.get("clean") == {}:
            # flagged rows the repair neither relabels nor drops are left out of the next
            # round, as cleanlab's CleanLearning does
            raw["clean"] = {"rules": {"down_weight": 0.0}}
        return raw

    def distill(self, final: Mapping[str, Any] | None = None, **section: Any) -> Predictor:
        """Add a distill stage (one ``final`` network on every row, taught by the ensemble's
        best entry chosen on validation; by default an MLP) and run what it changes."""
        if self.result is None and not RunDir(self.run).is_run():
            raise ConfigError("the Predictor is not fitted; call fit(train) first")
        self.settings["distill"] = {"final": dict(final or {"name": "mlp"}), **section}
        train = Dataset.open(self.inputs["train"])
        recipe = parse_recipe(self.recipe(train), source="Predictor.distill")
        self._save(self._recorded_data())
        console = Console(stderr=True) if self.progress else None
        self.result = run_pipeline(recipe, self.run, console)
        self._exported = None
        return self

    # ---- what it found

    def leaderboard(self) -> pd.DataFrame:
        """Every deployable the run weighed, most accurate on validation rows first.

        Columns: ``model``, ``kind`` (member, ensemble: a mean or blend of members, stacker or
        final), ``compression``, ``score_val`` (the task's metric on validation rows:
        out-of-fold predictions, never the test split), ``score_test`` (None without a test
        split), ``fit_time`` (seconds of training, where the run recorded it),
        ``pred_time_per_row`` (ms with ONNX Runtime on this machine), ``size`` (bytes shipped),
        ``deployed`` (what `predict` uses).
        """
        choice = self._frontier()
        seconds = _fit_seconds(RunDir(self.run).results())
        rows = [
            {
                "model": c["name"],
                "kind": "member" if c["name"].startswith("member ") else c["kind"],
                "compression": c["compression"] or c.get("method") or "fp32",
                "score_val": c["metric"],
                "score_test": c["test_metric"],
                "fit_time": seconds.get(_result_name(c["name"])),
                "pred_time_per_row": c["latency_ms"],
                "size": c["size"],
                "deployed": c["name"] == choice["chosen"],
            }
            for c in choice["candidates"]
        ]
        table = pd.DataFrame(rows)
        table.attrs["metric"] = choice["metric"]
        table.attrs["scored_on"] = choice["scored_on"]
        return table.sort_values(
            ["score_val", "size"], ascending=[False, True], na_position="last"
        ).reset_index(drop=True)

    def label_issues(self) -> pd.DataFrame:
        """The training rows judged by the clean stage (its first round, on the zoo's
        out-of-fold predictions), the most likely mislabeled first.

        Columns, the first four as cleanlab's ``CleanLearning.find_label_issues`` names them:
        ``is_label_issue``, ``label_quality`` (in [0, 1], lower = more likely wrong),
        ``given_label`` and ``predicted_label`` (class names, a list a row for multi-label), then
        ``predicted_prob`` and ``action`` (what the repair did: keep, relabel, drop, ...);
        indexed by row id.
        """
        if self.settings["clean"] is None:
            raise ConfigError(
                "label_issues needs the clean stage; create the Predictor with clean=True"
            )
        folder = RunDir(self.run).first_noise_report()
        if folder is None:
            raise ConfigError(f"{self.run} has no finished clean stage; call fit(train) first")
        report = NoiseReport.load(folder)
        train = Dataset.open(self.inputs["train"])
        names = np.asarray(train.class_names, dtype=object)
        labels = report.labels.tocsr()
        given = [
            names[labels.indices[a:b]].tolist()
            for a, b in zip(labels.indptr[:-1], labels.indptr[1:], strict=True)
        ]
        if not report.task.multilabel:
            given = [g[0] if g else None for g in given]
        table = pd.DataFrame(
            {
                "is_label_issue": report.is_noisy,
                "label_quality": 1.0 - report.row_score,
                "given_label": given,
                "predicted_label": names[report.predicted],
                "predicted_prob": report.predicted_prob,
                "action": report.action_names(),
            },
            index=pd.Index([str(i) for i in train.ids], name="id"),
        )
        return table.sort_values("label_quality", kind="stable")

    # ---- predicting

    def predict_proba(self, data: Any) -> pd.DataFrame:
        """Scores ``(n_samples, n_classes)`` of the deployed model (a DataFrame indexed by row
        id, a column a class); ``data`` in any form `fit` takes, labels not needed."""
        model = self.deployed()
        with tempfile.TemporaryDirectory(prefix="webly-predict-") as work:
            store = self._as_store(data, Path(work) / "store", labels=False)
            seeds = np.random.SeedSequence(model.options.tta_seed)
            ids, parts = [], []
            for batch in store_batches(store, model.features, 1024):
                ids += batch.ids
                parts.append(view_probabilities(model, batch, model.options, seeds))
        scores = np.concatenate(parts) if parts else np.zeros((0, model.n_classes), np.float32)
        return pd.DataFrame(scores, index=pd.Index(ids, name="id"), columns=model.class_names)

    def predict(self, data: Any, threshold: float = 0.5) -> np.ndarray:
        """Each row's class: the best one for multi-class data ``(n_samples,)``; the classes
        scored at least ``threshold`` for multi-label data (an array of lists)."""
        scores = self.predict_proba(data)
        names = np.asarray(scores.columns, dtype=object)
        values = scores.to_numpy()
        if self.task is Task.MULTICLASS:
            return _as_labels(names[values.argmax(axis=1)])
        chosen = np.empty(len(values), dtype=object)
        for i, row in enumerate(values):
            chosen[i] = _as_labels(names[row >= threshold]).tolist()
        return chosen

    def deployed(self) -> ExportedModel:
        """The model `predict` uses: the run's export (the compress stage's choice)."""
        if self._exported is None:
            exported = RunDir(self.run).read(ExportRecord)
            if exported is None:
                raise ConfigError(f"{self.run} has no exported model; call fit(train) first")
            self._exported = load_exported(exported.model)
        return self._exported

    def export(
        self, path: str | Path, max_size: int | str | None = None, *,
        max_latency_ms: float | None = None, overwrite: bool = False,
    ) -> Path:  # fmt: skip
        """Ship the most accurate deployable within ``max_size`` (default the Predictor's) and
        ``max_latency_ms`` (chosen on validation rows) to the folder ``path``, for ``webly
        predict``, ``webly serve`` and `load_exported`; returns ``path``."""
        export_best(
            self.run, path, max_size if max_size is not None else self.settings["max_size"],
            max_latency_ms=max_latency_ms, overwrite=overwrite,
        )  # fmt: skip
        return Path(path)

    # ---- saving

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """The Predictor fitted in ``path``."""
        path = Path(path)
        file = path / "predictor.json"
        try:
            saved = json.loads(file.read_text())
        except (OSError, ValueError):
            raise ConfigError(
                f"{file} is missing or unreadable; pass the path of a fitted Predictor"
            ) from None
        if saved.get("format") != FORMAT:
            raise ConfigError(f"{file} is not a webly Predictor's; pass a Predictor's path")
        predictor = cls(saved["task"], path, progress=False)
        predictor.settings = saved["settings"]
        predictor.inputs = saved["inputs"]
        return predictor

    def __repr__(self) -> str:
        return f"Predictor(task={self.task!r}, path={str(self.path)!r})"

    # ---- internals

    def _claim(self, overwrite: bool) -> None:
        if self.path.exists() and any(self.path.iterdir()) and self._recorded() is None:
            raise ConfigError(
                f"{self.path} holds files but no predictor.json; pass a new or empty path"
            )
        if overwrite and (self.path / "inputs").exists():
            shutil.rmtree(self.path / "inputs")
        self.path.mkdir(parents=True, exist_ok=True)
        if self._recorded() is None:
            self._save(None)  # the folder is the Predictor's from now on

    def _stage(self, split: str, data: Any, train: Dataset | None) -> Dataset:
        """``data`` as a store: in place when it is one, else written to ``inputs/SPLIT.new``
        (`_commit` puts it in place)."""
        if isinstance(data, Dataset):
            return data
        if isinstance(data, str | Path):
            return Dataset.open(data)
        staged = self.path / "inputs" / f"{split}{STAGED}"
        return self._as_store(data, staged, labels=split != "unlabeled", train=train)

    def _commit(self, store: Dataset) -> Dataset:
        """A staged store moved to ``inputs/SPLIT`` (dropped when that holds the same data)."""
        if not store.path.name.endswith(STAGED):
            return store
        target = store.path.with_name(store.path.name.removesuffix(STAGED))
        if file_hash(target / MANIFEST) != file_hash(store.path / MANIFEST):
            if target.exists():
                shutil.rmtree(target)
            store.path.rename(target)
        else:
            shutil.rmtree(store.path)
        return Dataset.open(target)

    def _as_store(
        self, data: Any, path: Path, *, labels: bool, train: Dataset | None = None
    ) -> Dataset:
        """``data`` (see `fit`) written to the store ``path``; without ``labels`` the rows are
        unlabeled and take the training store's classes."""
        reference = train
        if reference is None and self.inputs.get("train"):
            reference = Dataset.open(self.inputs["train"])
        options: dict[str, Any] = {"path": path, "overwrite": True}
        if reference is not None and reference.layout.class_names is not None:
            options["class_names"] = reference.class_names
        elif reference is not None:
            options["n_classes"] = reference.n_classes
        if not labels:
            options["task"] = reference.task if reference is not None else Task.MULTILABEL
        elif self.task is not None:
            options["task"] = self.task
        if isinstance(data, Dataset | str | Path):
            return data if isinstance(data, Dataset) else Dataset.open(data)
        if isinstance(data, pd.DataFrame):  # a label column is never a feature
            label = "label" if labels or "label" in data.columns else None
            return dataset_from_pandas(data, label, **options)
        if isinstance(data, tuple) and len(data) in (2, 3):
            *x, y = data if labels else (*data, None)
            if len(x) == 2:  # (frames, lengths)
                return dataset_from_arrays(None, y, frames={"frames": (x[0], x[1])}, **options)
            return dataset_from_arrays(x[0], y, **options)
        if not labels and isinstance(data, np.ndarray | Mapping):
            return dataset_from_arrays(data, None, **options)
        raise ConfigError(
            f"data is a {type(data).__name__}; pass a Dataset, a store folder, (X, y), "
            "(X_frames, lengths, y) or a DataFrame with a label column"
        )

    def _recorded(self) -> dict[str, Any] | None:
        try:
            saved: dict[str, Any] = json.loads((self.path / "predictor.json").read_text())
        except (OSError, ValueError):
            return None
        return saved if saved.get("format") == FORMAT else None

    def _recorded_data(self) -> dict[str, Any]:
        recorded = self._recorded()
        return dict(recorded.get("data") or {}) if recorded is not None else {}

    def _save(self, hashes: Mapping[str, Any] | None) -> None:
        """Write ``predictor.json``; ``hashes``: the manifest hash of each split fitted on
        (None before the first fit)."""
        saved = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "settings": self.settings,
            "inputs": self.inputs,
            "data": dict(hashes) if hashes is not None else None,
        }
        write_atomic(self.path / "predictor.json", json.dumps(saved, indent=1).encode())

    def _frontier(self) -> dict[str, Any]:
        compressed = RunDir(self.run).read(CompressRecord)
        if compressed is None:
            raise ConfigError(f"{self.run} has no finished compress stage; call fit(train) first")
        frontier: dict[str, Any] = json.loads((compressed.choice / FRONTIER_FILE).read_text())
        return frontier


def default_members(train: Dataset, zoo: str = "default") -> list[dict[str, Any]]:
    """The zoo members of ``zoo="default"`` or ``"fast"`` for the groups ``train`` holds."""
    levels = {spec.level for spec in train.layout.features}
    members: list[dict[str, Any]] = []
    if "video" in levels:
        members += [{"name": "logistic"}, {"name": "mlp"}]
        if zoo == "default":
            members.append({"name": "lgbm"} if train.n_classes <= GBDT_MAX_CLASSES else WIDE_MLP)
    if "frame" in levels:
        members += [{"name": "dbof"}] if zoo == "fast" else [{"name": "dbof"}, {"name": "netvlad"}]
    return members


def _section(value: bool | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """True: the stage at its defaults; False or None: no stage; a dict: the section."""
    if value is True:
        return {}
    if value is None or value is False:
        return None
    return dict(value)


def _new_path() -> Path:
    return DEFAULT_ROOT / time.strftime("run-%Y%m%d-%H%M%S")


def _fit_seconds(results: dict[str, Any] | None) -> dict[str, float]:
    """Training seconds of each model the evaluate stage listed, by its name there."""
    rows = results.get("rows", []) if results is not None else []
    return {row["model"]: row["seconds"] for row in rows if row.get("seconds") is not None}


def _result_name(candidate: str) -> str:
    """The evaluate stage's name of a candidate's model: ``member mlp int8_partial`` -> ``mlp``,
    ``blend greedy`` -> ``blend: greedy``, ``final mlp fp16`` -> ``final: mlp``."""
    words = candidate.split()
    kind = words[0]
    if kind == "member":
        return words[1]
    if kind in ("blend", "final"):
        return f"{kind}: {words[1]}"
    return kind


def _as_labels(names: np.ndarray) -> np.ndarray:
    """Class names as ints when every one is an int (the classes of integer labels)."""
    try:
        return names.astype(np.int64)
    except ValueError:
        return names
