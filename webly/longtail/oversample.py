"""Oversampling the top-ranked rows of small classes (AliProducts): repeat the rows the models
trust most, so a rare class gains weight without repeating its likeliest label errors.
"""

from __future__ import annotations

import math

import numpy as np

from webly.core import LabelsLike, canonical_labels
from webly.errors import ConfigError
from webly.longtail.labels import ScoresLike, entry_scores, rank_in_class
from webly.metrics.classification import class_counts


def oversample_top(
    labels: LabelsLike,
    scores: ScoresLike,
    *,
    target: int,
    top_fraction: float = 0.5,
    max_factor: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Extra rows that bring each class with fewer than ``target`` rows up to ``target``.

    Parameters
    ----------
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    scores : (n_samples,) or (n_samples, n_classes) float
        Confidence of each row in its class, higher = more trusted (e.g. the out-of-fold
        probability of the given label); see `webly.longtail.labels`.
    target : int >= 1
        Rows each class should reach; classes with as many or more, and classes without rows,
        get nothing.
    top_fraction : float in (0, 1]
        Only the best ``ceil(top_fraction * n_c)`` rows of a class (at least one) are repeated.
    max_factor : float >= 1, optional
        A class grows to at most ``floor(max_factor * n_c)`` rows.
    seed : int
        Breaks ties in confidence and picks which pool rows get the last, partial round of
        copies; the same seed gives the same rows.

    Returns
    -------
    (n_extra,) int64
        Row indices, a row once per extra copy: the whole pool is repeated as often as it fits
        and the rest drawn from the pool without replacement. Grouped by class, ascending. A
        multi-label row repeated for one class also adds to its other classes.

    Examples
    --------
    Train on every row plus the extra copies (``Dataset.subset`` takes repeated rows)::

        extra = oversample_top(train.labels, p_given, target=50)
        rows = np.concatenate([np.arange(len(train)), extra])
        fit(net, train.subset(rows), valid, config, groups, workdir,
            sample_weight=None if weight is None else weight[rows])
    """
    if isinstance(target, bool) or not isinstance(target, int | np.integer) or target < 1:
        raise ConfigError(f"oversample target is {target!r}; pass an int >= 1 (rows per class)")
    if not 0.0 < top_fraction <= 1.0:
        raise ConfigError(f"oversample top_fraction is {top_fraction}; use a share in (0, 1]")
    if max_factor is not None and not (np.isfinite(max_factor) and max_factor >= 1.0):
        raise ConfigError(f"oversample max_factor is {max_factor}; use a value >= 1 or None")
    csr = canonical_labels(labels)
    values = entry_scores(csr, scores)
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(csr.shape[0])
    _, rows, _ = rank_in_class(csr, values, tiebreak)
    counts = class_counts(csr)
    starts = np.r_[0, np.cumsum(counts)]  # class c's ranked rows: rows[starts[c]:starts[c + 1]]
    extra: list[np.ndarray] = []
    for c in np.flatnonzero((counts > 0) & (counts < target)):
        n_c = int(counts[c])
        goal = target if max_factor is None else min(target, math.floor(max_factor * n_c))
        needed = goal - n_c
        if needed <= 0:
            continue
        pool = rows[starts[c] : starts[c] + max(1, math.ceil(top_fraction * n_c))]
        rounds, rest = divmod(needed, pool.size)
        extra.append(np.tile(pool, rounds))
        extra.append(np.sort(rng.choice(pool, size=rest, replace=False)))
    return np.concatenate(extra).astype(np.int64) if extra else np.zeros(0, np.int64)
