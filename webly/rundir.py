"""The run directory (``webly run RECIPE.yaml --out RUN``): its layout, its stage manifests and
what each stage records, typed. Every reader of a run (the pipeline, its stages, compress and
export, the report) goes through `RunDir`; nothing else knows a manifest's keys.

The layout::

    RUN/recipe.yaml              the resolved recipe of the latest run, under `RECIPE_HEADER`
                                 (the line that tells a run directory from any folder)
    RUN/<stage>/manifest.json    the stage's manifest (`RunDir.write_manifest`): format,
                                 version, stage, state and config hash (`webly.resume`), the
                                 stage's resolved config, the hashes of the manifests it read,
                                 started and finished (UTC), seconds, key figure, errors, and
                                 what it made: ``outputs`` (paths, relative to ``RUN`` or
                                 absolute) and ``summary`` (figures), the two halves of its
                                 `StageRecord`; both null when it made nothing
    RUN/<stage>/...              the stage's artifact (`webly.stages`)

A stage's record is a frozen dataclass (`DataRecord`, `ZooRecord`, ...): what later stages, the
report, compress and export read of it. A manifest that lacks one of its keys is a one-line
`DataError` naming the stage, the file and the key, never a silent default (but for a field
declared with one: added since its `VERSION`, it reads as that default in older manifests); a
manifest of another `VERSION` says the run must be made again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_type_hints

import scipy.sparse as sp

from webly._fs import file_hash
from webly.config import Recipe, load_recipe
from webly.core import Task
from webly.data.store import Dataset
from webly.errors import DataError
from webly.resume import RUNNING, mark, read_record

RECIPE_FILE, MANIFEST = "recipe.yaml", "manifest.json"
RECIPE_HEADER = "# webly run: the resolved recipe of this run directory\n"
"""First line of ``RUN/recipe.yaml``: what tells a run directory from any folder with a recipe."""
FORMAT, VERSION = "webly-stage", 2
"""A stage manifest's ``format`` and ``version``; version 1 (webly before `RunDir`) recorded
untyped outputs and is not read."""


@dataclass(frozen=True)
class StageRecord:
    """What a stage made, as later readers see it: the fields named in ``OUTPUTS`` are kept
    under the manifest's ``outputs`` (what later stages open), the others under its
    ``summary`` (figures), each under its name or the one ``KEYS`` gives it. Fields of type
    `Path` (or ``dict[str, Path]``) are recorded relative to the run directory when inside it,
    and read back joined to it."""

    STAGE: ClassVar[str]
    OUTPUTS: ClassVar[tuple[str, ...]]
    KEYS: ClassVar[dict[str, str]] = {}

    @classmethod
    def _place(cls, name: str) -> tuple[str, str]:
        """The manifest section and key of the field ``name``."""
        return "outputs" if name in cls.OUTPUTS else "summary", cls.KEYS.get(name, name)

    def to_json(self, root: Path) -> dict[str, dict[str, Any]]:
        """``{"outputs": {...}, "summary": {...}}`` as the manifest records them."""
        sections: dict[str, dict[str, Any]] = {"outputs": {}, "summary": {}}
        for f in dataclasses.fields(self):
            section, key = self._place(f.name)
            sections[section][key] = _dump(getattr(self, f.name), root)
        return sections

    @classmethod
    def from_json(cls, manifest: dict[str, Any], root: Path, where: Path) -> StageRecord:
        """The record in ``manifest`` (read from ``where``); a `DataError` naming the missing
        key when it lacks one."""
        hints = get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            section, key = cls._place(f.name)
            recorded = manifest.get(section)
            if not isinstance(recorded, dict) or key not in recorded:
                if _has_default(f):
                    continue
                raise DataError(
                    f"{where}: the {cls.STAGE} stage's manifest has no {section} key {key!r} "
                    f"(made by another webly?); delete {where.parent} and run the recipe again"
                )
            values[f.name] = _load(recorded[key], hints[f.name], root)
        return cls(**values)


def _has_default(f: dataclasses.Field[Any]) -> bool:
    """Whether the record field ``f`` declares a default (a field added since `VERSION`)."""
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _dump(value: Any, root: Path) -> Any:
    """``value`` as JSON, its paths relative to ``root`` when inside it."""
    if isinstance(value, Path):
        return str(value.relative_to(root)) if value.is_relative_to(root) else str(value)
    if isinstance(value, dict):
        return {k: _dump(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_dump(v, root) for v in value]
    return value


def _load(value: Any, hint: Any, root: Path) -> Any:
    """A recorded field of type ``hint``, its paths joined to ``root``."""
    if value is not None and hint in (Path, Path | None):
        return root / value
    if hint == dict[str, Path]:
        return {k: root / v for k, v in value.items()}
    if hint == list[Path]:
        return [root / v for v in value]
    return value


@dataclass(frozen=True)
class DataRecord(StageRecord):
    """The training store (and test, unlabeled and validation ones, None when absent) and what
    they hold."""

    STAGE: ClassVar[str] = "data"
    OUTPUTS: ClassVar[tuple[str, ...]] = ("train", "test", "unlabeled", "valid")
    train: Path
    test: Path | None
    unlabeled: Path | None
    rows: dict[str, int]
    classes: int
    task: Task
    levels: list[str]
    noise: dict[str, Any] | None
    valid: Path | None = None  # data.valid_fraction's split: rows no model of the run trains on

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", Task.parse(self.task))


@dataclass(frozen=True)
class FoldsRecord(StageRecord):
    """``folds.npy`` (the fold of every training row), the number of folds and their rows."""

    STAGE: ClassVar[str] = "folds"
    OUTPUTS: ClassVar[tuple[str, ...]] = ("folds",)
    folds: Path
    n: int
    rows: list[int]


@dataclass(frozen=True)
class ZooRecord(StageRecord):
    """The trained members' prediction stores by id, and every member's row (failed ones
    too: ``model``, ``error``, figures)."""

    STAGE: ClassVar[str] = "zoo"
    OUTPUTS: ClassVar[tuple[str, ...]] = ("members",)
    KEYS: ClassVar[dict[str, str]] = {"table": "members"}
    members: dict[str, Path]
    table: list[dict[str, Any]]


@dataclass(frozen=True)
class CleanRecord(StageRecord):
    """The members of the kept round by id, the noise report their labels came from, each
    round's row, and each round's noise report (round 0 first; empty in manifests written
    before they were recorded)."""

    STAGE: ClassVar[str] = "clean"
    OUTPUTS: ClassVar[tuple[str, ...]] = ("members", "report", "reports")
    members: dict[str, Path]
    report: Path
    metric: str
    rounds: list[dict[str, Any]]
    best: int
    reports: list[Path] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class EnsembleRecord(StageRecord):
    """Every blend's and the stacker's prediction store, the best of them (the teacher), their
    figures and the members they combine."""

    STAGE: ClassVar[str] = "ensemble"
    OUTPUTS: ClassVar[tuple[str, ...]] = ("stores", "teacher")
    stores: dict[str, Path]
    teacher: str
    entries: dict[str, dict[str, Any]]
    members: list[str]


@dataclass(frozen=True)
class DistillRecord(StageRecord):
    """The kept students' stores and the final network (its folder and its store by id; None
    and empty when it was not asked for or failed), with what was tried."""

    STAGE: ClassVar[str] = "distill"
    OUTPUTS: ClassVar[tuple[str, ...]] = ("students", "final", "model")
    KEYS: ClassVar[dict[str, str]] = {"table": "students"}
    ROW: ClassVar[str] = "final"
    """The label of its final network's row in ``results.json``: ``"final: <id>"``."""
    students: dict[str, Path]
    final: dict[str, Path]
    model: Path | None
    table: list[dict[str, Any]]
    unlabeled_rows: int
    students_tried: list[dict[str, Any]] | None
    teacher: dict[str, Any] | None
    final_tried: list[dict[str, Any]] | None
    final_setting: str | None
    distilled: bool | None


@dataclass(frozen=True)
class LongtailRecord(StageRecord):
    """The final network with its classifier re-balanced (folder, store by id) and how."""

    STAGE: ClassVar[str] = "longtail"
    OUTPUTS: ClassVar[tuple[str, ...]] = ("model", "final")
    KEYS: ClassVar[dict[str, str]] = {"final_id": "final"}
    ROW: ClassVar[str] = "longtail"
    """The label of its network's row in ``results.json``: ``"longtail: <id>"``."""
    model: Path
    final: dict[str, Path]
    method: str
    final_id: str
    chosen: Any
    tau: float | None
    metric: str | None
    chosen_on: str | None
    sweep: list[dict[str, Any]] | None
    bands: dict[str, Any] | None
    bands_on: str | None
    test: dict[str, Any] | None


@dataclass(frozen=True)
class EvaluateRecord(StageRecord):
    """``results.json`` and the members' average (None without a trained member)."""

    STAGE: ClassVar[str] = "evaluate"
    OUTPUTS: ClassVar[tuple[str, ...]] = ("results",)
    KEYS: ClassVar[dict[str, str]] = {"average": "zoo average"}
    results: Path
    average: dict[str, float | None] | None


@dataclass(frozen=True)
class CompressRecord(StageRecord):
    """The choice folder (``frontier.json``, ``choice.json``), its kind and the frontier."""

    STAGE: ClassVar[str] = "compress"
    OUTPUTS: ClassVar[tuple[str, ...]] = ("choice", "kind")
    choice: Path
    kind: str
    frontier: list[dict[str, Any]]
    scored_on: str
    reported_on: str | None
    max_bytes: int


@dataclass(frozen=True)
class ExportRecord(StageRecord):
    """The exported model's folder, its files and figures."""

    STAGE: ClassVar[str] = "export"
    OUTPUTS: ClassVar[tuple[str, ...]] = ("model",)
    model: Path
    files: dict[str, Any]
    metrics: dict[str, Any] | None


@dataclass(frozen=True)
class ReportRecord(StageRecord):
    """``report.html``."""

    STAGE: ClassVar[str] = "report"
    OUTPUTS: ClassVar[tuple[str, ...]] = ("report",)
    report: Path


RECORDS: dict[str, type[StageRecord]] = {
    r.STAGE: r
    for r in (
        DataRecord, FoldsRecord, ZooRecord, CleanRecord, EnsembleRecord, DistillRecord,
        LongtailRecord, EvaluateRecord, CompressRecord, ExportRecord, ReportRecord,
    )
}  # fmt: skip
"""Every stage's record class, in the pipeline's order."""
STAGE_NAMES = tuple(RECORDS)

R = TypeVar("R", bound=StageRecord)


class UndeclaredInput(LookupError):
    """A stage asked for the record of a stage it does not declare it reads."""


@dataclass(frozen=True)
class StageStatus:
    """Where one stage stands. ``state``: done, failed, stale (its config or an upstream
    stage changed since it ran), unfinished (started, not finished: running or killed) or not
    run; ``skipped``: found done by this run."""

    name: str
    state: str
    key: str = ""
    finished: str | None = None
    seconds: float | None = None
    skipped: bool = False


@dataclass(frozen=True)
class Scoring:
    """What a run's figures are measured on: the test split with its clean labels when the
    store has them (else its given labels), or, without test labels, the training rows"
    out-of-fold predictions on the given labels."""

    split: str
    data: Dataset
    labels: sp.csr_matrix
    which: str


@dataclass(frozen=True)
class RunDir:
    """The run directory ``root``. ``readable``: the stages whose records may be read (a
    stage's declared inputs, `StageContext`); None: every stage."""

    root: Path
    readable: frozenset[str] | None = None

    @classmethod
    def of(cls, run: str | Path | RunDir) -> RunDir:
        """``run`` as a `RunDir` (itself when it is one)."""
        return run if isinstance(run, RunDir) else cls(Path(run))

    def only(self, stages: tuple[str, ...]) -> RunDir:
        """This run, readable only for ``stages``."""
        return RunDir(self.root, frozenset(stages))

    # ----------------------------------------------------------------------- layout

    @property
    def recipe_file(self) -> Path:
        return self.root / RECIPE_FILE

    def folder(self, stage: str) -> Path:
        """``RUN/<stage>``: where the stage writes its artifact."""
        return self.root / stage

    def manifest_file(self, stage: str) -> Path:
        return self.root / stage / MANIFEST

    def is_run(self) -> bool:
        """Whether ``root`` is a run directory (its ``recipe.yaml`` was written by webly run)."""
        try:
            with open(self.recipe_file, encoding="utf-8") as fh:
                return fh.readline() == RECIPE_HEADER
        except OSError:
            return False

    def check_run(self) -> None:
        """A `DataError` when ``root`` is not a run directory."""
        if not self.is_run():
            raise DataError(
                f"{self.root}: not a run directory (no {RECIPE_FILE} made by webly run); make "
                f"one with webly run RECIPE.yaml --out {self.root}"
            )

    def claim(self) -> None:
        """Make ``root`` a run's folder: refuse a file, or a folder that holds other things
        than a run."""
        if self.root.exists() and not self.root.is_dir():
            raise DataError(f"{self.root} is a file; pass a folder for the run (--out)")
        if self.root.is_dir() and any(self.root.iterdir()) and not self.is_run():
            raise DataError(
                f"{self.root} holds files but no {RECIPE_FILE} made by webly run, so it is not "
                "a run directory; pass a new or empty folder (--out)"
            )
        self.root.mkdir(parents=True, exist_ok=True)

    def recipe_text(self) -> str:
        """The resolved recipe, without its header line."""
        return self.recipe_file.read_text(encoding="utf-8").removeprefix(RECIPE_HEADER)

    def recipe(self) -> Recipe:
        """The run's resolved recipe; `ConfigError` when it no longer validates."""
        return load_recipe(self.recipe_file)

    # ----------------------------------------------------------------------- manifests

    def manifest(self, stage: str) -> dict[str, Any] | None:
        """The stage's manifest; None when it never ran (or its manifest is unreadable: it
        runs again). A `DataError` when the manifest is of another format or version."""
        path = self.manifest_file(stage)
        manifest = read_record(path)
        if manifest is None:
            return None
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            made = manifest.get("version", manifest.get("format_version"))
            raise DataError(
                f"{path}: a stage manifest of version {made}, this webly reads version "
                f"{VERSION}; run the recipe again into a new folder (webly run RECIPE --out NEW)"
            )
        return manifest

    def manifest_hash(self, stage: str) -> str | None:
        """The SHA-256 of the stage's manifest file, None without one."""
        return file_hash(self.manifest_file(stage))

    def write_manifest(self, stage: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Replace the stage's manifest by ``manifest`` (with its format, version and stage)
        atomically; return what was written."""
        written = {"format": FORMAT, "version": VERSION, "stage": stage, **manifest}
        self.folder(stage).mkdir(parents=True, exist_ok=True)
        return mark(self.manifest_file(stage), written["config_hash"], written["state"], written)

    # ----------------------------------------------------------------------- records

    def read(self, kind: type[R]) -> R | None:
        """The record of the stage ``kind`` is for; None when the stage made nothing (never
        ran, did not finish, or not in the recipe). `UndeclaredInput` when this view may not
        read it."""
        if self.readable is not None and kind.STAGE not in self.readable:
            raise UndeclaredInput(
                f"the {kind.STAGE} stage is not among the inputs this stage declares "
                f"({', '.join(sorted(self.readable)) or 'none'}); add it to its reads in "
                "webly.pipeline.STAGES"
            )
        manifest = self.manifest(kind.STAGE)
        if manifest is None or manifest.get("outputs") is None or manifest["state"] == RUNNING:
            return None
        record = kind.from_json(manifest, self.root, self.manifest_file(kind.STAGE))
        assert isinstance(record, kind)
        return record

    def need(self, kind: type[R]) -> R:
        """The record of the stage ``kind`` is for; a `DataError` when it made none."""
        record = self.read(kind)
        if record is None:
            raise DataError(
                f"{self.manifest_file(kind.STAGE)}: the {kind.STAGE} stage has not finished; "
                f"finish the run (webly run RECIPE --out {self.root})"
            )
        return record

    def members(self) -> dict[str, Path]:
        """``{member id: prediction store}`` of the zoo members the run ends with: the clean
        stage's kept round when it ran, else the zoo stage's (``{}`` before either ran)."""
        cleaned = self.read(CleanRecord)
        if cleaned is not None:
            return dict(cleaned.members)
        zoo = self.read(ZooRecord)
        return dict(zoo.members) if zoo is not None else {}

    def first_noise_report(self) -> Path | None:
        """The folder of the clean stage's first `NoiseReport`: its verdict on the zoo stage's
        out-of-fold predictions (the labels round 1 trained on); None before the clean stage
        finished."""
        clean = self.read(CleanRecord)
        if clean is None:
            return None
        if clean.reports:
            return clean.reports[0]
        if clean.best <= 1:  # recorded without ``reports``: ``report`` is round max(best-1, 0)'s
            return clean.report
        raise DataError(
            f"{self.manifest_file(CleanRecord.STAGE)}: the clean stage's manifest names no "
            f"first-round noise report (made by an earlier webly); delete "
            f"{self.folder(CleanRecord.STAGE)} and run the recipe again"
        )

    def final(self) -> LongtailRecord | DistillRecord | None:
        """The record of the final network the run deploys: the long-tail stage's (distill's
        network, re-balanced) when it made one, else distill's when it made one; None when
        neither did."""
        longtail = self.read(LongtailRecord)
        if longtail is not None:
            return longtail
        distill = self.read(DistillRecord)
        return distill if distill is not None and distill.model is not None else None

    def results(self) -> dict[str, Any] | None:
        """The evaluation (``results.json``), None before the evaluate stage finished."""
        evaluate = self.read(EvaluateRecord)
        if evaluate is None:
            return None
        results: dict[str, Any] = json.loads(evaluate.results.read_text())
        return results

    def splits(self) -> tuple[Dataset, Dataset | None]:
        """The training and test stores the data stage made or pointed at."""
        data = self.need(DataRecord)
        return Dataset.open(data.train), Dataset.open(data.test) if data.test else None

    def scoring(self) -> Scoring:
        """The `Scoring` of the run's data."""
        train, test = self.splits()
        if test is not None and test.labels.nnz:
            clean = test.clean_labels
            if clean is not None:
                return Scoring("test", test, clean, "clean")
            return Scoring("test", test, test.labels, "given")
        return Scoring("oof", train, train.labels, "given")

    def statuses(self) -> list[StageStatus]:
        """Every stage's state as its manifest records it (``running`` is unfinished: running
        or killed); `webly.pipeline.run_status` also tells the stale ones."""
        statuses = []
        for stage in STAGE_NAMES:
            manifest = self.manifest(stage)
            if manifest is None:
                statuses.append(StageStatus(stage, "not run"))
                continue
            state = "unfinished" if manifest["state"] == RUNNING else manifest["state"]
            statuses.append(status(manifest, state))
        return statuses


def status(manifest: dict[str, Any], state: str, skipped: bool = False) -> StageStatus:
    """The `StageStatus` of a stage manifest, in ``state``."""
    return StageStatus(
        name=manifest["stage"],
        state=state,
        key=manifest.get("key", ""),
        finished=manifest.get("finished"),
        seconds=manifest.get("seconds"),
        skipped=skipped,
    )
