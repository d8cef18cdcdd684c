"""The ``data`` and ``folds`` stages: the datasets of a run and the folds of its training rows."""

from __future__ import annotations

import glob
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from webly._fs import atomic_output, file_hash, write_atomic
from webly.config import BuiltinData, DataSource, Recipe, StoreData, SynthData, YT8MData
from webly.data.builtin import builtin_digits
from webly.data.products import ProductsLikeConfig, synth_products_like
from webly.data.split import carve_valid
from webly.data.store import MANIFEST, Dataset
from webly.data.synth import synth_yt8m_like
from webly.data.yt8m import import_yt8m
from webly.errors import DataError
from webly.rundir import DataRecord, FoldsRecord
from webly.stages.context import SPLITS, StageContext, StageResult, splits
from webly.train.zoo import plan_zoo

FOLDS_FILE = "folds.npy"


# --------------------------------------------------------------------------- data


def data_config(recipe: Recipe) -> dict[str, Any]:
    """The source section; the seed for generated data; the stores' manifest hashes or the
    TFRecord files (name and size) read, so a changed input re-runs the stage."""
    name, source = recipe.data.source
    dumped = source.model_dump(mode="json")
    for split in ("unlabeled", "valid"):  # absent: runs made before the field stay valid
        if dumped.get(split, "") is None:
            del dumped[split]
    config: dict[str, Any] = {name: dumped}
    if recipe.data.valid_fraction is not None:  # likewise
        config["valid_fraction"] = recipe.data.valid_fraction
    if isinstance(source, SynthData | BuiltinData):
        config["seed"] = recipe.seed
    elif isinstance(source, StoreData):
        config["manifests"] = {
            split: file_hash(path / MANIFEST) for split, path in _given_splits(source).items()
        }
    else:
        config["files"] = {
            split: [[str(p), p.stat().st_size] for p in _tfrecords(pattern)]
            for split, pattern in _given_splits(source).items()
        }
    return config


def check_data(recipe: Recipe) -> None:
    """Fail (`DataError`) when the inputs of the data source are missing, and (`ConfigError`)
    when a zoo member does not fit the stores of a ``store`` source (groups of another level,
    absent groups): before a run writes anything."""
    _, source = recipe.data.source
    if isinstance(source, StoreData):
        stores = {split: Dataset.open(path) for split, path in _given_splits(source).items()}
        plan_zoo(recipe.zoo, stores["train"], stores.get("test"))
    elif isinstance(source, YT8MData):
        for split, pattern in _given_splits(source).items():
            if not _tfrecords(pattern):
                raise DataError(
                    f"data.yt8m.{split}: no files match {pattern!r}; check the path and the glob"
                )


def make_data(ctx: StageContext) -> StageResult:
    """Generate or import the splits into ``RUN/data`` (atomically), or point at the stores of
    a ``store`` source; carve the validation split out of the training one
    (``data.valid_fraction``: both written to ``RUN/data``); describe the training split."""
    _, source = ctx.recipe.data.source
    fraction = ctx.recipe.data.valid_fraction
    with atomic_output(ctx.folder, overwrite=True) as tmp:
        noise = _make_splits(source, ctx.recipe.seed, tmp)
        if fraction is not None:
            given = source.train if isinstance(source, StoreData) else tmp / "train"
            carved = tmp / ".train-rows"
            carve_valid(given, fraction, ctx.recipe.seed, carved, tmp / "valid")
            shutil.rmtree(tmp / "train", ignore_errors=True)  # nothing for a store source
            carved.rename(tmp / "train")
    paths = {s: ctx.folder / s for s in SPLITS if (ctx.folder / s).is_dir()}
    if isinstance(source, StoreData):
        paths = {split: ctx.run / path for split, path in _given_splits(source).items()} | paths
    stores = {split: Dataset.open(path) for split, path in paths.items()}
    rows = {split: len(store) for split, store in stores.items()}
    train = stores["train"]
    split_rows = " / ".join(f"{n:,} {split}" for split, n in rows.items())
    return StageResult(
        key=f"{split_rows} rows, {train.n_classes:,} classes ({train.task})",
        record=DataRecord(
            train=paths["train"], test=paths.get("test"), unlabeled=paths.get("unlabeled"),
            rows=rows, classes=train.n_classes, task=train.task,
            levels=sorted({f.level for f in train.layout.features}), noise=noise,
            valid=paths.get("valid"),
        ),
    )  # fmt: skip


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
        for split, pattern in _given_splits(source).items():
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


def _given_splits(source: StoreData | YT8MData) -> dict[str, Any]:
    """``{split: store path or TFRecord glob}`` of the splits a source names, in split order."""
    return {split: getattr(source, split) for split in SPLITS if getattr(source, split)}


def _tfrecords(pattern: str) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())


# --------------------------------------------------------------------------- folds


def folds_config(recipe: Recipe) -> dict[str, Any]:
    return {**recipe.folds.model_dump(mode="json"), "seed": recipe.seed}


def make_folds(ctx: StageContext) -> StageResult:
    """``folds.npy``: the training rows' folds (`Dataset.folds`), one file written atomically."""
    n = ctx.recipe.folds.n
    train, _ = splits(ctx)
    folds = train.folds(n, ctx.recipe.seed)
    buffer = io.BytesIO()
    np.save(buffer, folds)
    write_atomic(ctx.folder / FOLDS_FILE, buffer.getvalue())
    counts = np.bincount(folds, minlength=n)
    return StageResult(
        key=f"{n} folds of {counts.min():,}-{counts.max():,} rows",
        record=FoldsRecord(folds=ctx.folder / FOLDS_FILE, n=n, rows=counts.tolist()),
    )
