"""The stage pipeline: ``webly run RECIPE.yaml --out RUN`` (`run_recipe`) and ``webly status
RUN`` (`run_status`). The only module that knows the order of the stages:
data -> folds -> zoo -> clean -> ensemble -> distill -> longtail -> evaluate -> compress ->
export -> report (what each does: `webly.stages`).

The run directory's layout, its manifests and what each stage records: `webly.rundir.RunDir`.
Each stage declares the stages it reads (`Stage.reads`); its `StageContext` hands it only
their records.

A stage's config hash is the SHA-256 of its resolved config (its recipe section, with the seed
where it uses it) and of the manifest files of the stages it reads, so it changes when its own
section changes or a stage upstream ran again. Resuming:

- a stage whose manifest says ``done`` under the hash it would run with now is skipped
  (`webly.resume`, the rule the zoo's members and the clean rounds follow too);
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

from webly._fs import write_atomic
from webly.config import Recipe, dump_recipe, load_recipe
from webly.distill.settings import final_extras, settings
from webly.errors import WeblyError
from webly.executor import Executor, make_executor
from webly.models import model_entry
from webly.progress import RunDisplay, run_display
from webly.resume import DONE, FAILED, RUNNING, is_done
from webly.rundir import (
    RECIPE_HEADER,
    CleanRecord,
    CompressRecord,
    DataRecord,
    DistillRecord,
    EnsembleRecord,
    EvaluateRecord,
    ExportRecord,
    FoldsRecord,
    LongtailRecord,
    ReportRecord,
    RunDir,
    StageRecord,
    StageStatus,
    ZooRecord,
    status,
)
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


@dataclass(frozen=True)
class Stage:
    """One stage: what it records (its `StageRecord`, which names it and its folder), the
    stages whose records it reads (its `StageContext` hands it only those), the part of the
    recipe its artifact depends on, and what it does."""

    record: type[StageRecord]
    reads: tuple[str, ...]
    config: Callable[[Recipe], dict[str, Any]]
    run: Callable[[StageContext], StageResult]
    optional: bool = False
    """Runs only when the recipe has a section of its name; without one it records "not in
    the recipe" and prints nothing."""

    @property
    def name(self) -> str:
        return self.record.STAGE

    def planned(self, recipe: Recipe) -> bool:
        """Whether ``recipe`` asks for this stage."""
        return not self.optional or getattr(recipe, self.name) is not None


STAGES = (
    Stage(DataRecord, (), data_config, make_data),
    Stage(FoldsRecord, ("data",), folds_config, make_folds),
    Stage(ZooRecord, ("data", "folds"), zoo_config, make_zoo),
    Stage(CleanRecord, ("data", "folds", "zoo"), clean_config, make_clean, optional=True),
    Stage(
        EnsembleRecord,
        ("data", "folds", "zoo", "clean"),
        ensemble_config,
        make_ensemble,
        optional=True,
    ),
    Stage(
        DistillRecord,
        ("data", "folds", "zoo", "clean", "ensemble"),
        distill_config,
        make_distill,
        optional=True,
    ),
    Stage(
        LongtailRecord,
        ("data", "folds", "distill"),
        longtail_config,
        make_longtail,
        optional=True,
    ),
    Stage(
        EvaluateRecord,
        ("data", "zoo", "clean", "ensemble", "distill", "longtail"),
        evaluate_config,
        evaluate_zoo,
    ),
    Stage(
        CompressRecord,
        ("data", "folds", "zoo", "clean", "ensemble", "distill", "longtail", "evaluate"),
        compress_config,
        make_compress,
        optional=True,
    ),
    Stage(
        ExportRecord,
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
        ),
        export_config,
        export_model,
        optional=True,
    ),
    Stage(
        ReportRecord,
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
    run = RunDir(Path(out))
    check_data(recipe)
    executor = make_executor(recipe.executor)  # a Ray head that does not answer fails here
    run.claim()
    text = RECIPE_HEADER + dump_recipe(recipe)
    if not run.recipe_file.is_file() or run.recipe_file.read_text() != text:
        write_atomic(run.recipe_file, text.encode())
    tracker = open_tracker(recipe.tracking, run.root, yaml.safe_load(dump_recipe(recipe)))
    if (logged_to := tracker.where()) is not None:
        console.print(f"tracking: {logged_to}", highlight=False, soft_wrap=True)
    failed = True
    try:
        with run_display(console) as display:
            stages, errors = _run_stages(recipe, run, console, executor, display, tracker)
        results = run.results()
        if results is not None:
            tracker.results(results)
        for report in sorted(run.folder("report").glob("*.html")):
            tracker.artifact(report, "report")
        failed = bool(errors)
    finally:
        tracker.end(failed)
    return RunResult(run.root, stages, errors, results)


def _run_stages(
    recipe: Recipe,
    run: RunDir,
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
        manifest = run.manifest(stage.name)
        if manifest is not None and is_done(manifest, digest):
            say(f"{stage.name}: done, skipped: {manifest['key']}", highlight=False)
            tracker.stage(stage.name, manifest)
            stages.append(status(manifest, DONE, skipped=True))
            continue
        say(f"{stage.name}: running", highlight=False)
        manifest = _run_stage(stage, recipe, run, config, inputs, digest, console, executor)
        say(
            f"{stage.name}: {manifest['state']} in {manifest['seconds']:.1f} s: {manifest['key']}",
            highlight=False,
        )
        tracker.stage(stage.name, manifest)
        stages.append(status(manifest, manifest["state"]))
        errors += manifest["errors"]
    return stages, errors


def _to_do(recipe: Recipe, run: RunDir) -> set[str]:
    """The stages this run will run, as far as can be told before it starts: those not done
    under the config hash they would run with now, and those reading one of them."""
    to_do: set[str] = set()
    for stage in STAGES:
        if not is_done(run.manifest(stage.name), _plan(stage, recipe, run)[2]) or any(
            name in to_do for name in stage.reads
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
        extras = final_extras(recipe.distill) if name == "final" else ()
        section = recipe.distill
        tried = len(settings(section.lam, extras, section.temperature, section.k))
        epochs(zoo, tried * (zoo.folds if name == "students" else 1), distill)
    if distill:
        plan["distill"] = distill
    return plan


def _silent(*_: Any, **__: Any) -> None:
    """What a stage the recipe does not ask for prints: nothing."""


def run_status(out: str | Path) -> list[StageStatus]:
    """``webly status RUN``: each stage's state against the run's recipe, finished time,
    seconds and key figure. `DataError` when ``out`` is not a run directory."""
    run = RunDir(Path(out))
    run.check_run()
    recipe = run.recipe()
    statuses: list[StageStatus] = []
    behind = False  # an upstream stage is not up to date
    for stage in STAGES:
        manifest = run.manifest(stage.name)
        if manifest is None:
            statuses.append(StageStatus(stage.name, "not run"))
            behind = True
            continue
        if manifest["state"] == RUNNING:
            state = "unfinished"
        elif behind or manifest["config_hash"] != _plan(stage, recipe, run)[2]:
            state = "stale"
        else:
            state = manifest["state"]
        behind = behind or state in ("unfinished", "stale")
        statuses.append(status(manifest, state))
    return statuses


# --------------------------------------------------------------------------- internals


def _plan(stage: Stage, recipe: Recipe, run: RunDir) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The stage's resolved config, the hashes of the manifests it reads, and its hash."""
    config = stage.config(recipe)
    inputs = {name: run.manifest_hash(name) for name in stage.reads}
    blob = json.dumps({"stage": stage.name, "config": config, "inputs": inputs}, sort_keys=True)
    return config, inputs, hashlib.sha256(blob.encode()).hexdigest()


def _run_stage(
    stage: Stage,
    recipe: Recipe,
    run: RunDir,
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
        "state": RUNNING,
        "config_hash": digest,
        "config": config,
        "inputs": inputs,
        "started": _now(),
        "seconds": earlier,
        "attempt_started": time.time(),
    }
    manifest = run.write_manifest(stage.name, manifest)
    started = time.perf_counter() - earlier
    context = StageContext(recipe, run.only(stage.reads), stage.name, console, executor)
    try:
        result = stage.run(context)
    except WeblyError as err:
        failed = {"state": FAILED, "key": str(err), "errors": [str(err)]}
        run.write_manifest(stage.name, {**manifest, **_finished(started), **failed})
        raise
    if result.record is not None and not isinstance(result.record, stage.record):
        raise TypeError(f"the {stage.name} stage returned a {type(result.record).__name__}")
    made = result.record.to_json(run.root) if result.record is not None else {}
    manifest |= {
        "state": FAILED if result.errors else DONE,
        **_finished(started),
        "key": result.key,
        "outputs": made.get("outputs"),
        "summary": made.get("summary"),
        "errors": list(result.errors),
    }
    return run.write_manifest(stage.name, manifest)


def _finished(started: float) -> dict[str, Any]:
    return {"finished": _now(), "seconds": time.perf_counter() - started}


def _earlier_seconds(run: RunDir, name: str, digest: str) -> float:
    """The seconds earlier attempts at stage ``name`` spent under the config hash ``digest``:
    a failed one's as recorded, one killed while ``running`` from its start to the last file
    it wrote under ``RUN/<stage>``; 0 when the stage never ran under ``digest``."""
    manifest = run.manifest(name)
    if manifest is None or manifest.get("config_hash") != digest:
        return 0.0
    seconds = float(manifest.get("seconds") or 0.0)
    if manifest["state"] == FAILED:
        return seconds
    started = manifest.get("attempt_started")
    if manifest["state"] != RUNNING or not isinstance(started, int | float):
        return 0.0
    folder = run.folder(name)
    last = max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=started)
    return seconds + max(last - started, 0.0)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
