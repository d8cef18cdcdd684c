"""Batch prediction with an exported model: data store or TFRecord files in, top-k file out.

Each of the model's feature groups is read at its own level (`webly.deploy.inputs`), so one
model may read frame-level groups (``rgb`` frames) and video-level ones (``mean_rgb``) together.
What the model's ``model.json`` asks for (`webly.deploy.options.PredictOptions`) is applied:
test-time views of a frame-level model (subsets of the frames of its frame-level groups; its
video-level groups go to every view as they are), or views kept in a data store (the image
route's flips and crops), each run through ONNX Runtime and combined as
`webly.ensemble.tta.tta_scores` combines them; and group aggregation, one prediction per group
of a data store's rows (`webly.ensemble.aggregate.aggregate_groups`), written under the group
id. A group is written once every row of it has been predicted, in order of first appearance,
so memory holds the rows of the groups still open: one batch and one group when a store's
groups are contiguous (as `webly.data.products` writes them), at most every row otherwise.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from webly._fs import check_output
from webly.core import TopK, select_top_k
from webly.data.images import view_group
from webly.data.store import MANIFEST, Dataset
from webly.data.yt8m import Names
from webly.deploy.exported import ExportedModel, load_exported
from webly.deploy.inputs import RowBatch, row_batches, store_batches
from webly.deploy.options import PredictOptions
from webly.deploy.outputs import OutputFormat, topk_file
from webly.ensemble.aggregate import aggregate_groups, group_index
from webly.ensemble.tta import frame_view
from webly.errors import ConfigError, DataError
from webly.progress import steps


@dataclass(frozen=True)
class PredictSummary:
    """What `predict` wrote: rows predicted, classes a line, the wall time (seconds), the
    views a row and the groups written (None: one line a row)."""

    out: Path
    rows: int
    k: int
    seconds: float
    views: int = 1
    groups: int | None = None

    def __str__(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else float("inf")
        what = f"{self.rows:,} rows"
        if self.groups is not None:
            what = f"{self.groups:,} groups ({self.rows:,} rows)"
        views = f", {self.views} views a row" if self.views > 1 else ""
        return (
            f"wrote the top {self.k} classes of {what} to {self.out} in {self.seconds:.1f} s "
            f"({rate:,.0f} rows/s{views})"
        )


def predict(
    model: str | Path | ExportedModel,
    source: str | Path,
    out: str | Path,
    *,
    top_k: int = 20,
    fmt: OutputFormat = "csv",
    batch_size: int = 256,
    names: Names = "2018",
) -> PredictSummary:
    """Predict every row of ``source`` with an exported model and write each row's (or group's)
    top classes.

    Parameters
    ----------
    model : an `webly.deploy.export_onnx` folder, or one already loaded
    source : a data store folder, or a glob of YouTube-8M TFRecord files (video- or
        frame-level, as the model reads: frame-level for a model reading frame-level groups;
        ``names`` picks the 2018 or 2017 field names)
    out : the file to write, replaced in one step once every row is written (untouched on error)
    top_k : classes kept a line, best first (Kaggle's YouTube-8M submission: 20)
    fmt : ``csv`` (Kaggle submission), ``parquet`` or ``jsonl``; see `webly.deploy.outputs`
    batch_size : rows per ONNX Runtime call (a call per view); memory holds one batch. With
        random test-time views it also sets the draws (one child seed a batch).

    Shows the rows scored as they go (`webly.progress.steps`: a bar on stderr in a terminal,
    else a line once every row is written).
    """
    if top_k < 1:
        raise ConfigError(f"top-k is {top_k}; use 1 or more (--top-k)")
    started = time.perf_counter()
    folder = model.folder if isinstance(model, ExportedModel) else model
    check_output(out, inputs=[folder, *input_paths(source)], overwrite=True)
    exported = model if isinstance(model, ExportedModel) else load_exported(model)
    options = exported.options
    k = min(top_k, exported.n_classes)
    grouping = _grouping(source, options, k, exported.n_classes)
    stored = [
        stored_view_batches(source, exported, view, batch_size) for view in options.tta_stored
    ]
    batches = row_batches(source, exported.features, batch_size, names)
    seeds = np.random.SeedSequence(options.tta_seed)
    rows = 0
    with (  # the line that says the rows are written comes once the file is in place
        steps("predict", None, "rows") as advance,
        topk_file(out, fmt, exported.class_names) as write,
    ):
        for batch, *views in zip(batches, *stored, strict=True):
            probs = view_probabilities(exported, batch, options, seeds, views)  # (B, n_classes)
            rows += len(batch.ids)
            advance(len(batch.ids))
            if grouping is None:
                classes, scores = select_top_k(probs, k, sort=True)
                write(batch.ids, classes, scores)
                continue
            for group_ids, top in grouping.add(TopK(*select_top_k(probs, grouping.row_k))):
                write(group_ids, top.indices, top.scores)
    groups = grouping.n_groups if grouping is not None else None
    return PredictSummary(Path(out), rows, k, time.perf_counter() - started, options.views, groups)


def input_paths(source: str | Path) -> list[Path]:
    """The files and folders ``source`` reads: a data store folder, or the files its glob
    matches (and the file it names, when it names one)."""
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        return [path]
    matched = [Path(p) for p in glob.glob(os.path.expanduser(str(source)))]
    return [*matched, path] if path.is_file() and path not in matched else matched


def stored_view_batches(
    source: str | Path, exported: ExportedModel, view: str, batch_size: int
) -> Iterator[RowBatch]:
    """The batches of a data store's view ``view``: each of the model's groups ``g`` read from
    the store's ``g_view`` where it has one, under the model's group names. A source without
    the view is refused here, before any row is read."""
    path = Path(source)
    if not (path / MANIFEST).is_file():
        raise DataError(
            f"{source}: the model asks for the stored test-time view {view!r}, which only a data "
            "store has; predict a store imported with that view (webly data import-images "
            f"--views {view})"
        )
    store = Dataset.open(path)
    have = {f.name for f in store.layout.features}
    specs = [
        replace(spec, name=view_group(view, spec.name))
        if view_group(view, spec.name) in have
        else spec
        for spec in exported.features
    ]
    if specs == list(exported.features):
        wanted = ", ".join(view_group(view, spec.name) for spec in exported.features)
        raise DataError(
            f"{path}: no feature group {wanted} for the stored test-time view {view!r} the model "
            f"asks for; import the data with --views {view}, or export without it"
        )
    names = [(spec.name, read.name) for spec, read in zip(exported.features, specs, strict=True)]
    return (
        RowBatch(batch.ids, {name: batch.groups[read] for name, read in names}, batch.lengths)
        for batch in store_batches(store, specs, batch_size)
    )


def view_probabilities(
    exported: ExportedModel,
    batch: RowBatch,
    options: PredictOptions,
    seeds: np.random.SeedSequence,
    stored: Sequence[RowBatch] = (),
) -> np.ndarray:
    """Probabilities ``(B, n_classes)`` of a batch under the model's test-time views.

    View 0 is the batch as it is; with ``options.tta_stored`` the other views are ``stored``,
    the same rows read from the store's view groups (`stored_view_batches`); otherwise views
    1.. keep ``options.tta_max_frames`` frames of each row of every frame-level group
    (`webly.ensemble.tta`; the video-level groups go to each view unchanged), drawn from one
    child of ``seeds`` (spawned per call, so successive batches get successive children, as
    `tta_scores` gives them). Without views nothing is drawn.
    """
    probs = exported.predict(batch.groups, batch.lengths)
    if not options.tta:
        return probs
    if options.tta_stored:
        everyone = [probs, *(exported.predict(view.groups, view.lengths) for view in stored)]
        return np.mean(everyone, axis=0) if options.tta_mode == "mean" else np.max(everyone, 0)
    frame_groups = [spec.name for spec in exported.features if spec.level == "frame"]
    # views are for frame-level models (checked at export)
    assert batch.lengths is not None and frame_groups
    rng = np.random.default_rng(seeds.spawn(1)[0])
    n_rows, n_frames = batch.lengths.size, int(batch.groups[frame_groups[0]].shape[1])
    frames = torch.arange(n_frames).expand(n_rows, n_frames).unsqueeze(-1)  # (B, T, 1)
    lengths = torch.from_numpy(batch.lengths)
    for view in range(1, options.tta_views):
        picked, kept = frame_view(
            frames, lengths, view, options.tta_views, options.tta_sampling,
            options.tta_max_frames, rng,
        )  # fmt: skip
        picks = picked.numpy()  # (B, F, 1) frame of each kept slot
        groups = {
            name: np.take_along_axis(x, picks, axis=1) if name in frame_groups else x
            for name, x in batch.groups.items()
        }  # (B, F, dim) each frame-level group, the video-level ones (B, dim) as they are
        view_probs = exported.predict(groups, kept.numpy())
        if options.tta_mode == "mean":
            probs += view_probs
        else:
            np.maximum(probs, view_probs, out=probs)
    if options.tta_mode == "mean":
        probs /= options.tta_views
    return probs


class _Grouping:
    """Rows' top-k in, one aggregated prediction per group out, each group once all its rows
    are in, in order of first appearance (see the module docstring)."""

    def __init__(self, groups: np.ndarray, options: PredictOptions, k: int, row_k: int):
        self.ids, self.group_of = group_index(groups)
        self.last = np.zeros(self.ids.size, dtype=np.int64)  # (n_groups,) last row of each
        np.maximum.at(self.last, self.group_of, np.arange(self.group_of.size))
        self.options, self.k, self.row_k = options, k, row_k
        self.seen = self.done = 0  # rows in, groups out
        self.rows: list[np.ndarray] = []
        self.tops: list[TopK] = []

    @property
    def n_groups(self) -> int:
        return int(self.ids.size)

    def add(self, top: TopK) -> Iterator[tuple[list[str], TopK]]:
        """Take the next rows' ``(B, row_k)`` top classes; yield ``(group ids, (G, k) TopK)`` of
        the groups this completes."""
        self.rows.append(np.arange(self.seen, self.seen + top.n_samples))
        self.tops.append(top)
        self.seen += top.n_samples
        still_open = np.flatnonzero(self.last[self.done :] >= self.seen)
        stop = self.done + int(still_open[0]) if still_open.size else self.n_groups
        if stop == self.done:
            return
        rows = np.concatenate(self.rows)
        indices = np.concatenate([t.indices for t in self.tops])
        scores = np.concatenate([t.scores for t in self.tops])
        codes = self.group_of[rows]
        ready = codes < stop  # the groups before ``done`` are already out
        method = self.options.group_aggregation
        assert method is not None  # a grouping exists only for a model that aggregates
        order, top_groups = aggregate_groups(
            TopK(indices[ready], scores[ready]), codes[ready], method, self.options.group_z, self.k
        )
        left = ~ready
        self.rows, self.tops = [rows[left]], [TopK(indices[left], scores[left])]
        self.done = stop
        yield [str(g) for g in self.ids[order.astype(np.int64)]], top_groups


def _grouping(
    source: str | Path, options: PredictOptions, k: int, n_classes: int
) -> _Grouping | None:
    """The grouping of ``source``'s rows when the model aggregates groups, else None."""
    if options.group_aggregation is None:
        return None
    path = Path(source)
    if not (path / MANIFEST).is_file():
        raise ConfigError(
            f"the model aggregates rows by group ({options.group_aggregation}) but {source} is "
            "not a data store; TFRecord files have no group column, pass a store with one"
        )
    store = Dataset.open(path)
    if store.groups is None:
        raise DataError(
            f"{path} has no group column, and the model aggregates rows by group "
            f"({options.group_aggregation}); import the data with its group column (--group)"
        )
    row_k = min(max(options.group_k, k), n_classes)
    return _Grouping(store.groups, options, k, row_k)
