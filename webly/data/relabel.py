"""Add label noise to any store, keeping the truth: ``webly data add-noise STORE --out OUT``.

The output is a new store with the same rows and features (copied as Arrow record batches, never
decoded), noisy ``labels`` and the truth in ``clean_labels``. A store that already has
``clean_labels`` keeps them as the truth and gets the new noise on top of its current labels.

Class structure comes from the store itself: each class's mean feature vector (over the rows
that truly hold it) defines which classes are confusable (nearest class means by cosine, after
centring on the mean over classes), and a row's ``difficulty`` for ``instance`` noise is its
distance to its own class mean over its distance to the nearest other class mean (above 1: the
row looks more like another class than its own).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from webly.data.noise import (
    NoiseKind,
    check_noise,
    confusable_classes,
    inject,
    realized_rates,
)
from webly.data.store import Dataset, DatasetWriter, FeatureSpec
from webly.errors import DataError

NEEDS_FEATURES = frozenset({"spurious", "pair", "instance"})
ROW_BLOCK = 1024  # rows per distance block: (1024, n_classes) float64
READ_BLOCK = 32768  # rows decoded at a time


def class_means(chunks: Iterable[tuple[np.ndarray, sp.csr_matrix]], n_classes: int) -> np.ndarray:
    """Mean feature vector of each class, accumulated chunk by chunk.

    Parameters
    ----------
    chunks : iterable of ``(x, labels)``: ``x`` (B, d) float features, ``labels`` (B, n_classes)
        CSR truth; a multi-label row counts toward each of its classes.
    n_classes : int

    Returns
    -------
    (n_classes, d) float64, NaN rows for classes that no row holds.
    """
    sums: np.ndarray | None = None
    counts = np.zeros(n_classes, dtype=np.float64)
    for x, labels in chunks:
        indicator = sp.csr_matrix(labels, dtype=np.float64)
        part = indicator.T @ x.astype(np.float64)  # (n_classes, d)
        sums = part if sums is None else sums + part
        counts += np.asarray(indicator.sum(axis=0)).ravel()
    if sums is None:
        raise DataError("no rows to compute class means from; the dataset is empty")
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def confusable_from_means(means: np.ndarray, m: int = 3) -> np.ndarray:
    """``(n_classes, m)`` int64 nearest classes by cosine of centred ``(n_classes, d)`` class
    means (NaN rows, classes without rows, are nobody's neighbour)."""
    present = np.isfinite(means).all(axis=1)
    centred = np.where(present[:, None], means - means[present].mean(axis=0), 0.0)
    return confusable_classes(centred, m=m)


def margin_difficulty(x: np.ndarray, labels: sp.csr_matrix, means: np.ndarray) -> np.ndarray:
    """How much each row looks like another class: distance to the nearest of its own class
    means over distance to the nearest other class mean.

    Parameters
    ----------
    x : (B, d) float features
    labels : (B, n_classes) CSR truth
    means : (n_classes, d) class means (`class_means`), NaN for classes without rows

    Returns
    -------
    (B,) float64 >= 0; 0 for rows without labels.
    """
    present = np.isfinite(means).all(axis=1)
    centres = np.where(present[:, None], means, 0.0)
    out = np.zeros(x.shape[0], dtype=np.float64)
    indicator = sp.csr_matrix(labels, dtype=bool)
    for start in range(0, x.shape[0], ROW_BLOCK):
        block = x[start : start + ROW_BLOCK].astype(np.float64)
        dist2 = (
            (block**2).sum(axis=1, keepdims=True)
            - 2.0 * block @ centres.T
            + (centres**2).sum(axis=1)[None, :]
        )  # (b, n_classes)
        dist = np.sqrt(np.maximum(dist2, 0.0))
        own = indicator[start : start + ROW_BLOCK].toarray()
        own_dist = np.where(own, dist, np.inf).min(axis=1)
        other_dist = np.where(own | ~present[None, :], np.inf, dist).min(axis=1)
        has = np.isfinite(own_dist)
        out[start : start + block.shape[0]][has] = own_dist[has] / np.maximum(
            other_dist[has], 1e-12
        )
    return out


def add_noise(
    store: str | Path,
    out: str | Path,
    kind: NoiseKind,
    rate: float,
    seed: int = 0,
    *,
    feature_group: str | None = None,
    overwrite: bool = False,
) -> Dataset:
    """Copy ``store`` to ``out`` with ``kind`` noise at ``rate`` injected into its labels.

    Parameters
    ----------
    store : path of a webly dataset (only read)
    out : path of the new dataset; may not exist (or be an empty folder) unless ``overwrite``
    kind, rate : see `webly.data.noise`; the kind must fit the store's task (`check_noise`)
    seed : seeds the noise; the same seed gives the same bytes
    feature_group : video-level group whose class means define confusable classes and row
        difficulty (``spurious``, ``pair``, ``instance``); the first video-level group if None

    Returns
    -------
    Dataset
        The new store; its manifest ``source`` records the input, kind, rate, seed and the
        realized rates against the labels it started from and against the truth.
    """
    ds = Dataset.open(store)
    check_noise(kind, rate, ds.task)
    store, out = Path(store), Path(out)
    spec = _feature_group(ds, feature_group, needed=kind in NEEDS_FEATURES)
    truth = ds.clean_labels if ds.clean_labels is not None else ds.labels
    current = ds.labels
    layout = dataclasses.replace(ds.layout, has_clean_labels=True)
    source = {
        "generator": "add-noise",
        "input": str(store),
        "input_source": ds.manifest.get("source", {}),
        "kind": kind,
        "rate": rate,
        "seed": seed,
        "feature_group": spec.name if spec is not None else None,
    }
    with DatasetWriter(out, layout, overwrite=overwrite, source=source, inputs=[store]) as writer:
        confusable, difficulty = None, None
        if spec is not None:
            means = class_means(_chunk_features(ds, spec.name, truth), ds.n_classes)
            confusable = confusable_from_means(means)
            if kind == "instance":
                difficulty = np.concatenate(
                    [
                        margin_difficulty(x, y, means)
                        for x, y in _chunk_features(ds, spec.name, truth)
                    ]
                )
        noisy = inject(current, kind, rate, seed, confusable=confusable, difficulty=difficulty)
        noisy.sort_indices()
        writer.source["realized"] = realized_rates(noisy, current)
        writer.source["realized_vs_truth"] = realized_rates(noisy, truth)
        schema = layout.schema()
        truth_column = "clean_labels" if ds.layout.has_clean_labels else "labels"
        for start, chunk in ds.iter_chunks():
            columns = {name: chunk.column(name) for name in chunk.schema.names}
            columns["clean_labels"] = chunk.column(truth_column)
            columns["labels"] = label_list_array(noisy[start : start + chunk.num_rows])
            writer.write_record_batch(
                pa.RecordBatch.from_arrays([columns[n] for n in schema.names], schema=schema),
                source=str(store),
            )
    return Dataset.open(out)


def label_list_array(labels: sp.csr_matrix) -> pa.ListArray:
    """``(B, n_classes)`` CSR labels -> Arrow ``list<int32>``, one list of class ids a row."""
    start, stop = int(labels.indptr[0]), int(labels.indptr[-1])
    offsets = (labels.indptr - start).astype(np.int32)
    values = labels.indices[start:stop].astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def _feature_group(ds: Dataset, name: str | None, needed: bool) -> FeatureSpec | None:
    """The video-level group to take class means from (None when the kind needs none)."""
    if name is not None:
        spec = ds.layout.feature(name)
        if spec.level != "video":
            raise DataError(
                f"feature group {name!r} is frame level; pass a video-level --feature-group"
            )
        return spec if needed else None
    if not needed:
        return None
    video = [f for f in ds.layout.features if f.level == "video"]
    if not video:
        raise DataError(
            f"{ds.path} has no video-level feature group to find confusable classes from; "
            "use symmetric or missing noise"
        )
    return video[0]


def _chunk_features(
    ds: Dataset, group: str, truth: sp.csr_matrix
) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
    """``(x, labels)`` per block of rows: decoded features of ``group`` and their truth."""
    for start in range(0, len(ds), READ_BLOCK):
        rows = np.arange(start, min(start + READ_BLOCK, len(ds)))
        yield ds.features(rows, groups=(group,)), truth[rows]
