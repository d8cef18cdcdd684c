"""The stage pipeline: ``webly run RECIPE.yaml --out RUN`` (`run_recipe`) and ``webly status
RUN`` (`run_status`). The only module that knows the order of the stages:
data -> folds -> zoo -> clean -> ensemble -> distill -> longtail -> evaluate -> compress ->
export -> report (what each does: `webly.stages`).

The run directory::

    RUN/recipe.yaml              the resolved recipe of the latest run (`webly.config.dump_recipe`
                                 under a header line that marks the folder as a run directory)
    RUN/<stage>/manifest.json    stage, state, config hash, the stage's resolved config, the
                                 hashes of the manifests it read, started and finished (UTC),
                                 seconds (over every attempt under the same config hash: a
                                 killed one counts up to the last file it wrote), key figure,
                                 outputs, summary, errors
    RUN/<stage>/...              the stage's artifact

A stage's config hash is the SHA-256 of its resolved config (its recipe section, with the seed
where it uses it) and of the manifest files of the stages it reads, so it changes when its own
section changes or a stage upstream ran again. Resuming:

- a stage whose manifest says ``done`` under the hash it would run with now is skipped;
- any other stage runs: its manifest first says ``running`` (a killed run is never taken for
  done), then ``done`` or ``failed``. Artifacts are written atomically, the zoo's member by
  member, so running the same command again resumes where a killed run stopped;
- a zoo member that fails (NaN loss) leaves the zoo stage ``failed`` while the run goes on to
  evaluate the others; the next run trains only what is not finished;
- a stage that raises a user error (`WeblyError`) is recorded ``failed`` with its message and
  the run stops;
- an optional stage whose section the recipe lacks records "not in the recipe" (later stages
  and ``webly status`` read it) and prints nothing; the display counts the others only.

Nothing is written before the recipe is valid and the data source's inputs exist; ``RUN`` must
be new, empty or a run directory. One ``webly run`` at a time per run directory.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from webly._fs import file_hash, write_atomic
from webly.config import Recipe, dump_recipe, load_recipe
from webly.data.store import MANIFEST, read_manifest
from webly.distill.settings import settings
from webly.errors import DataError, WeblyError
from webly.executor import Executor, make_executor
from webly.models import model_entry
from webly.progress import RunDisplay, run_display
from webly.stages import (
    StageContext,
    StageResult,
    check_data,
    clean_config,
    compress_config,
    data_config,
    distill_config,
    ensemble_config,
    evaluate_config,
    evaluate_zoo,
    export_config,
    export_model,
    folds_config,
    longtail_config,
    make_clean,
    make_compress,
    make_data,
    make_distill,
    make_ensemble,
    make_folds,
    make_longtail,
    make_report,
    make_zoo,
    report_config,
    zoo_config,
)
from webly.tracking import Tracker, open_tracker
from webly.train.loop import TrainConfig
from webly.train.zoo import Zoo

FORMAT = "webly-stage"
FORMAT_VERSION = 1
RECIPE_FILE = "recipe.yaml"
RECIPE_HEADER = "# webly run: the resolved recipe of this run directory\n"
"""First line of ``RUN/recipe.yaml``: what tells a run directory from any folder with a recipe."""


@dataclass(frozen=True)
class Stage:
    """One stage: its name (its folder), the stages whose artifacts it reads, the part of the
    recipe its artifact depends on, and what it does."""

    name: str
    reads: tuple[str, ...]
    config: Callable[[Recipe], dict[str, Any]]
    run: Callable[[StageContext], StageResult]
    optional: bool = False
    """Runs only when the recipe has a section of its name; without one it records "not in
    the recipe" and prints nothing."""

    def planned(self, recipe: Recipe) -> bool:
        """Whether ``recipe`` asks for this stage."""
        return not self.optional or getattr(recipe, self.name) is not None


STAGES = (
    Stage("data", (), data_config, make_data),
    Stage("folds", ("data",), folds_config, make_folds),
    Stage("zoo", ("data", "folds"), zoo_config, make_zoo),
    Stage("clean", ("data", "folds", "zoo"), clean_config, make_clean, optional=True),
    Stage(
        "ensemble",
        ("data", "folds", "zoo", "clean"),
        ensemble_config,
        make_ensemble,
        optional=True,
    ),
    Stage(
        "distill",
        ("data", "folds", "zoo", "clean", "ensemble"),
        distill_config,
        make_distill,
        optional=True,
    ),
    Stage("longtail", ("data", "folds", "distill"), longtail_config, make_longtail, optional=True),
    Stage(
        "evaluate",
        ("data", "zoo", "ensemble", "distill", "longtail"),
        evaluate_config,
        evaluate_zoo,
    ),
    Stage(
        "compress",
        ("zoo", "ensemble", "distill", "longtail", "evaluate"),
        compress_config,
        make_compress,
        optional=True,
    ),
    Stage(
        "export",
        ("data", "distill", "longtail", "compress"),
        export_config,
        export_model,
        optional=True,
    ),
    Stage(
        "report",
        (
            "data",
            "folds",
            "zoo",
            "clean",
            "ensemble",
            "distill",
            "longtail",
            "evaluate",
            "compress",
            "export",
        ),
        report_config,
        make_report,
    ),
)


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
class RunResult:
    """What `run_recipe` did: the run directory and every stage, in order."""

    run: Path
    stages: list[StageStatus]
    errors: list[str]
    results: dict[str, Any] | None

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def run_recipe(
    recipe_file: str | Path,
    out: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    console: Console | None = None,
) -> RunResult:
    """``webly run RECIPE.yaml --out RUN [--set KEY=VALUE ...]``: load, then `run_pipeline`."""
    return run_pipeline(load_recipe(recipe_file, overrides), out, console)


def run_pipeline(recipe: Recipe, out: str | Path, console: Console | None = None) -> RunResult:
    """Run the stages of ``recipe`` in the run directory ``out``, skipping what is done.

    Prints a line per stage to ``console`` (none when None). Returns every stage's state,
    the failures of zoo members, and the evaluation (``results.json``).
    """
    console = console or Console(quiet=True)
    run = Path(out)
    check_data(recipe)
    executor = make_executor(recipe.executor)  # a Ray head that does not answer fails here
    _claim(run)
    text = RECIPE_HEADER + dump_recipe(recipe)
    recipe_path = run / RECIPE_FILE
    if not recipe_path.is_file() or recipe_path.read_text() != text:
        write_atomic(recipe_path, text.encode())
    tracker = open_tracker(recipe.tracking, run, yaml.safe_load(dump_recipe(recipe)))
    if (logged_to := tracker.where()) is not None:
        console.print(f"tracking: {logged_to}", highlight=False, soft_wrap=True)
    failed = True
    try:
        with run_display(console) as display:
            stages, errors = _run_stages(recipe, run, console, executor, display, tracker)
        results = read_results(run)
        if results is not None:
            tracker.results(results)
        for report in sorted((run / "report").glob("*.html")):
            tracker.artifact(report, "report")
        failed = bool(errors)
    finally:
        tracker.end(failed)
    return RunResult(run, stages, errors, results)


def _run_stages(
    recipe: Recipe,
    run: Path,
    console: Console,
    executor: Executor,
    display: RunDisplay,
    tracker: Tracker,
) -> tuple[list[StageStatus], list[str]]:
    """Every stage in order, skipping what is done: their statuses and members' failures.
    A stage the recipe does not ask for records "not in the recipe" without a line or a
    place on the display; the display counts the planned stages only."""
    stages, errors = [], []
    planned = [stage.name for stage in STAGES if stage.planned(recipe)]
    to_do, training = _to_do(recipe, run), _training(recipe)
    for index, stage in enumerate(STAGES):
        shown = stage.planned(recipe)
        say = console.print if shown else _silent
        if shown:
            display.stage(stage.name, planned.index(stage.name), len(planned))
            later: dict[str, int] = {}
            for after in STAGES[index + 1 :]:
                for model, epochs in training.get(after.name, {}).items():
                    if after.name in to_do:
                        later[model] = later.get(model, 0) + epochs
            display.later(later)
        config, inputs, digest = _plan(stage, recipe, run)
        manifest = _read_stage(run, stage.name)
        if (
            manifest is not None
            and manifest["state"] == "done"
            and manifest["config_hash"] == digest
        ):
            say(f"{stage.name}: done, skipped: {manifest['key']}", highlight=False)
            tracker.stage(stage.name, manifest)
            stages.append(_status(manifest, "done", skipped=True))
            continue
        say(f"{stage.name}: running", highlight=False)
        manifest = _run_stage(stage, recipe, run, config, inputs, digest, console, executor)
        say(
            f"{stage.name}: {manifest['state']} in {manifest['seconds']:.1f} s: {manifest['key']}",
            highlight=False,
        )
        tracker.stage(stage.name, manifest)
        stages.append(_status(manifest, manifest["state"]))
        errors += manifest["errors"]
    return stages, errors


def _to_do(recipe: Recipe, run: Path) -> set[str]:
    """The stages this run will run, as far as can be told before it starts: those not done
    under the config hash they would run with now, and those reading one of them."""
    to_do: set[str] = set()
    for stage in STAGES:
        manifest = _read_stage(run, stage.name)
        if (
            manifest is None
            or manifest["state"] != "done"
            or manifest["config_hash"] != _plan(stage, recipe, run)[2]
            or any(name in to_do for name in stage.reads)
        ):
            to_do.add(stage.name)
    return to_do


def _training(recipe: Recipe) -> dict[str, dict[str, int]]:
    """The epochs of training each stage of ``recipe`` plans, by model, for the time left on
    the run's display: every fold of the zoo's network members, again for each clean round,
    and the distill students (every fold) and final model (once), at each distillation
    setting tried."""

    def epochs(zoo: Zoo, fits: int, into: dict[str, int]) -> dict[str, int]:
        for spec in zoo.members:
            if model_entry(spec.name).trains_with_epochs:
                n = int({**zoo.train, **spec.train}.get("epochs", TrainConfig.epochs))
                into[spec.member_id] = into.get(spec.member_id, 0) + fits * n
        return into

    plan = {"zoo": epochs(recipe.zoo, recipe.zoo.folds, {})}
    if recipe.clean is not None:
        plan["clean"] = {m: n * recipe.clean.rounds for m, n in plan["zoo"].items()}
    distill: dict[str, int] = {}
    for name, zoo in recipe.student_zoos().items():
        assert recipe.distill is not None  # it has student zoos
        mixup = name == "final" and recipe.distill.mixup is not None
        tried = len(settings(recipe.distill.lam, mixup))
        epochs(zoo, tried * (zoo.folds if name == "students" else 1), distill)
    if distill:
        plan["distill"] = distill
    return plan


def _silent(*_: Any, **__: Any) -> None:
    """What a stage the recipe does not ask for prints: nothing."""


def run_status(out: str | Path) -> list[StageStatus]:
    """``webly status RUN``: each stage's state against the run's recipe, finished time,
    seconds and key figure. `DataError` when ``out`` is not a run directory."""
    run = Path(out)
    if not _is_run(run):
        raise DataError(
            f"{run}: not a run directory (no {RECIPE_FILE} made by webly run); make one with "
            f"webly run RECIPE.yaml --out {run}"
        )
    recipe = load_recipe(run / RECIPE_FILE)
    statuses: list[StageStatus] = []
    behind = False  # an upstream stage is not up to date
    for stage in STAGES:
        manifest = _read_stage(run, stage.name)
        if manifest is None:
            statuses.append(StageStatus(stage.name, "not run"))
            behind = True
            continue
        if manifest["state"] == "running":
            state = "unfinished"
        elif behind or manifest["config_hash"] != _plan(stage, recipe, run)[2]:
            state = "stale"
        else:
            state = manifest["state"]
        behind = behind or state in ("unfinished", "stale")
        statuses.append(_status(manifest, state))
    return statuses


def stage_outputs(out: str | Path, stage: str) -> dict[str, Path]:
    """The paths a finished stage of the run in ``out`` recorded in its outputs (e.g. the data
    stage's ``train`` and ``test`` stores); empty before the stage ran."""
    run = Path(out)
    manifest = _read_stage(run, stage)
    outputs = manifest.get("outputs", {}) if manifest is not None else {}
    return {key: run / value for key, value in outputs.items() if isinstance(value, str)}


def stage_summary(out: str | Path, stage: str) -> dict[str, Any]:
    """The summary a finished stage of the run in ``out`` recorded (e.g. the clean stage's
    rounds); empty before the stage ran."""
    manifest = _read_stage(Path(out), stage)
    summary: dict[str, Any] = manifest.get("summary", {}) if manifest is not None else {}
    return summary


def read_results(out: str | Path) -> dict[str, Any] | None:
    """The evaluation of the run in ``out`` (``results.json``), None before it is made."""
    path = stage_outputs(out, "evaluate").get("results")
    if path is None:
        return None
    results: dict[str, Any] = json.loads(path.read_text())
    return results


# --------------------------------------------------------------------------- internals


def _claim(run: Path) -> None:
    """Refuse an ``--out`` that holds other things than a run."""
    if run.exists() and not run.is_dir():
        raise DataError(f"{run} is a file; pass a folder for the run (--out)")
    if run.is_dir() and any(run.iterdir()) and not _is_run(run):
        raise DataError(
            f"{run} holds files but no {RECIPE_FILE} made by webly run, so it is not a run "
            "directory; pass a new or empty folder (--out)"
        )
    run.mkdir(parents=True, exist_ok=True)


def _is_run(run: Path) -> bool:
    try:
        with open(run / RECIPE_FILE) as fh:
            return fh.readline() == RECIPE_HEADER
    except OSError:
        return False


def _plan(stage: Stage, recipe: Recipe, run: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The stage's resolved config, the hashes of the manifests it reads, and its hash."""
    config = stage.config(recipe)
    inputs = {name: file_hash(run / name / MANIFEST) for name in stage.reads}
    blob = json.dumps({"stage": stage.name, "config": config, "inputs": inputs}, sort_keys=True)
    return config, inputs, hashlib.sha256(blob.encode()).hexdigest()


def _run_stage(
    stage: Stage,
    recipe: Recipe,
    run: Path,
    config: dict[str, Any],
    inputs: dict[str, Any],
    digest: str,
    console: Console,
    executor: Executor,
) -> dict[str, Any]:
    """Run one stage between a ``running`` manifest and its final one; returns the latter.
    Its ``seconds`` add up every attempt under the same config hash (`_earlier_seconds`)."""
    earlier = _earlier_seconds(run, stage.name, digest)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "stage": stage.name,
        "state": "running",
        "config_hash": digest,
        "config": config,
        "inputs": inputs,
        "started": _now(),
        "seconds": earlier,
        "attempt_started": time.time(),
    }
    _write_stage(run, stage.name, manifest)
    started = time.perf_counter() - earlier
    read = {name: _read_stage(run, name) or {} for name in stage.reads}
    try:
        result = stage.run(StageContext(recipe, run, stage.name, read, console, executor))
    except WeblyError as err:
        failed = {"state": "failed", "key": str(err), "errors": [str(err)]}
        _write_stage(run, stage.name, {**manifest, **_finished(started), **failed})
        raise
    manifest |= {
        "state": "failed" if result.errors else "done",
        **_finished(started),
        "key": result.key,
        "outputs": result.outputs,
        "summary": result.summary,
        "errors": list(result.errors),
    }
    _write_stage(run, stage.name, manifest)
    return manifest


def _finished(started: float) -> dict[str, Any]:
    return {"finished": _now(), "seconds": time.perf_counter() - started}


def _earlier_seconds(run: Path, name: str, digest: str) -> float:
    """The seconds earlier attempts at stage ``name`` spent under the config hash ``digest``:
    a failed one's as recorded, one killed while ``running`` from its start to the last file
    it wrote under ``RUN/<stage>``; 0 when the stage never ran under ``digest``."""
    manifest = _read_stage(run, name)
    if manifest is None or manifest.get("config_hash") != digest:
        return 0.0
    seconds = float(manifest.get("seconds") or 0.0)
    if manifest["state"] == "failed":
        return seconds
    started = manifest.get("attempt_started")
    if manifest["state"] != "running" or not isinstance(started, int | float):
        return 0.0
    folder = run / name
    last = max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=started)
    return seconds + max(last - started, 0.0)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(manifest: dict[str, Any], state: str, skipped: bool = False) -> StageStatus:
    return StageStatus(
        name=manifest["stage"],
        state=state,
        key=manifest.get("key", ""),
        finished=manifest.get("finished"),
        seconds=manifest.get("seconds"),
        skipped=skipped,
    )


def _write_stage(run: Path, name: str, manifest: dict[str, Any]) -> None:
    (run / name).mkdir(parents=True, exist_ok=True)
    write_atomic(run / name / MANIFEST, json.dumps(manifest, indent=1).encode())


def _read_stage(run: Path, name: str) -> dict[str, Any] | None:
    """The stage's manifest, None when there is none (or an unreadable one: run it again)."""
    if not (run / name / MANIFEST).is_file():
        return None
    try:
        return read_manifest(
            run / name, FORMAT, FORMAT_VERSION, "a stage folder", "run the recipe", "run it again"
        )
    except DataError:
        return None
