"""``cluster``: trust the dense, compact parts of each class in a feature space (WebVision).

Each class is judged on its own, from the rows given it (multi-label: each (row, class) entry)
and their ``features`` (an embedding or any feature space), L2-normalised first when
``metric="cosine"`` (the default). Two modes:

- ``kmeans``: k-means with ``k = clusters`` clusters (default ``max(1, min(5, m // 10))`` for a
  class of ``m`` rows). The class's trusted core is its ``ceil(top_fraction * m)`` rows with the
  highest out-of-fold probability of the class; ``r`` is their mean feature and ``R`` the median
  distance of the class's rows to ``r``. Cluster ``j``, holding a share ``s_j`` of the class's
  rows, with its centroid ``mu_j`` at distance ``d_j = ||mu_j - r||``, scores::

      score_j = 1 - min(1, k * s_j) * min(1, R / d_j)        (R / d_j counts as 1 when d_j = 0)

  A cluster at least as large as an even split whose centroid lies within the class's median
  radius around the core scores 0; smaller clusters (size) and farther ones (distance) score up
  to 1. Each row gets its cluster's score and is flagged when the score exceeds ``threshold``
  (default 0.5: e.g. a cluster of half an even split's size, or one twice the median radius
  away).
- ``density``: ``rho_i`` is the mean distance (cosine: ``1 - cos``) from row ``i`` to its
  ``neighbors`` nearest other rows of the class; dense = clean. A row scores::

      score_i = max(0, 1 - median(rho) / rho_i)

  0 for a row at least as dense as the class's median row, 0.5 for one whose neighbours lie
  twice as far. Flagged: the rows whose density is below the class's ``quantile`` quantile
  (``rho_i`` above the ``1 - quantile`` quantile of the class), or, when ``threshold`` is given,
  the rows scoring above it. Density is evidence when the noise comes from many sources; noise
  that all comes from one other class forms a dense group of its own, which ``kmeans`` (distance
  to the core) catches instead.

A class with fewer than ``min_class_rows`` rows is never flagged (one `WeblyWarning` says how
many). Multi-class, a flagged row is estimated to be of its predicted class; multi-label, each
flagged entry is a suspect spurious label (the method finds no missing ones) and a row scores its
largest entry score. ``class_noise_rate`` is the share of each class's labels flagged.

Memory and time are bounded per class: k-means and the neighbour index are fitted on at most
``max_fit_rows`` rows of a class (a random sample from ``seed``) and all its rows are assigned
or queried in blocks; nothing of size n_samples * n_samples is built.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from webly.clean._registry import check_range, register_method
from webly.clean.problem import NoiseProblem
from webly.clean.probs import Entries, label_hits, label_probs, label_rows, probs_at, sorted_row_max
from webly.clean.verdict import Detection, multiclass_detection, multilabel_detection, safe_divide
from webly.errors import ConfigError, DataError, WeblyWarning

MODES = ("kmeans", "density")
METRICS = ("cosine", "euclidean")
DEFAULT_CLUSTERS = 5  # k-means clusters a class gets at most by default (and one per 10 rows)
_BLOCK_ROWS = 1 << 14  # rows of features gathered at a time


@register_method("cluster", inputs=("features",))
def cluster(
    problem: NoiseProblem,
    *,
    features: Any = None,
    mode: str = "kmeans",
    clusters: int | None = None,
    top_fraction: float = 0.2,
    neighbors: int = 10,
    quantile: float = 0.2,
    threshold: float | None = None,
    metric: str = "cosine",
    min_class_rows: int = 5,
    max_fit_rows: int = 20_000,
    seed: int = 0,
) -> Detection:
    """Flag the rows that lie in small, far clusters (``kmeans``) or sparse regions
    (``density``) of their class; see the module docstring.

    Parameters
    ----------
    problem : NoiseProblem
    features : (n_samples, d) float array
        The rows' features or embeddings, in the labels' row order (may be memory-mapped).
    mode : {"kmeans", "density"}
    clusters : int, optional
        k-means clusters per class (capped at the rows fitted); ``max(1, min(5, m // 10))``
        for a class of ``m`` rows when None.
    top_fraction : float in (0, 1]
        Share of a class's rows, by out-of-fold probability of the class, that make its core.
    neighbors : int
        Density: nearest rows of the same class averaged (capped at the class's rows - 1).
    quantile : float in [0, 1)
        Density without ``threshold``: share of each class's least dense rows flagged.
    threshold : float in [0, 1], optional
        Flag rows scoring above it; None: 0.5 for ``kmeans``, the ``quantile`` rule for
        ``density``.
    metric : {"cosine", "euclidean"}
    min_class_rows : int
        Classes with fewer rows are never flagged (>= 2).
    max_fit_rows : int
        Rows of a class k-means and the neighbour index are fitted on at most (>= 2).
    seed : int
        Seeds each class's sample and k-means (class ``c`` uses child ``c`` of
        ``SeedSequence(seed)``).
    """
    if mode not in MODES:
        raise ConfigError(f"mode is {mode!r}; pass one of {', '.join(MODES)}")
    if metric not in METRICS:
        raise ConfigError(f"metric is {metric!r}; pass one of {', '.join(METRICS)}")
    if clusters is not None:
        _check_int("clusters", clusters, 1, " or None")
    if not (_is_number(top_fraction) and 0 < top_fraction <= 1):
        raise ConfigError(f"top_fraction is {top_fraction!r}; pass a number in (0, 1]")
    _check_int("neighbors", neighbors, 1)
    check_range("quantile", quantile, 0.0, 1.0, closed=False)
    if threshold is not None:
        check_range("threshold", threshold, 0.0, 1.0)
    _check_int("min_class_rows", min_class_rows, 2)
    _check_int("max_fit_rows", max_fit_rows, 2)
    _check_int("seed", seed, 0)
    x = check_features(features, problem.n_samples)

    labels = problem.labels
    rows_of_entry = label_rows(labels)  # (nnz,)
    by_class = np.argsort(labels.indices, kind="stable")  # entries grouped by class, rows rising
    counts = problem.label_counts()
    starts = np.concatenate([[0], np.cumsum(counts)])
    _warn_small(counts, min_class_rows)
    score = np.zeros(labels.nnz, dtype=np.float64)
    flagged = np.zeros(labels.nnz, dtype=bool)
    cut = 0.5 if threshold is None else threshold
    # one thread a fit: the per-class problems are small and thread start-up would dominate
    with threadpool_limits(limits=1):
        for c in np.flatnonzero(counts >= min_class_rows):
            entries = by_class[starts[c] : starts[c + 1]]
            rows = rows_of_entry[entries]
            sample_seq, kmeans_seq = np.random.SeedSequence(seed, spawn_key=(int(c),)).spawn(2)
            fit = _fit_sample(rows.size, max_fit_rows, sample_seq)
            if mode == "kmeans":
                p_class = probs_at(problem.probs, rows, np.full(rows.size, c))
                k = clusters or max(1, min(DEFAULT_CLUSTERS, rows.size // 10))
                state = int(kmeans_seq.generate_state(1)[0])
                score[entries] = kmeans_scores(
                    x, rows, p_class, fit, k, top_fraction, metric, state
                )
                flagged[entries] = score[entries] > cut
            else:
                rho = density(x, rows, fit, neighbors, metric)
                score[entries], flagged[entries] = density_scores(rho, quantile, threshold)

    if not problem.task.multilabel:  # one entry a row, in row order
        found = multiclass_detection(problem, score, flagged)
        rate = safe_divide(np.bincount(labels.indices[flagged], minlength=counts.size), counts)
        return replace(found, class_noise_rate=rate)
    p_label = label_probs(problem.probs, labels, label_hits(problem.probs, labels))
    row_score = sorted_row_max(rows_of_entry, score, problem.n_samples)
    return multilabel_detection(problem, p_label, flagged, no_entries(), row_score)


def kmeans_scores(
    features: np.ndarray,
    rows: np.ndarray,
    p_class: np.ndarray,
    fit: np.ndarray,
    k: int,
    top_fraction: float,
    metric: str,
    random_state: int,
) -> np.ndarray:
    """(m,) float64 k-means score of each of one class's rows (the module docstring's
    ``score_j`` of its cluster).

    Parameters
    ----------
    features : (n_samples, d) numeric
    rows : (m,) int rows of the class, ascending
    p_class : (m,) float out-of-fold probability of the class in each row
    fit : (m_fit,) int positions in ``rows`` k-means is fitted on, ascending
    k : int
        Clusters; capped at ``m_fit``.
    top_fraction : float in (0, 1]
    metric : {"cosine", "euclidean"}
    random_state : int
        k-means seed.
    """
    m = rows.size
    k = min(k, fit.size)
    n_top = min(m, max(1, math.ceil(top_fraction * m)))
    top = np.sort(np.argsort(-p_class, kind="stable")[:n_top])
    reference = _mean(features, rows[top], metric)  # (d,)
    if k == 1:
        assign = np.zeros(m, dtype=np.int64)
        centers = _mean(features, rows, metric)[None, :]  # (1, d)
    else:
        model = KMeans(n_clusters=k, n_init=3, random_state=random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct rows than k
            model.fit(gather(features, rows[fit], metric))
        if fit.size == m:
            assign = model.labels_.astype(np.int64)
        else:
            assign = np.concatenate(
                [model.predict(gather(features, rows[b], metric)) for b in _blocks(m)]
            ).astype(np.int64)
        centers = model.cluster_centers_.astype(np.float64)  # (k, d)
    radius = float(
        np.median(
            np.concatenate(
                [
                    np.linalg.norm(gather(features, rows[b], metric) - reference, axis=1)
                    for b in _blocks(m)
                ]
            )
        )
    )
    share = np.bincount(assign, minlength=k) / m
    far = np.linalg.norm(centers - reference, axis=1)  # (k,)
    near = np.where(far > radius, radius / np.maximum(far, 1e-300), 1.0)
    cluster_score = 1 - np.minimum(1.0, k * share) * near
    return np.asarray(cluster_score[assign], dtype=np.float64)


def density(
    features: np.ndarray, rows: np.ndarray, fit: np.ndarray, neighbors: int, metric: str
) -> np.ndarray:
    """(m,) float64 mean distance of each of one class's rows to its nearest other rows among
    ``rows[fit]`` (cosine distance ``1 - cos`` when ``metric`` is cosine).

    Parameters
    ----------
    features : (n_samples, d) numeric
    rows : (m,) int rows of the class
    fit : (m_fit,) int positions in ``rows`` the neighbour index holds, ascending, m_fit >= 2
    neighbors : int
        Neighbours averaged; capped at ``m_fit - 1``.
    metric : {"cosine", "euclidean"}
    """
    k = min(neighbors, fit.size - 1)
    # on unit vectors ||a - b||^2 / 2 = 1 - cos(a, b): Euclidean search, exact cosine distances
    index = NearestNeighbors(n_neighbors=k + 1).fit(gather(features, rows[fit], metric))
    in_index = np.full(rows.size, -1, dtype=np.int64)
    in_index[fit] = np.arange(fit.size)
    rho = np.empty(rows.size, dtype=np.float64)
    for block in _blocks(rows.size):
        dist, ind = index.kneighbors(gather(features, rows[block], metric))  # (b, k + 1)
        is_self = ind == in_index[block, None]
        is_self[~is_self.any(axis=1), -1] = True  # not in the index: drop the farthest instead
        near = dist[~is_self].reshape(dist.shape[0], k)
        rho[block] = (near**2 / 2 if metric == "cosine" else near).mean(axis=1)
    return rho


def density_scores(
    rho: np.ndarray, quantile: float, threshold: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """(m,) float64 scores ``max(0, 1 - median(rho) / rho)`` and (m,) bool flags of one
    class's rows from their neighbour distances ``rho`` (m,): ``rho`` above the class's
    ``1 - quantile`` quantile, or the score above ``threshold`` when it is given."""
    median = float(np.median(rho))
    score = np.where(rho > median, 1 - median / np.maximum(rho, 1e-300), 0.0)
    if threshold is not None:
        return score, score > threshold
    return score, rho > np.quantile(rho, 1 - quantile)


def check_features(features: Any, n_samples: int) -> np.ndarray:
    """``features`` checked: (n_samples, d) numeric, finite; returned without a copy."""
    if features is None:
        raise DataError(
            "cluster needs features but got none; pass features=(n_samples, d) array, e.g. "
            "find_noisy_labels(labels, oof, method='cluster', features=Dataset.features(rows))"
        )
    x = features if isinstance(features, np.ndarray) else np.asarray(features)
    if x.ndim != 2 or x.dtype.kind not in "fiu" or x.shape[1] == 0:
        raise DataError(
            f"features have shape {x.shape} and dtype {x.dtype}; pass (n_samples, d) float "
            "features, d >= 1"
        )
    if x.shape[0] != n_samples:
        raise DataError(
            f"features have {x.shape[0]} rows but labels have {n_samples}; pass features of "
            "the labelled rows, in the same order"
        )
    if x.dtype.kind == "f":
        for block in _blocks(n_samples):
            bad = ~np.isfinite(x[block])
            if bad.any():
                row, col = (int(i[0]) for i in np.nonzero(bad))
                raise DataError(
                    f"features hold {x[block][row, col]} at row {block.start + row}; pass "
                    "finite features (impute or drop the row)"
                )
    return x


def gather(features: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """(len(rows), d) float32 features of ``rows``, L2-normalised when ``metric`` is cosine
    (an all-zero row stays zero)."""
    x = np.asarray(features[rows], dtype=np.float32)
    if metric == "cosine":
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return x


def no_entries() -> Entries:
    """No (row, class) entries: the missing labels of a method that finds none."""
    empty = np.zeros(0, dtype=np.int64)
    return Entries(empty, empty, np.zeros(0, dtype=np.float32))


def _mean(features: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """(d,) float64 mean of the (normalised) features of ``rows``, in blocks."""
    total = np.zeros(features.shape[1], dtype=np.float64)
    for block in _blocks(rows.size):
        total += gather(features, rows[block], metric).sum(axis=0, dtype=np.float64)
    return total / rows.size


def _fit_sample(m: int, cap: int, seed: np.random.SeedSequence) -> np.ndarray:
    """(min(m, cap),) int64 ascending positions of the rows a class's model is fitted on."""
    if m <= cap:
        return np.arange(m, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(m, cap, replace=False)).astype(np.int64)


def _blocks(n: int) -> list[slice]:
    return [slice(start, min(start + _BLOCK_ROWS, n)) for start in range(0, n, _BLOCK_ROWS)]


def _warn_small(counts: np.ndarray, min_class_rows: int) -> None:
    small = np.flatnonzero((counts > 0) & (counts < min_class_rows))
    if small.size:
        shown = ", ".join(str(c) for c in small[:10]) + (", ..." if small.size > 10 else "")
        warnings.warn(
            f"cluster: {small.size} classes have fewer than min_class_rows={min_class_rows} "
            f"labelled rows (classes {shown}); their labels are never flagged; lower "
            "min_class_rows (>= 2) to judge them",
            WeblyWarning,
            stacklevel=4,
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int, alternative: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} is {value!r}; pass an integer >= {low}{alternative}")
