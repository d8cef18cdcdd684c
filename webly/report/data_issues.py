"""Data issues beyond the labels, named as cleanlab's Datalab names them: ``near_duplicate``
and ``outlier`` rows in feature space, and ``class_imbalance``.

Near-duplicates and outliers are looked for in a bounded sample of the training rows (at most
`MAX_ROWS`, drawn with the recipe's seed), so the report of millions of rows still builds in
seconds. A row's features are its video-level groups concatenated (a store with frame-level
groups only: the mean of up to `FRAMES` evenly spaced frames), scaled to unit length (the cosine
geometry Datalab uses for features of more than a few dimensions) and, above `DIMS` dimensions,
projected onto `DIMS` random directions (distances kept to within a few percent; exact copies
stay at distance 0). With each sampled row's `NEIGHBOURS` nearest sampled rows, Datalab's rules:

- near_duplicate: a row closer to another than `NEAR_DUPLICATE` x the median distance of a row
  to its nearest one (both rows of such a pair are flagged);
- outlier: a row whose mean distance to its neighbours exceeds Q3 + (1 / `OUTLIER` - 1) x IQR of
  those means over the sample;
- class_imbalance (every training row): the rarest class holds under `IMBALANCE` x the share
  of the labels each class would hold were they spread evenly (1 / n_classes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from sklearn.neighbors import NearestNeighbors

from webly.data.store import Dataset

MAX_ROWS = 10_000  # rows sampled for near-duplicates and outliers
FRAMES = 32  # frames averaged a row when the store has no video-level features
DIMS = 64  # random directions the unit-length features are projected onto
NEIGHBOURS = 10  # Datalab's k
NEAR_DUPLICATE = 0.13  # Datalab's near_duplicate threshold, x the median nearest distance
OUTLIER = 0.37037  # Datalab's outlier threshold on features: Q3 + (1/OUTLIER - 1) x IQR
IMBALANCE = 0.1  # Datalab's class_imbalance threshold, x 1 / n_classes
_FRAME_BLOCK = 256  # rows whose frames are gathered at once


@dataclass(frozen=True)
class FeatureIssues:
    """Near-duplicates and outliers among ``rows``, a sample of the training rows.

    Attributes
    ----------
    rows : (m,) int64, the sampled rows of the training store, ascending
    nearest : (m,) int64, the training row nearest to each sampled row (among the sample)
    nearest_distance : (m,) float64, its distance (Euclidean between unit-length vectors)
    mean_distance : (m,) float64, mean distance to the row's ``k`` nearest rows
    near_duplicate, outlier : (m,) bool, Datalab's flags
    near_duplicate_below, outlier_above : the distances the flags are drawn at
    k : neighbours each row was compared with
    n_rows : rows of the training store
    """

    rows: np.ndarray
    nearest: np.ndarray
    nearest_distance: np.ndarray
    mean_distance: np.ndarray
    near_duplicate: np.ndarray
    outlier: np.ndarray
    near_duplicate_below: float
    outlier_above: float
    k: int
    n_rows: int


@dataclass(frozen=True)
class ClassImbalance:
    """The rarest class against Datalab's class_imbalance rule, on every training row.

    Attributes
    ----------
    counts : (n_classes,) int64, labels of each class
    rarest : the class of fewest labels (the lowest id on ties)
    share : its share of all labels
    below : the share under which a class counts as imbalanced (`IMBALANCE` / n_classes)
    """

    counts: np.ndarray
    rarest: int
    share: float
    below: float

    @property
    def flagged(self) -> bool:
        """Whether the rarest class is under the threshold (Datalab's issue)."""
        return self.share < self.below

    @property
    def n_under(self) -> int:
        """Classes under the threshold."""
        total = max(int(self.counts.sum()), 1)
        return int((self.counts / total < self.below).sum())


def feature_issues(features: np.ndarray, k: int = NEIGHBOURS) -> FeatureIssues:
    """Datalab's near_duplicate and outlier rules over the rows of ``features`` (m, d),
    m >= 2, each compared with its ``min(k, m - 1)`` nearest rows; ``rows`` are the positions
    0..m-1 (`find_feature_issues` maps them to training rows)."""
    k = min(k, len(features) - 1)
    index = NearestNeighbors(n_neighbors=k, algorithm="brute", n_jobs=1).fit(features)
    distances, neighbours = index.kneighbors()  # (m, k) each, nearest first, self excluded
    median = float(np.median(distances[:, 0]))
    below = NEAR_DUPLICATE * max(median, float(np.finfo(np.float32).eps))
    close = distances < below
    near_duplicate = close.any(axis=1)
    near_duplicate[neighbours[close]] = True  # a near-duplicate's partner is one too
    mean_distance = distances.mean(axis=1).astype(np.float64)
    q1, q3 = np.percentile(mean_distance, [25, 75])
    above = float(q3 + (1 / OUTLIER - 1) * (q3 - q1))
    return FeatureIssues(
        rows=np.arange(len(features), dtype=np.int64),
        nearest=neighbours[:, 0].astype(np.int64),
        nearest_distance=distances[:, 0].astype(np.float64),
        mean_distance=mean_distance,
        near_duplicate=near_duplicate,
        outlier=mean_distance > above,
        near_duplicate_below=below,
        outlier_above=above,
        k=k,
        n_rows=len(features),
    )


def find_feature_issues(train: Dataset, seed: int, max_rows: int = MAX_ROWS) -> FeatureIssues:
    """`feature_issues` on up to ``max_rows`` training rows drawn with ``seed``, the features
    prepared as the module docstring says; the training store needs at least 2 rows."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(train), size=min(max_rows, len(train)), replace=False))
    x = _unit_rows(_row_features(train, rows))
    if x.shape[1] > DIMS:
        x = x @ (rng.standard_normal((x.shape[1], DIMS)) / np.sqrt(DIMS)).astype(np.float32)
    found = feature_issues(x)
    return replace(found, rows=rows, nearest=rows[found.nearest], n_rows=len(train))


def class_imbalance(counts: np.ndarray) -> ClassImbalance:
    """Datalab's class_imbalance rule over ``counts`` (n_classes,), the labels of each class."""
    counts = np.asarray(counts, dtype=np.int64)
    shares = counts / max(int(counts.sum()), 1)
    rarest = int(np.argmin(shares))
    return ClassImbalance(counts, rarest, float(shares[rarest]), IMBALANCE / counts.size)


@dataclass(frozen=True)
class DataIssues:
    """What the report found in the training data: near-duplicates and outliers (None for a
    store of fewer than 2 rows) and the class balance."""

    features: FeatureIssues | None
    classes: ClassImbalance


def find_data_issues(train: Dataset, seed: int, max_rows: int = MAX_ROWS) -> DataIssues:
    """`find_feature_issues` and `class_imbalance` of the training store ``train``."""
    return DataIssues(
        find_feature_issues(train, seed, max_rows) if len(train) >= 2 else None,
        class_imbalance(np.bincount(train.labels.indices, minlength=train.n_classes)),
    )


def _row_features(train: Dataset, rows: np.ndarray) -> np.ndarray:
    """(len(rows), d) float32: the video-level features of ``rows``, or without any, the
    mean of up to `FRAMES` evenly spaced frames."""
    if any(f.level == "video" for f in train.layout.features):
        return train.features(rows)
    parts = []
    for start in range(0, rows.size, _FRAME_BLOCK):
        frames, lengths = train.frames(
            rows[start : start + _FRAME_BLOCK], max_frames=FRAMES, sampling="uniform"
        )  # (B, T, D), (B,)
        parts.append(frames.sum(axis=1) / np.maximum(lengths, 1)[:, None])
    return np.concatenate(parts).astype(np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """``x`` (m, d) with each non-zero row scaled to length 1."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)
