"""What each stage of a recipe does: one function per stage, from its section of the recipe and
the artifacts of the stages it reads to its own artifact in ``RUN/<stage>/``.

`webly.pipeline` orders the stages, hashes their configs, writes their manifests and skips what
is done; a stage function makes its artifact and says what it made (`StageResult`). Artifacts::

    data/       train/, test/ (and unlabeled/) stores, generated or imported (none for a
                ``store`` source: its stores are read in place, never copied or modified)
    folds/      folds.npy: (n_samples,) int8 fold of every training row
    zoo/        one folder per member (`webly.train.oof.fit_oof`), resumed in place
    evaluate/   results.json: every member's figures and the zoo average's

Each stage also has a config function: the part of the recipe its artifact depends on, which
its manifest hash covers. Adding a stage: a config model in `webly.config` (a `Recipe` field),
a config function and a stage function here, and a line in `webly.pipeline.STAGES`.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from rich.console import Console
from rich.table import Table

from webly.config import BuiltinData, DataSource, Recipe, StoreData, SynthData, YT8MData
from webly.data.builtin import builtin_digits
from webly.data.products import ProductsLikeConfig, synth_products_like
from webly.data.store import MANIFEST, Dataset, atomic_output
from webly.data.synth import synth_yt8m_like
from webly.data.yt8m import import_yt8m
from webly.errors import DataError
from webly.metrics.evaluate import format_cell, loss_sum, task_metric
from webly.metrics.ranking import TopK, select_top_k
from webly.predictions import Predictions
from webly.train.loop import GAP_K
from webly.train.oof import MemberResult, fit_oof

SPLITS = ("train", "test", "unlabeled")
FOLDS_FILE, RESULTS_FILE = "folds.npy", "results.json"
AVERAGE = "zoo average"
_BLOCK_BYTES = 64 << 20  # dense (rows, n_classes) float32 block of the zoo average


@dataclass(frozen=True)
class StageContext:
    """What a stage function gets: the recipe, the run directory, its own name and the
    manifests of the stages it reads, by name."""

    recipe: Recipe
    run: Path
    name: str
    inputs: dict[str, dict[str, Any]]
    console: Console

    @property
    def folder(self) -> Path:
        """``RUN/<stage>``: where the stage writes its artifact."""
        return self.run / self.name

    def output(self, stage: str, key: str) -> Path | None:
        """A path the stage ``stage`` recorded under ``key`` in its outputs, or None."""
        value = self.inputs[stage]["outputs"].get(key)
        return self.run / value if value is not None else None


@dataclass(frozen=True)
class StageResult:
    """What a stage made. ``key``: its headline in one line (``webly status``); ``outputs``:
    paths later stages read (relative to the run directory, or absolute); ``summary``:
    JSON figures for the manifest; ``errors``: failures that leave the stage failed while the
    run goes on (a zoo member's NaN loss)."""

    key: str
    outputs: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    errors: tuple[str, ...] = ()


def file_hash(path: Path) -> str | None:
    """SHA-256 of the file at ``path``, None when there is none."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` in one step: a temporary file beside it, fsync, rename,
    fsync of the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


# --------------------------------------------------------------------------- data


def data_config(recipe: Recipe) -> dict[str, Any]:
    """The source section; the seed for generated data; the stores' manifest hashes or the
    TFRecord files (name and size) read, so a changed input re-runs the stage."""
    name, source = recipe.data.source
    config: dict[str, Any] = {name: source.model_dump(mode="json")}
    if isinstance(source, SynthData | BuiltinData):
        config["seed"] = recipe.seed
    elif isinstance(source, StoreData):
        config["manifests"] = {
            split: file_hash(path / MANIFEST) for split, path in _store_paths(source).items()
        }
    else:
        config["files"] = {
            split: [[str(p), p.stat().st_size] for p in _tfrecords(pattern)]
            for split, pattern in _yt8m_patterns(source).items()
        }
    return config


def check_data(recipe: Recipe) -> None:
    """Fail (`DataError`) when the inputs of the data source are missing: before a run writes
    anything."""
    _, source = recipe.data.source
    if isinstance(source, StoreData):
        for path in _store_paths(source).values():
            Dataset.open(path)
    elif isinstance(source, YT8MData):
        for split, pattern in _yt8m_patterns(source).items():
            if not _tfrecords(pattern):
                raise DataError(
                    f"data.yt8m.{split}: no files match {pattern!r}; check the path and the glob"
                )


def make_data(ctx: StageContext) -> StageResult:
    """Generate or import the splits into ``RUN/data`` (atomically), or point at the stores of
    a ``store`` source; describe the training split."""
    _, source = ctx.recipe.data.source
    with atomic_output(ctx.folder, overwrite=True) as tmp:
        noise = _make_splits(source, ctx.recipe.seed, tmp)
    if isinstance(source, StoreData):
        paths = {split: str(path) for split, path in _store_paths(source).items()}
    else:
        paths = {s: f"{ctx.name}/{s}" for s in SPLITS if (ctx.folder / s).is_dir()}
    stores = {split: Dataset.open(ctx.run / path) for split, path in paths.items()}
    rows = {split: len(store) for split, store in stores.items()}
    train = stores["train"]
    split_rows = " / ".join(f"{n:,} {split}" for split, n in rows.items())
    return StageResult(
        key=f"{split_rows} rows, {train.n_classes:,} classes ({train.task})",
        outputs=paths,
        summary={
            "rows": rows,
            "classes": train.n_classes,
            "task": train.task,
            "levels": sorted({f.level for f in train.layout.features}),
            "noise": noise,
        },
    )


def _make_splits(source: DataSource, seed: int, out: Path) -> dict[str, float]:
    """Write the splits of a generated or imported source into ``out`` (nothing for a
    ``store`` source); the realized train label noise of generated ones."""
    if isinstance(source, SynthData):
        config = source.generator_config(seed)
        if isinstance(config, ProductsLikeConfig):
            return synth_products_like(out, config, overwrite=True).noise
        return synth_yt8m_like(out, config, overwrite=True).realized
    if isinstance(source, BuiltinData):
        summary = builtin_digits(
            out,
            noise=source.noise,
            rate=source.rate,
            seed=seed,
            test_fraction=source.test_fraction,
            overwrite=True,
        )
        return summary.noise
    if isinstance(source, YT8MData):
        for split, pattern in _yt8m_patterns(source).items():
            import_yt8m(
                pattern,
                out / split,
                source.level,
                names=source.names,
                skip_corrupt=source.skip_corrupt,
                n_classes=source.n_classes,
                video_dtype=source.video_dtype,
            )
    return {}


def _store_paths(source: StoreData) -> dict[str, Path]:
    return {"train": source.train} | ({"test": source.test} if source.test is not None else {})


def _yt8m_patterns(source: YT8MData) -> dict[str, str]:
    return {"train": source.train} | ({"test": source.test} if source.test is not None else {})


def _tfrecords(pattern: str) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())


def _splits(ctx: StageContext) -> tuple[Dataset, Dataset | None]:
    """The training and test stores the data stage made or pointed at."""
    train, test = ctx.output("data", "train"), ctx.output("data", "test")
    assert train is not None  # the data stage always records one
    return Dataset.open(train), Dataset.open(test) if test is not None else None


# --------------------------------------------------------------------------- folds


def folds_config(recipe: Recipe) -> dict[str, Any]:
    return {**recipe.folds.model_dump(mode="json"), "seed": recipe.seed}


def make_folds(ctx: StageContext) -> StageResult:
    """``folds.npy``: the training rows' folds (`Dataset.folds`), one file written atomically."""
    n = ctx.recipe.folds.n
    train, _ = _splits(ctx)
    folds = train.folds(n, ctx.recipe.seed)
    buffer = io.BytesIO()
    np.save(buffer, folds)
    write_atomic(ctx.folder / FOLDS_FILE, buffer.getvalue())
    counts = np.bincount(folds, minlength=n)
    return StageResult(
        key=f"{n} folds of {counts.min():,}-{counts.max():,} rows",
        outputs={"folds": f"{ctx.name}/{FOLDS_FILE}"},
        summary={"n": n, "rows": counts.tolist()},
    )


# --------------------------------------------------------------------------- zoo


def zoo_config(recipe: Recipe) -> dict[str, Any]:
    return recipe.zoo.model_dump(mode="json")  # holds the recipe's folds.n and seed


def train_zoo(ctx: StageContext) -> StageResult:
    """Every member out-of-fold on the folds artifact (`fit_oof`: finished members whose
    config is unchanged are kept). Folders of members no longer in the recipe are left on disk
    and not evaluated."""
    train, test = _splits(ctx)
    folds_file = ctx.output("folds", "folds")
    assert folds_file is not None
    zoo = ctx.recipe.zoo
    result = fit_oof(zoo, train, test, ctx.folder, folds=np.load(folds_file))
    listed = {spec.member_id for spec in zoo.members}
    others = sorted(
        p.name
        for p in ctx.folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in listed
    )
    if others:
        ctx.console.print(
            f"zoo: kept, not evaluated (no longer in the recipe): {', '.join(others)}"
        )
    done = [m for m in result.members if m.error is None]
    key = f"{len(done)} of {len(result.members)} members done"
    if result.failed:
        key += f", {len(result.failed)} failed"
    if done:
        best = max(done, key=_figure)
        on = "test" if best.test_metric is not None else "oof"
        key += f"; best {best.id}: {best.metric} {_figure(best):.4f} ({on})"
    return StageResult(
        key=key,
        outputs={"members": {m.id: f"{ctx.name}/{m.id}/predictions" for m in done}},
        summary={"members": result.table()},
        errors=tuple(f"member {m.id} failed: {m.error}" for m in result.failed),
    )


def _figure(member: MemberResult) -> float:
    """A trained member's metric: on the test split when it has labels, else out-of-fold."""
    figure = member.test_metric if member.test_metric is not None else member.oof_metric
    assert figure is not None  # a trained member has its out-of-fold figures
    return figure


# --------------------------------------------------------------------------- evaluate


def evaluate_config(recipe: Recipe) -> dict[str, Any]:
    return recipe.evaluate.model_dump(mode="json")


def evaluate_zoo(ctx: StageContext) -> StageResult:
    """Every member's metric and loss, and those of the members' plain average (``zoo
    average``), on the test split (its clean labels when the store has them) or, without test
    labels, out-of-fold on the given training labels: ``results.json``.

    Members' figures are the ones in their prediction stores (computed from the full
    probabilities in training); GAP@k for another k than 20 is computed from the stored top-k.
    The average is streamed a block of rows at a time; its loss needs every class's
    probability, so it is given only when the stores hold all classes (n_classes <= zoo.k).
    """
    k = ctx.recipe.evaluate.k
    train, test = _splits(ctx)
    if test is not None and test.labels.nnz:
        split, data = "test", test
        clean = test.clean_labels
        labels, which = (clean, "clean") if clean is not None else (test.labels, "given")
    else:
        split, data, labels, which = "oof", train, train.labels, "given"
    multilabel = data.task == "multilabel"
    metric, loss = (f"GAP@{k}", "BCE") if multilabel else ("accuracy", "log-loss")
    paths = ctx.inputs["zoo"]["outputs"]["members"]
    stores = {member: Predictions.open(ctx.run / path) for member, path in paths.items()}
    rescore = multilabel and k != GAP_K
    streamed = _stream(stores, split, labels, data.task, k, rescore) if stores else None
    rows = []
    for member in ctx.inputs["zoo"]["summary"]["members"]:
        row = {"model": member["model"], "frame-level": member["frame-level"]}
        store = stores.get(member["model"])
        if store is None:
            rows.append({**row, "error": member["error"]})
            continue
        figures = store.fold_metrics[split]
        n_folds = int(store.model["folds"])
        score = streamed.members[member["model"]] if streamed and rescore else figures["metric"]
        rows.append(
            {
                **row,
                metric: score,
                loss: figures["loss"],
                "seconds": sum(store.fold_metrics[str(f)]["seconds"] for f in range(n_folds)),
            }
        )
    if streamed is not None:
        rows.append({"model": AVERAGE, metric: streamed.metric, loss: streamed.loss})
    results = {
        "split": split,
        "labels": which,
        "rows_scored": int(labels.shape[0]),
        "metric": metric,
        "loss": loss,
        "rows": rows,
    }
    write_atomic(ctx.folder / RESULTS_FILE, json.dumps(results, indent=1).encode())
    outputs = {"results": f"{ctx.name}/{RESULTS_FILE}"}
    if streamed is None:
        return StageResult(key="no trained member to evaluate", outputs=outputs)
    return StageResult(
        key=f"{AVERAGE} {metric} {streamed.metric:.4f} on {split} ({which} labels)",
        outputs=outputs,
        summary={AVERAGE: {metric: streamed.metric, loss: streamed.loss}},
    )


def results_table(results: dict[str, Any], title: str | None = None) -> Table:
    """``results.json`` (with any rows added) as a table: model, frame-level, metric, loss,
    seconds; titled by what was scored unless ``title`` is given."""
    columns = ("frame-level", results["metric"], results["loss"], "seconds")
    scored = (
        f"scored on {results['rows_scored']:,} {results['split']} rows, {results['labels']} labels"
    )
    table = Table(title=title or scored, title_justify="left")
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for row in results["rows"]:
        table.add_row(row["model"], *(format_cell(column, row.get(column)) for column in columns))
    return table


@dataclass(frozen=True)
class _Streamed:
    """GAP@k (or accuracy) and loss of the zoo average, and each member's metric when asked."""

    metric: float
    loss: float | None
    members: dict[str, float]


def _stream(
    stores: dict[str, Predictions],
    split: str,
    labels: sp.csr_matrix,
    task: str,
    k: int,
    members_too: bool,
) -> _Streamed:
    """Average the members' probabilities a block of rows at a time, keeping only the top k
    of each row (and of each member's rows when ``members_too``)."""
    n_rows, n_classes = labels.shape
    block = max(1, _BLOCK_BYTES // (4 * n_classes))
    exact = all(store.k == store.n_classes for store in stores.values())
    average: list[TopK] = []
    each: dict[str, list[TopK]] = {member: [] for member in stores}
    loss = 0.0
    for start in range(0, n_rows, block):
        rows = slice(start, min(start + block, n_rows))
        total = np.zeros((rows.stop - start, n_classes), dtype=np.float32)  # (B, n_classes)
        for member, store in stores.items():
            probs = store.dense(split, rows)
            total += probs
            if members_too:
                each[member].append(TopK(*select_top_k(probs, k)))
        total /= len(stores)
        average.append(TopK(*select_top_k(total, k)))
        if exact:
            loss += loss_sum(total, labels[rows], task)
    return _Streamed(
        metric=task_metric(_concat(average), labels, task, k),
        loss=loss / n_rows if exact else None,
        members={m: task_metric(_concat(t), labels, task, k) for m, t in each.items() if t},
    )


def _concat(blocks: list[TopK]) -> TopK:
    return TopK(
        np.concatenate([b.indices for b in blocks]), np.concatenate([b.scores for b in blocks])
    )
