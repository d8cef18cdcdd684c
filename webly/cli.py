"""The ``webly`` command line: a thin Typer layer, argv -> one documented library call.

User errors (`webly.errors.WeblyError`) print one line and exit with status 2; warnings print one
line each. Library imports happen inside the commands so ``webly --help`` stays instant.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand

from webly.core import Task
from webly.errors import WeblyError

if TYPE_CHECKING:
    from webly.compress.budget import BudgetResult

app = typer.Typer(
    name="webly",
    help="Accurate, compact classifiers from large datasets with noisy labels.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion, --show-completion
    context_settings={"help_option_names": ["-h", "--help"]},  # every command inherits it
)
data_app = typer.Typer(help="Import, generate and describe datasets.", no_args_is_help=True)
synth_app = typer.Typer(
    help="Generate benchmarks whose true labels are known.", no_args_is_help=True
)
builtin_app = typer.Typer(help="Real datasets bundled with the dependencies.", no_args_is_help=True)
models_app = typer.Typer(help="The model zoo.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
data_app.add_typer(synth_app, name="synth")
data_app.add_typer(builtin_app, name="builtin")


def _typer_help_fixes() -> None:
    """Two corrections to Typer's Rich help: a flag takes no value, so it shows no type (Typer
    0.29 prints ``--help <bool>``); a hidden argument (a deprecated positional OUT) is left out
    of the usage line as it is out of the arguments panel."""
    from typer.core import TyperArgument, TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag or self.count else shown(self, ctx)

    pieces = TyperArgument.get_usage_pieces

    def get_usage_pieces(self: TyperArgument, ctx: Any) -> list[str]:
        return [] if self.hidden else pieces(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
    TyperArgument.get_usage_pieces = get_usage_pieces  # type: ignore[method-assign]


_typer_help_fixes()


def _show_version(value: bool) -> None:
    if value:
        from webly import __version__

        typer.echo(f"webly {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Accurate, compact classifiers from large datasets with noisy labels."""


LOG_WIDTH = 120
"""Columns of output written to a file or a pipe (logs, CI), where Rich would assume 80 and cut
the results tables' headers; ``COLUMNS`` in the environment still wins."""


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = LOG_WIDTH
    return console


out = Console()
err = Console(stderr=True)  # both made again by `main`, for where its output goes

Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace the --out folder if it exists and is what this command writes (a "
        "dataset, an export, ...); never a folder holding the inputs or one webly did not write.",
    ),
]
Seed = Annotated[int, typer.Option(help="The one seed of everything generated.")]
Classes = Annotated[
    Path | None, typer.Option(help="File of class names, one a line, in class-id order.")
]
TaskOption = Annotated[Task, typer.Option("--task", help="multilabel or multiclass.")]
LabelSep = Annotated[
    str | None, typer.Option(help="Separator of several labels in one cell, e.g. ' ' or '|'.")
]
OldOut = Annotated[
    Path | None,
    typer.Argument(metavar="OUT", hidden=True, show_default=False, help="Deprecated: --out."),
]
"""The positional OUT of webly 0.1's writing commands: hidden, accepted with a warning until
0.2 (`_out`)."""
DatasetOut = Annotated[
    Path | None, typer.Option("--out", show_default=False, help="Dataset folder to create.")
]
SplitsOut = Annotated[
    Path | None,
    typer.Option("--out", show_default=False, help="Folder for train/ and test/ datasets."),
]


def _deprecated(old: str, new: str) -> None:
    """Warn (one line) that the spelling ``old`` goes away in webly 0.2."""
    warnings.warn(f"{old} is deprecated and goes in webly 0.2; write {new}", FutureWarning, 2)


def _out(dest: Path | None, old: Path | None, what: str) -> Path:
    """The output folder: ``--out``, or the deprecated positional OUT (one, not both)."""
    from webly.errors import ConfigError

    if old is not None:
        if dest is not None:
            raise ConfigError(f"OUT given twice ({old} and --out {dest}); give --out only")
        _deprecated(f"the positional OUT ({old})", f"--out {old}")
        return old
    if dest is None:
        raise ConfigError(f"--out is missing; name the {what} to create: --out FOLDER")
    return dest


def _renamed(value: Any, old_value: Any, default: Any, old: str, new: str) -> Any:
    """The value of an option renamed from ``old`` to ``new`` (``old`` stays a hidden alias
    until webly 0.2): the old spelling's when it is given, with a warning."""
    from webly.errors import ConfigError

    if old_value is None:
        return value
    if value != default:
        raise ConfigError(f"{old} and {new} are the same option; give {new} only")
    _deprecated(old, new)
    return old_value


def _names(values: str | list[str] | None) -> tuple[str, ...]:
    """The names of a repeatable, comma-separated option (``--views flip,top_left`` or
    ``--views flip --views top_left``), blanks dropped."""
    if values is None:
        return ()
    texts = [values] if isinstance(values, str) else values
    return tuple(name.strip() for text in texts for name in text.split(",") if name.strip())


def _show_warning(message: Any, category: Any, *_: Any, **__: Any) -> None:
    err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)


@data_app.command("import-yt8m")
def import_yt8m(
    pattern: Annotated[str, typer.Argument(help="TFRecord files, a glob: 'dir/train*.tfrecord'.")],
    old_out: OldOut = None,
    dest: DatasetOut = None,
    level: Annotated[
        str,
        typer.Option(
            help="video: Example records, groups mean_rgb, mean_audio; frame: SequenceExample "
            "records, frame groups rgb, audio plus mean_rgb, mean_audio."
        ),
    ] = "video",
    names: Annotated[
        str, typer.Option(help="Feature names: 2018 (id, mean_rgb) or 2017 (video_id, mean_inc3).")
    ] = "2018",
    num_classes: Annotated[int, typer.Option(help="Size of the label vocabulary.")] = 3862,
    video_dtype: Annotated[
        str, typer.Option(help="Storage of video-level features: float32 or uint8.")
    ] = "float32",
    skip_corrupt: Annotated[
        bool, typer.Option(help="Skip records with a bad CRC instead of stopping.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Parallel processes (default: one a core).")
    ] = None,
    overwrite: Overwrite = False,
    ray: RayAddress = None,
) -> None:
    """Import official YouTube-8M TFRecord files (no TensorFlow needed); with --ray, one Ray
    task a file on the cluster."""
    from webly.data.yt8m import import_yt8m as run

    dest = _out(dest, old_out, "dataset folder")
    executor = _executor(ray, 1, 0.0)
    run_files = None
    if executor is not None:
        from webly.executor.ray_import import import_files_on_ray

        run_files = partial(import_files_on_ray, executor)
    summary = run(
        pattern,
        dest,
        level=level,  # type: ignore[arg-type]
        names=names,  # type: ignore[arg-type]
        n_classes=num_classes,
        video_dtype=video_dtype,  # type: ignore[arg-type]
        skip_corrupt=skip_corrupt,
        workers=workers,
        overwrite=overwrite,
        run_files=run_files,
    )
    out.print(str(summary))


@data_app.command("import-table")
def import_table(
    file: Annotated[Path, typer.Argument(help="A .parquet, .csv or .npz file.")],
    old_out: OldOut = None,
    dest: DatasetOut = None,
    features: Annotated[
        str, typer.Option(help="Feature column, or columns: 'f0,f1' or a glob 'f*'.")
    ] = "features",
    labels: Annotated[
        str, typer.Option(help="Labels column: int, name, list, or delimited string.")
    ] = "labels",
    label_sep: LabelSep = None,
    label_type: Annotated[
        str, typer.Option(help="auto, int (class ids) or name (class names).")
    ] = "auto",
    classes: Classes = None,
    id_column: Annotated[
        str | None, typer.Option("--id", help="Id column (default: row number).")
    ] = None,
    group: Annotated[str | None, typer.Option(help="Group column, e.g. a product id.")] = None,
    text: Annotated[str | None, typer.Option(help="Text metadata column.")] = None,
    num_classes: Annotated[
        int | None, typer.Option(help="Number of classes (default: max label + 1).")
    ] = None,
    task: TaskOption = Task.MULTILABEL,
    group_name: Annotated[str, typer.Option(help="Name of the stored feature group.")] = "x",
    dtype: Annotated[
        str, typer.Option(help="Storage dtype: float32, float16 or uint8.")
    ] = "float32",
    overwrite: Overwrite = False,
) -> None:
    """Import a Parquet, CSV or NumPy table of features and labels."""
    from webly.data.tables import import_table as run

    dest = _out(dest, old_out, "dataset folder")
    ds = run(
        file,
        dest,
        features=features,
        labels=labels,
        label_sep=label_sep,
        label_type=label_type,  # type: ignore[arg-type]
        classes=classes,
        id_column=id_column,
        group_column=group,
        text_column=text,
        n_classes=num_classes,
        task=task,
        group_name=group_name,
        dtype=dtype,  # type: ignore[arg-type]
        overwrite=overwrite,
    )
    out.print(f"imported {len(ds):,} rows into {dest}")


@data_app.command("import-images")
def import_images(
    src: Annotated[
        Path, typer.Argument(help="A class-per-folder tree, or a CSV path,label[,group][,text].")
    ],
    extractor: Annotated[
        Path, typer.Option(help="Feature extractor: an .onnx or TorchScript (.pt) model.")
    ],
    old_out: OldOut = None,
    dest: DatasetOut = None,
    image_size: Annotated[
        int | None, typer.Option(help="Input size when the model does not fix it.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    dtype: Annotated[
        str, typer.Option(help="Storage dtype of the features: float16 or float32.")
    ] = "float16",
    skip_bad: Annotated[
        bool, typer.Option(help="Skip unreadable images (counted) instead of stopping.")
    ] = False,
    classes: Classes = None,
    label_sep: LabelSep = None,
    task: TaskOption = Task.MULTICLASS,
    workers: Annotated[int, typer.Option(help="Image decoding threads.")] = 4,
    views: Annotated[
        list[str] | None,
        typer.Option(
            help="Test-time views stored beside image: flip, top_left, top_right, bottom_left, "
            "bottom_right (e.g. flip or all five); repeatable or comma-separated."
        ),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Import images through a feature extractor you supply."""
    from webly.data.images import import_images as run

    dest = _out(dest, old_out, "dataset folder")
    ds = run(
        src,
        dest,
        extractor=extractor,
        image_size=image_size,
        batch_size=batch_size,
        dtype=dtype,  # type: ignore[arg-type]
        skip_bad=skip_bad,
        classes=classes,
        label_sep=label_sep,
        task=task,
        workers=workers,
        views=_names(views),
        overwrite=overwrite,
    )
    out.print(f"imported {len(ds):,} images into {dest}")


@synth_app.command("yt8m-like")
def synth_yt8m_like(
    old_out: OldOut = None,
    dest: Annotated[
        Path | None,
        typer.Option("--out", show_default=False, help="Folder for train/ test/ unlabeled/."),
    ] = None,
    videos: Annotated[int, typer.Option(help="Training videos.")] = 4000,
    test_videos: Annotated[int | None, typer.Option(help="Clean test videos [videos/4].")] = None,
    unlabeled_videos: Annotated[
        int | None, typer.Option(help="Unlabeled videos [videos/4].")
    ] = None,
    classes: Annotated[int, typer.Option(help="Number of classes.")] = 200,
    labels_per_video: Annotated[float, typer.Option(help="Mean true labels a video.")] = 3.0,
    max_frames: Annotated[int, typer.Option(help="0: video level; else frames a video.")] = 0,
    min_frames: Annotated[int | None, typer.Option(help="Fewest frames [max/3].")] = None,
    missing: Annotated[float, typer.Option(help="Share of true labels dropped.")] = 0.3,
    spurious: Annotated[float, typer.Option(help="Share of given labels that are wrong.")] = 0.1,
    instance: Annotated[float, typer.Option(help="Share of (hard) videos mislabeled.")] = 0.05,
    seed: Seed = 0,
    workers: Annotated[int | None, typer.Option(help="Processes [one a core].")] = None,
    overwrite: Overwrite = False,
) -> None:
    """YouTube-8M-like videos: long-tailed multi-label tags, audio/rgb, frames, tag noise."""
    from webly.data.synth import YT8MLikeConfig
    from webly.data.synth import synth_yt8m_like as run

    dest = _out(dest, old_out, "folder of datasets")
    config = YT8MLikeConfig(
        videos=videos,
        test_videos=test_videos,
        unlabeled_videos=unlabeled_videos,
        classes=classes,
        labels_per_video=labels_per_video,
        max_frames=max_frames,
        min_frames=min_frames,
        missing=missing,
        spurious=spurious,
        instance=instance,
        seed=seed,
    )
    out.print(str(run(dest, config, overwrite=overwrite, workers=workers)))


@synth_app.command("products-like")
def synth_products_like(
    old_out: OldOut = None,
    dest: SplitsOut = None,
    products: Annotated[int, typer.Option(help="Training products (groups of 1-4 rows).")] = 20000,
    classes: Annotated[int, typer.Option(help="Number of classes.")] = 1000,
    symmetric: Annotated[float, typer.Option(help="Share of products relabeled at random.")] = 0.05,
    pair: Annotated[float, typer.Option(help="Share relabeled to the confusable twin.")] = 0.1,
    instance: Annotated[float, typer.Option(help="Share of (hard) products relabeled.")] = 0.05,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Product-catalogue-like data: long tail, product groups, fine-grained pairs, titles."""
    from webly.data.products import ProductsLikeConfig
    from webly.data.products import synth_products_like as run

    dest = _out(dest, old_out, "folder of datasets")
    config = ProductsLikeConfig(
        n_classes=classes,
        n_products=products,
        symmetric=symmetric,
        pair=pair,
        instance=instance,
        seed=seed,
    )
    out.print(str(run(dest, config, overwrite=overwrite)))


@builtin_app.command("digits")
def builtin_digits(
    old_out: OldOut = None,
    dest: SplitsOut = None,
    noise: Annotated[
        str | None, typer.Option(help="Noise on the train split: symmetric, pair or instance.")
    ] = None,
    rate: Annotated[float, typer.Option(help="Share of training rows relabeled.")] = 0.0,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """scikit-learn's 1,797 real handwritten digits (no download), with optional label noise."""
    from webly.data.builtin import builtin_digits as run

    dest = _out(dest, old_out, "folder of datasets")
    summary = run(dest, noise=noise, rate=rate, seed=seed, overwrite=overwrite)  # type: ignore[arg-type]
    out.print(str(summary))


@data_app.command("add-noise")
def add_noise(
    store: Annotated[Path, typer.Argument(help="A dataset folder (never modified).")],
    kind: Annotated[str, typer.Option(help="missing, spurious, symmetric, pair or instance.")],
    rate: Annotated[float, typer.Option(help="Noise rate in [0, 1).")],
    old_out: OldOut = None,
    dest: DatasetOut = None,
    seed: Seed = 0,
    feature_group: Annotated[
        str | None, typer.Option(help="Features that define confusable classes [first group].")
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Copy a dataset with noise injected into its labels; the old labels become clean_labels."""
    from webly.data.relabel import add_noise as run

    dest = _out(dest, old_out, "dataset folder")
    ds = run(
        store,
        dest,
        kind,  # type: ignore[arg-type]
        rate,
        seed,
        feature_group=feature_group,
        overwrite=overwrite,
    )
    out.print(f"wrote {len(ds):,} rows with {kind} noise at rate {rate} into {dest}")


@data_app.command("info")
def info(
    store: Annotated[Path, typer.Argument(help="A dataset folder.")],
    verify: Annotated[bool, typer.Option(help="Also check every shard's CRC32C.")] = False,
) -> None:
    """Rows, classes, labels per row, class-frequency quantiles, features, frames per row."""
    from webly.data import Dataset
    from webly.data.stats import dataset_stats

    ds = Dataset.open(store, verify=verify)
    _print_table(str(store), dataset_stats(ds).lines())


@models_app.command("list")
def models_list() -> None:
    """Registered models, their level and hyper-parameters (with defaults)."""
    from webly.models import list_models, model_entry

    table = Table(title="webly models", title_justify="left")
    for column in ("model", "level", "hyper-parameters (defaults)"):
        table.add_column(column)
    for name in list_models():
        entry = model_entry(name)
        hparams = ", ".join(f"{k}={v!r}" for k, v in entry.defaults.items()) or "-"
        table.add_row(name, entry.level, hparams)
    out.print(table)
    out.print(
        "Every network also takes: groups, feature_subsample, embedding, bnneck, context_gating."
    )


RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Train the fold models as Ray tasks on the cluster at ADDRESS: the head's "
        "HOST:PORT, ray://HOST:PORT (Ray Client), auto (ray start on this machine) or local "
        "(Ray inside this process); a Ray session already open in this process is used.",
    ),
]
CpusPerTask = Annotated[
    int, typer.Option(min=1, help="With --ray: CPUs (torch threads) of each fold's task.")
]
GpusPerTask = Annotated[
    float, typer.Option(min=0.0, help="With --ray: GPUs of each fold's task (0.5 shares one).")
]


def _ray_config(
    address: str | None, cpus_per_task: int | None = None, gpus_per_task: float | None = None
) -> Any:
    """The `webly.executor.ExecutorConfig` of ``--ray ADDRESS`` (``local`` validates to null:
    Ray inside this process), or None without ``--ray``; unset numbers take the config's
    defaults."""
    if address is None:
        return None
    from pydantic import ValidationError

    from webly.errors import ConfigError
    from webly.executor import ADDRESSES, ExecutorConfig

    numbers = {"cpus_per_task": cpus_per_task, "gpus_per_task": gpus_per_task}
    given = {key: value for key, value in numbers.items() if value is not None}
    try:
        return ExecutorConfig.model_validate({"kind": "ray", "address": address, **given})
    except ValidationError:  # the address: typer checked the numbers
        raise ConfigError(
            f"--ray: {address!r} is not {ADDRESSES}; give the head's address in one of those forms"
        ) from None


def _executor(address: str | None, cpus_per_task: int, gpus_per_task: float) -> Any:
    """The `webly.executor.RayExecutor` of ``--ray ADDRESS``, or None (train here)."""
    config = _ray_config(address, cpus_per_task, gpus_per_task)
    if config is None:
        return None
    from webly.executor import CLI_WORDS, make_executor

    return make_executor(config, CLI_WORDS)


def _ray_overrides(
    address: str | None, cpus_per_task: int | None, gpus_per_task: float | None
) -> list[str]:
    """``webly run --ray ADDRESS``: the recipe overrides (``--set executor.kind=ray ...``) of
    the same `ExecutorConfig` that ``train --ray`` builds; the numbers only when given."""
    import json

    config = _ray_config(address, cpus_per_task, gpus_per_task)
    if config is None:
        return []
    given = {"kind", "address"} | {
        key for key, value in (("cpus_per_task", cpus_per_task), ("gpus_per_task", gpus_per_task))
        if value is not None
    }  # fmt: skip
    return [f"executor.{key}={json.dumps(getattr(config, key))}" for key in sorted(given)]


@app.command("train")
def train(
    zoo: Annotated[Path, typer.Argument(metavar="ZOO.yaml", help="The zoo: members and folds.")],
    data: Annotated[Path, typer.Option(help="Training dataset folder.")],
    dest: Annotated[Path, typer.Option("--out", help="Folder for members' models + predictions.")],
    test: Annotated[Path | None, typer.Option(help="Test dataset folder to predict.")] = None,
    ray: RayAddress = None,
    cpus_per_task: CpusPerTask = 1,
    gpus_per_task: GpusPerTask = 0.0,
) -> None:
    """Train every zoo member K-fold: out-of-fold and test predictions, resumable."""
    executor = _executor(ray, cpus_per_task, gpus_per_task)  # a bad address fails before imports
    from webly.train.oof import train_zoo

    _print_zoo(train_zoo(zoo, data, test, dest, executor), f"zoo in {dest}")


def _print_zoo(result: Any, title: str) -> None:
    """A `ZooResult` as a table; failed members in red, then exit status 1 if any failed."""
    from webly.metrics.evaluate import format_cell

    rows = result.table()
    table = Table(title=title, title_justify="left")
    for column in rows[0] if rows else ():
        table.add_column(column, justify="left" if column in ("model", "error") else "right")
    for row in rows:
        table.add_row(*(format_cell(name, value) for name, value in row.items()))
    out.print(table)
    for member in result.failed:
        err.print(f"[red]member {member.id} failed:[/] {member.error}", highlight=False)
    if result.failed:
        raise typer.Exit(1)


SectionFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="SECTION.yaml",
        show_default=False,
        help="The stage's recipe section as a YAML mapping (what goes under its key in a recipe).",
    ),
]
SectionOverrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Set a key of the stage's recipe section (YAML value; after --config), as in the "
        "examples above. Repeatable.",
    ),
]


SECTIONS = {
    "clean": "CleanConfig", "ensemble": "EnsembleConfig", "distill": "DistillConfig",
    "longtail": "LongtailConfig", "compress": "CompressConfig", "export": "ExportConfig",
}  # fmt: skip
"""The commands that run one stage, each named as the recipe section it builds, and that
section's model in `webly.config` (named, so that ``webly --help`` imports none of it)."""


def stage_section(name: str, config: Path | None, overrides: list[str] | None) -> Any:
    """The recipe section ``name`` (a `SECTIONS` model) that ``webly NAME`` runs, as
    `webly.config.load_section` builds it: its --config, then its --set."""
    import webly.config

    kind = getattr(webly.config, SECTIONS[name])
    return webly.config.load_section(kind, name, config, overrides or [])


@app.command("clean")
def clean(
    zoo: Annotated[Path, typer.Argument(metavar="ZOO.yaml", help="The zoo retrained each round.")],
    data: Annotated[Path, typer.Option(help="Training dataset folder (its labels are judged).")],
    dest: Annotated[Path, typer.Option("--out", help="Folder for the rounds (resumed).")],
    test: Annotated[Path | None, typer.Option(help="Test dataset folder to score.")] = None,
    config: SectionFile = None,
    overrides: SectionOverrides = None,
    ray: RayAddress = None,
    cpus_per_task: CpusPerTask = 1,
    gpus_per_task: GpusPerTask = 0.0,
) -> None:
    """Run a recipe's clean section: noisy labels found with the zoo's out-of-fold predictions,
    repaired, the zoo retrained, e.g. --set rounds=3 --set method=margin --set
    'rules={drop_fraction: 0.2}'. Per round a table (rows dropped and relabelled, noise
    estimate, metrics, precision/recall vs truth), then the round whose out-of-fold predictions
    best match the given labels."""
    section = stage_section("clean", config, overrides)
    executor = _executor(ray, cpus_per_task, gpus_per_task)
    from webly.clean.run import run_clean
    from webly.data import Dataset
    from webly.train.zoo import load_zoo

    result = run_clean(
        section, load_zoo(zoo), Dataset.open(data),
        Dataset.open(test) if test is not None else None, dest, executor=executor,
    )  # fmt: skip
    out.print(result.format(), highlight=False)
    out.print(
        f"best: round {result.best} (valid {result.metric} "
        f"{result.rows[result.best].valid_metric:.4f}; round 0 "
        f"{result.rows[0].valid_metric:.4f})",
        highlight=False,
    )


# A docstring is its command's help in Rich markup, where [name] is a style: \\[ shows a bracket.
@app.command("ensemble")
def ensemble(
    zoo_dir: Annotated[
        Path, typer.Argument(metavar="ZOO_DIR", help="A trained zoo (webly train --out).")
    ],
    data: Annotated[Path, typer.Option(help="The zoo's training dataset folder.")],
    dest: Annotated[Path, typer.Option("--out", help="Folder for the blends and the stacker.")],
    test: Annotated[
        Path | None, typer.Option(help="Test dataset folder the zoo predicted.")
    ] = None,
    config: SectionFile = None,
    overrides: SectionOverrides = None,
) -> None:
    """Run a recipe's ensemble section: blends of the zoo's out-of-fold predictions and the
    LightGBM stacker, each scored, e.g. --set blends=\\[mean,greedy] --set 'stacker={rounds: 50}'
    (--set stacker=null: no stacker) --set members=\\[logistic]."""
    section = stage_section("ensemble", config, overrides)
    from webly.data import Dataset
    from webly.ensemble.fit import run_ensemble
    from webly.ensemble.members import open_members, zoo_members
    from webly.metrics.evaluate import format_cell

    train = Dataset.open(data)
    test_store = Dataset.open(test) if test is not None else None
    chosen = open_members(
        zoo_members(zoo_dir, section.members),
        ("oof", "test") if test_store is not None else ("oof",),
    )
    model = chosen.stores[0].model
    seed = int(model["seed"])
    test_labels = None
    if test_store is not None:
        clean = test_store.clean_labels
        test_labels = clean if clean is not None else test_store.labels
        test_labels = test_labels if test_labels.nnz else None
    entries = run_ensemble(
        section, chosen, train, dest, folds=train.folds(int(model["folds"]), seed), seed=seed,
        test_labels=test_labels, k=max(store.k for store in chosen.stores),
    )  # fmt: skip
    metric = train.task.metric().name
    table = Table(title=f"{len(chosen)} members of {zoo_dir} -> {dest}", title_justify="left")
    for column in ("entry", f"oof {metric}", f"test {metric}", "seconds"):
        table.add_column(column, justify="left" if column == "entry" else "right")
    for entry in entries:
        table.add_row(
            entry.name, format_cell(metric, entry.oof_metric),
            format_cell(metric, entry.test_metric), format_cell("seconds", entry.seconds),
        )  # fmt: skip
    out.print(table)


Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a recipe key (YAML value; list items by position), e.g. "
        "zoo.members.1.hparams.hidden=[32]. Repeatable.",
    ),
]


@app.command("distill")
def distill(
    zoo: Annotated[
        Path, typer.Argument(metavar="ZOO.yaml", help="The zoo file the zoo was trained with.")
    ],
    zoo_dir: Annotated[
        Path, typer.Option(help="The trained zoo (webly train --out): the teachers' members.")
    ],
    data: Annotated[Path, typer.Option(help="Training dataset folder.")],
    dest: Annotated[Path, typer.Option("--out", help="Folder for students/ and final/.")],
    test: Annotated[Path | None, typer.Option(help="Test dataset folder to predict.")] = None,
    ensemble: Annotated[
        Path | None,
        typer.Option(help="The zoo's ensemble (webly ensemble --out): the teachers' entries."),
    ] = None,
    unlabeled_data: Annotated[
        Path | None,
        typer.Option(help="Unlabeled dataset folder, learned as the section's unlabeled: says."),
    ] = None,
    valid: Annotated[
        Path | None,
        typer.Option(
            help="Validation dataset folder: rows of the training data that no model of the "
            "zoo trained on. The final model early-stops on it, and its teacher and setting "
            "are chosen there (default: the rows its training holds out)."
        ),
    ] = None,
    config: SectionFile = None,
    overrides: SectionOverrides = None,
    ray: RayAddress = None,
    cpus_per_task: CpusPerTask = 1,
    gpus_per_task: GpusPerTask = 0.0,
) -> None:
    """Run a recipe's distill section: students out of fold and a final model on every row,
    taught by the ensemble (or each model family), each setting chosen on validation, e.g.
    --set 'students=[{name: mlp}]' --set 'final={name: logistic}'."""
    section = stage_section("distill", config, overrides)
    executor = _executor(ray, cpus_per_task, gpus_per_task)
    from webly.data import Dataset
    from webly.distill.run import run_distill
    from webly.distill.teachers import DistillInputs, ensemble_entries
    from webly.ensemble.members import zoo_members
    from webly.train.oof import ZooResult
    from webly.train.zoo import load_zoo

    trained = load_zoo(zoo)
    ids = [m.member_id for m in trained.members]
    train = Dataset.open(data)
    inputs = DistillInputs(
        train, Dataset.open(test) if test is not None else None,
        train.folds(trained.folds, trained.seed), trained,
        members={n: p for n, p in zoo_members(zoo_dir).items() if n in ids},
        entries=ensemble_entries(ensemble) if ensemble is not None else {},
        unlabeled=Dataset.open(unlabeled_data) if unlabeled_data is not None else None,
        valid=Dataset.open(valid) if valid is not None else None,
    )  # fmt: skip
    result = run_distill(section, inputs, dest, executor=executor)
    out.print(result.key, highlight=False, soft_wrap=True)
    for name, store in {**result.students, **result.final}.items():
        out.print(
            f"{name}: {store.parent}", highlight=False, soft_wrap=True
        )  # longtail's --student, --final
    _print_zoo(ZooResult(result.members), f"distilled in {dest}")


@app.command("longtail")
def longtail(
    zoo: Annotated[
        Path, typer.Argument(metavar="ZOO.yaml", help="The zoo file (its folds and seed).")
    ],
    final: Annotated[
        Path,
        typer.Option(help="The final network's folder, as webly distill prints it."),
    ],
    data: Annotated[Path, typer.Option(help="Training dataset folder.")],
    test: Annotated[Path, typer.Option(help="Test dataset folder to predict.")],
    dest: Annotated[Path, typer.Option("--out", help="Folder for final/: network, predictions.")],
    students: Annotated[
        list[Path] | None,
        typer.Option(
            "--student",
            help="A student's folder, as webly distill prints it, to choose tau out "
            "of fold; repeatable.",
        ),
    ] = None,
    config: SectionFile = None,
    overrides: SectionOverrides = None,
) -> None:
    """Run a recipe's longtail section: the final network's classifier tau-normalized or
    re-trained (cRT) for the long tail, chosen on held-out rows, e.g. --set method=crt."""
    section = stage_section("longtail", config, overrides)
    from webly.data import Dataset
    from webly.longtail.run import LongtailInputs, run_longtail
    from webly.train.oof import FULL_DIR, MODEL_DIR
    from webly.train.zoo import load_zoo

    trained = load_zoo(zoo)
    train = Dataset.open(data)
    inputs = LongtailInputs(
        final.name, final / FULL_DIR / MODEL_DIR, final / "predictions", train,
        Dataset.open(test), train.folds(trained.folds, trained.seed),
        students={folder.name: folder / "predictions" for folder in students or []},
    )  # fmt: skip
    result = run_longtail(section, inputs, dest)
    out.print(result.key, highlight=False, soft_wrap=True)
    _print_table(f"longtail in {dest}", [
        ("chosen", str(result.summary["chosen"])), ("chosen on", result.summary["chosen_on"]),
        ("model", str(result.model)),
    ])  # fmt: skip


class _StagesInHelp(TyperCommand):
    """``webly run``: its help ends with the pipeline's stages, read from
    `webly.pipeline.STAGES` when the help is shown (importing the pipeline takes seconds, which
    ``webly --help`` and every other command must not pay)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from webly.pipeline import STAGES

        names = ", ".join(stage.name for stage in STAGES)
        self.help = f"{(self.help or '').split(STAGES_LEAD)[0].rstrip()}\n\n{STAGES_LEAD} {names}."
        super().format_help(ctx, formatter)


STAGES_LEAD = "The stages, in order:"


@app.command("run", cls=_StagesInHelp)
def run(
    recipe: Annotated[
        Path, typer.Argument(metavar="RECIPE.yaml", help="The recipe: data, folds, zoo, evaluate.")
    ],
    dest: Annotated[Path, typer.Option("--out", help="Run directory: new, empty or resumed.")],
    overrides: Overrides = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Train the fold models as Ray tasks on the cluster at ADDRESS (HOST:PORT, auto "
            "or local): --set executor.kind=ray --set executor.address=ADDRESS.",
        ),
    ] = None,
    cpus_per_task: Annotated[
        int | None,
        typer.Option(min=1, help="With --ray: CPUs of each fold's task (default: the recipe's)."),
    ] = None,
    gpus_per_task: Annotated[
        float | None,
        typer.Option(min=0.0, help="With --ray: GPUs of each fold's task (default: the recipe's)."),
    ] = None,
) -> None:
    """Run a recipe's stages in order, skipping what is done."""
    from webly.pipeline import run_recipe
    from webly.stages import results_table

    overrides = [*(overrides or []), *_ray_overrides(ray, cpus_per_task, gpus_per_task)]
    result = run_recipe(recipe, dest, overrides, console=out)
    if result.results is not None:
        out.print(results_table(result.results))
    for error in result.errors:
        err.print(f"[red]{error}[/]", highlight=False)
    if result.failed:
        raise typer.Exit(1)


@app.command("status")
def status(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")],
) -> None:
    """Each stage of a run: state, finished (UTC), seconds and key figure."""
    from webly.metrics.evaluate import format_cell
    from webly.pipeline import run_status

    table = Table(title=f"run {run_dir}", title_justify="left")
    for column in ("stage", "state", "finished (UTC)", "seconds", "key figure"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for stage in run_status(run_dir):
        table.add_row(
            stage.name,
            stage.state,
            stage.finished or "",
            format_cell("seconds", stage.seconds),
            stage.key,
        )
    out.print(table)


@app.command("report")
def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory.")],
    dest: Annotated[
        Path | None,
        typer.Option("--out", help="The HTML file to write (default RUN/report/report.html)."),
    ] = None,
) -> None:
    """Build a run's HTML report again from its run directory: one static page that opens
    offline."""
    from webly.pipeline import run_status
    from webly.report import build_report

    written = build_report(run_dir, dest, run_status(run_dir))
    out.print(f"wrote {written}", highlight=False, soft_wrap=True)


@app.command("eval")
def evaluate(
    predictions: Annotated[
        Path, typer.Argument(metavar="PRED.csv", help="A Kaggle submission file.")
    ],
    labels: Annotated[Path, typer.Option(help="Dataset folder holding the true labels.")],
    top_k: Annotated[int, typer.Option(help="Predictions per row that GAP counts.")] = 20,
    old_k: Annotated[int | None, typer.Option("--k", hidden=True)] = None,
) -> None:
    """Score a submission (VideoId,LabelConfidencePairs) against a dataset's labels."""
    from webly.data import Dataset
    from webly.io import score_submission

    k = _renamed(top_k, old_k, 20, "--k", "--top-k")
    scores = score_submission(predictions, Dataset.open(labels), k=k)
    _print_table(f"{predictions} vs {labels}", [(name, f"{v:.5f}") for name, v in scores.items()])


@app.command("demo")
def demo(
    dest: Annotated[
        Path, typer.Option("--out", help="Run directory of the demo (resumed).")
    ] = Path("demo-out"),
    seed: Annotated[int, typer.Option(help="The recipe's seed: data, folds, weights.")] = 0,
    overrides: Overrides = None,
) -> None:
    """Run recipes/demo.yaml: a YouTube-8M-like benchmark, a six-member zoo, its results."""
    from webly.demo import run_demo

    run_demo(dest, seed=seed, console=out, overrides=overrides or [])


@app.command("compress")
def compress(
    source: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory (webly run).")],
    old_out: OldOut = None,
    dest: Annotated[
        Path | None,
        typer.Option(
            "--out",
            show_default=False,
            help="Folder for the choice (frontier.json, choice.json and a chosen network), what "
            "webly export DIR ships; without it nothing is written.",
        ),
    ] = None,
    config: SectionFile = None,
    overrides: SectionOverrides = None,
    overwrite: Overwrite = False,
) -> None:
    """Run a recipe's compress section on a run: of its final network (float32 and compressed),
    member blends and stacker, the most accurate on validation rows within the budgets, and the
    accuracy/size/latency frontier, e.g. --set max_size=50MB --set max_latency_ms=2 --set
    measure_latency=false. One network is compressed by webly quantize."""
    section = stage_section("compress", config, overrides)
    from webly.errors import ConfigError
    from webly.rundir import RunDir

    if not RunDir(source).is_run():
        raise ConfigError(
            f"{source} is not a run directory; compress one network with webly quantize "
            "NETWORK_DIR --out DIR"
        )
    from webly.compress.choice import run_compress

    if old_out is not None or dest is not None:
        dest = _out(dest, old_out, "choice folder")
    _print_frontier(run_compress(section, source, dest, overwrite=overwrite))


@app.command("quantize")
def quantize(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="NETWORK_DIR|RUN",
            help="A saved network, or a run directory (its final network).",
        ),
    ],
    dest: Annotated[
        Path, typer.Option("--out", show_default=False, help="Compressed network folder to create.")
    ],
    method: Annotated[
        str, typer.Option(help="int8_partial (uint8 codes + table), fp16 or kmeans.")
    ] = "int8_partial",
    min_elements: Annotated[
        int, typer.Option(help="Compress only tensors with more elements than this.")
    ] = 17_000,
    levels: Annotated[int, typer.Option(help="Levels of int8_partial (2..256).")] = 256,
    clusters: Annotated[int, typer.Option(help="Centroids of kmeans (2..256).")] = 256,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Compress a network's big tensors (partial 8-bit, float16 or k-means); report each
    tensor."""
    from webly.compress import compress_network
    from webly.compress.run import run_final
    from webly.rundir import RunDir
    from webly.sizes import format_size

    network = run_final(source).folder if RunDir(source).is_run() else source
    result = compress_network(
        network,
        dest,
        method,  # type: ignore[arg-type]
        min_elements=min_elements,
        levels=levels,
        clusters=clusters,
        seed=seed,
        overwrite=overwrite,
    )
    table = Table(title=f"{method} compression of {network}", title_justify="left")
    for column in ("tensor", "shape", "method", "bytes before", "bytes after", "max |error|"):
        table.add_column(column, justify="left" if column in ("tensor", "method") else "right")
    table.add_column("rel. RMS error", justify="right")
    for t in result.tensors:
        table.add_row(
            t.name,
            "x".join(map(str, t.shape)) or "scalar",
            t.method,
            f"{t.bytes_before:,}",
            f"{t.bytes_after:,}",
            f"{t.max_abs_error:.2e}",
            f"{t.rel_rms_error:.2e}",
        )
    before = sum(t.bytes_before for t in result.tensors)
    after = sum(t.bytes_after for t in result.tensors)
    table.add_row("total", "", "", f"{before:,}", f"{after:,}", "", "", style="bold")
    out.print(table)
    out.print(
        f"weights {format_size(result.file_bytes_before)} -> "
        f"{format_size(result.file_bytes_after)} ({result.ratio:.1%} of the size) in {dest}"
    )


def _print_frontier(result: BudgetResult) -> None:
    """The frontier of `choose_under_budget` as a table, then the choice."""
    table = Table(
        title=f"accuracy/size/latency frontier of {result.run} ({result.metric} chosen on "
        f"{result.scored_on})",
        title_justify="left",
    )
    rows = result.table()
    for column in rows[0]:
        table.add_column(column, justify="left" if column in ("candidate", "kind") else "right")
    for row in rows:
        table.add_row(*row.values(), style="bold" if row["chosen"] else None)
    out.print(table)
    greedy = "" if result.subsets_exact else "; member subsets chosen greedily (over 12 members)"
    out.print(
        f"{len(result.candidates)} candidates, {len(result.frontier)} on the frontier{greedy}",
        highlight=False,
    )
    out.print(str(result), highlight=False)


@app.command("export")
def export(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="RUN|CHOICE_DIR|NETWORK_DIR",
            help="A run directory (what its compress stage chose; without one the most "
            "accurate on validation rows within 1GB: its final network, a blend of members or "
            "the stacker), a folder written by webly compress RUN --out (its choice), or a "
            "saved or compressed network.",
        ),
    ],
    old_out: OldOut = None,
    dest: Annotated[
        Path | None, typer.Option("--out", show_default=False, help="Export folder to create.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Store the model was trained on: input dtypes, task, class names (a run's "
            "own training store by default)."
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME=VALUE", help="A figure to record in model.json. Repeatable."),
    ] = None,
    final: Annotated[
        bool, typer.Option("--final", help="Export a run's final network, whatever fits best.")
    ] = False,
    config: SectionFile = None,
    overrides: SectionOverrides = None,
    overwrite: Overwrite = False,
) -> None:
    """Run a recipe's export section: what a run deploys (a network, a blend or the stacker,
    whole) or a network exported to ONNX, stored features in, scores out, with model.json, e.g.
    --set predict.tta_views=4 --set 'predict={tta_stored: \\[flip]}' --set opset=18. Another
    budget than the run's compress stage's: webly compress RUN --set max_size=50MB --out
    choice/, then webly export choice/ --out deploy/."""
    section = stage_section("export", config, overrides)
    from webly.compress.budget import CHOICE_FILE
    from webly.compress.choice import export_choice, run_export
    from webly.compress.run import export_run
    from webly.config import DEFAULT_MAX_SIZE
    from webly.data import Dataset
    from webly.deploy import PredictOptions, export_onnx, shipped_bytes
    from webly.errors import ConfigError
    from webly.rundir import CompressRecord, RunDir
    from webly.sizes import format_size

    dest = _out(dest, old_out, "export folder")
    metrics = {}
    for item in metric or []:
        name, _, value = item.partition("=")
        try:
            metrics[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(
                f"--metric {item!r} is not NAME=NUMBER; write e.g. gap@20=0.81"
            ) from None
    options = PredictOptions.from_json(section.predict)
    layout = Dataset.open(data).layout if data is not None else None
    rundir = RunDir(source)
    if rundir.is_run() and not final:
        if metrics:
            raise ConfigError(
                "--metric records figures of a network; a run's export records its own (give "
                "--final to export its final network with them)"
            )
        compressed = rundir.read(CompressRecord)
        choice = compressed.choice if compressed is not None else None
        exported = run_export(
            section, source, dest, choice=choice, layout=layout, overwrite=overwrite
        )
        chosen = (
            f"the compress stage's choice ({choice})"
            if choice is not None
            else f"the most accurate on validation rows within {DEFAULT_MAX_SIZE} (no compress "
            "stage)"
        )
        out.print(
            f"shipped {exported.info['run']['candidate']}: {chosen}",
            highlight=False,
            soft_wrap=True,
        )
    elif (source / CHOICE_FILE).is_file():
        exported = export_choice(
            source, dest, layout=layout, predict_options=options, opset=section.opset,
            overwrite=overwrite,
        )  # fmt: skip
    elif rundir.is_run():
        exported = export_run(
            source, dest, layout=layout, metrics=metrics or None, predict_options=options,
            opset=section.opset, overwrite=overwrite,
        )  # fmt: skip
    else:
        exported = export_onnx(
            source, dest, layout=layout, metrics=metrics or None, predict_options=options,
            opset=section.opset, overwrite=overwrite,
        )  # fmt: skip
    inputs = ", ".join(f"{spec.name} {spec.dtype} x{spec.dim}" for spec in exported.features) + (
        ", lengths int64" if exported.level == "frame" else ""
    )
    files = exported.info["files"]
    sizes = (
        ", ".join(f"{name} {format_size(entry['bytes'])}" for name, entry in files.items())
        if len(files) <= 3
        else f"{len(files)} files"
    )
    figures = exported.info["metrics"] or {}
    recorded = ", ".join(f"{name} {value:.4f}" for name, value in figures.items())
    out.print(
        f"exported the {exported.level}-level {exported.name} to {dest}: inputs {inputs} -> "
        f"probabilities x{exported.n_classes}; {sizes}, {format_size(shipped_bytes(dest))} in all"
        + (f"; metrics {recorded}" if recorded else ""),
        highlight=False,
    )


@app.command("predict")
def predict(
    model: Annotated[
        Path, typer.Argument(metavar="MODEL", help="An export folder (webly export).")
    ],
    source: Annotated[
        str,
        typer.Argument(metavar="INPUT", help="A data store, or TFRecord files: 'dir/*.tfrecord'."),
    ],
    dest: Annotated[Path, typer.Option("--out", help="File to write (replaced when complete).")],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes a row, best first.")] = 20,
    fmt: Annotated[
        str, typer.Option("--format", help="csv (Kaggle submission), parquet or jsonl.")
    ] = "csv",
    batch_size: Annotated[int, typer.Option(help="Rows per ONNX Runtime call.")] = 256,
    names: Annotated[
        str, typer.Option(help="TFRecord field names: 2018 (id, mean_rgb) or 2017 (video_id).")
    ] = "2018",
) -> None:
    """Predict a data store or YouTube-8M TFRecord files with ONNX Runtime; write top-k classes."""
    from webly.deploy.predict import predict as run

    summary = run(
        model,
        source,
        dest,
        top_k=top_k,
        fmt=fmt,  # type: ignore[arg-type]
        batch_size=batch_size,
        names=names,  # type: ignore[arg-type]
    )
    out.print(str(summary))


@app.command("serve")
def serve(
    model: Annotated[
        Path, typer.Argument(metavar="MODEL", help="An export folder (webly export).")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_batch: Annotated[int, typer.Option(help="Rows one model call collects.")] = 64,
    max_wait_ms: Annotated[
        float, typer.Option(help="How long a request waits for others to batch with.")
    ] = 2.0,
    max_rows: Annotated[int, typer.Option(help="Most rows a request.")] = 1024,
    max_request_mb: Annotated[float, typer.Option(help="Largest request body, MB.")] = 16.0,
    max_frames: Annotated[
        int | None,
        typer.Option(
            help="Frame level: most frames a row, 413 past it (default: the model's training "
            "max_frames, recorded in its model.json, else 300)."
        ),
    ] = None,
    max_batch_frames: Annotated[
        int, typer.Option(help="Frame level: most padded frames (rows x longest) a model call.")
    ] = 8192,
    max_inflight_mb: Annotated[
        float | None,
        typer.Option(
            help="Request bodies read and handled at once, MB; others wait (default: 4 x "
            "--max-request-mb)."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="ONNX Runtime threads (default: its own choice).")
    ] = None,
) -> None:
    """Serve an exported model over HTTP: POST /predict, GET /health, GET /model, /docs."""
    from webly.deploy import load_exported
    from webly.deploy.serve import Limits, open_socket
    from webly.deploy.serve import serve as run

    limits = Limits(
        max_request_bytes=int(max_request_mb * 1e6),
        max_rows=max_rows,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_frames=max_frames,
        max_batch_frames=max_batch_frames,
        max_inflight_bytes=int(max_inflight_mb * 1e6) if max_inflight_mb is not None else None,
    )
    exported = load_exported(model, threads=threads)
    sock = open_socket(host, port)
    out.print(f"serving {model} on http://{host}:{port} (docs: /docs)")
    run(exported, limits=limits, sock=sock)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit status 2."""
    global out, err
    out, err = _console(), _console(stderr=True)
    warnings.showwarning = _show_warning
    try:
        app()
    except WeblyError as error:
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as error:
        message = os_error_message(error, _output_of(error))
        if message is None:
            raise  # a bug in webly: its traceback helps
        err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(2)


_OS_HINTS = {
    errno.EROFS: "the file system is read-only; write the output to a writable folder",
    errno.ENOSPC: "the disk is full; free space or write the output elsewhere",
    errno.EDQUOT: "the disk quota is used up; free space or write the output elsewhere",
    errno.EFBIG: "the file is too large for this file system; write the output elsewhere",
    errno.EACCES: "check its permissions, or write the output to a folder you may write to",
    errno.EPERM: "check its permissions, or write the output to a folder you may write to",
    errno.ENAMETOOLONG: "a file name is too long; choose a shorter path or name",
}
_ERRNO = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)


def _output_of(error: BaseException) -> str | None:
    """The output path (``dest``: every writing command's OUT or ``--out``) of the command that
    raised ``error``, from its frame in the traceback; None if there is none."""
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals is globals() and frame.f_locals.get("dest") is not None:
            return str(frame.f_locals["dest"])
        tb = tb.tb_next
    return None


def os_error_message(error: BaseException, output: str | None = None) -> str | None:
    """One line for an error of the machine rather than of webly (read-only folder, full disk,
    no permission, too long a name) anywhere in ``error``'s chain of causes, naming the path
    (the error's own, else ``output``); None for any other error. Arrow's I/O errors carry the
    errno only in their text."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            code = current.errno
            if code is None and (found := _ERRNO.search(str(current))):
                code = int(found.group(1))
            if code in _OS_HINTS:
                paths = [p for p in (current.filename, current.filename2) if p is not None]
                where = " -> ".join(os.fsdecode(p) for p in paths) or output or "the output"
                reason = os.strerror(code)
                return f"{where}: {reason} ({errno.errorcode[code]}); {_OS_HINTS[code]}"
        current = current.__cause__ or current.__context__
    return None
