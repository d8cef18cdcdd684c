"""Which rows an epoch visits: instance-balanced, class-balanced or square-root sampling.

With ``n_c`` the rows of class c, class-balanced sampling draws classes with probability
proportional to ``n_c ** q`` (``q = 0``: uniform over classes; square-root: ``q = 1/2``), then a
row of the drawn class uniformly (Kang et al. 2020, "Decoupling representation and classifier").
For multi-label rows this two-step draw gives a row the weight ``sum over its labels c of
n_c ** (q - 1)``: a row is reachable through each of its classes. Rows without labels are never
drawn by these two. Instance-balanced sampling visits every row once, in a random order.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from webly.errors import ConfigError, DataError

Sampler = Literal["instance", "class", "sqrt"]
_EXPONENT = {"class": 0.0, "sqrt": 0.5}


def row_weights(labels: sp.csr_matrix, sampler: Sampler) -> np.ndarray:
    """Draw probability of each row under a class-aware sampler.

    Parameters
    ----------
    labels : (n_samples, n_classes) sparse 0/1
    sampler : ``"class"`` or ``"sqrt"``

    Returns
    -------
    (n_samples,) float64 summing to 1
    """
    if sampler not in _EXPONENT:
        raise ConfigError(f"sampler {sampler!r} has no row weights; use class or sqrt")
    binary = sp.csr_matrix(labels, dtype=np.float64, copy=True)
    binary.data[:] = 1.0
    counts = np.asarray(binary.sum(axis=0)).ravel()  # (n_classes,)
    per_class = np.zeros_like(counts)
    present = counts > 0
    per_class[present] = counts[present] ** (_EXPONENT[sampler] - 1.0)
    weights = binary @ per_class  # (n_samples,)
    total = weights.sum()
    if total <= 0:
        raise DataError(f"no row has a label, so {sampler!r} sampling cannot draw; use instance")
    return np.asarray(weights / total)


def epoch_rows(
    labels: sp.csr_matrix, sampler: Sampler, rng: np.random.Generator, n_rows: int | None = None
) -> np.ndarray:
    """Row indices one epoch visits, in visiting order.

    Parameters
    ----------
    labels : (n_samples, n_classes) sparse 0/1
    sampler : ``"instance"`` (a permutation of all rows), ``"class"`` or ``"sqrt"`` (``n_rows``
        draws with replacement by `row_weights`)
    rng : the trainer's generator
    n_rows : draws per epoch for the class-aware samplers; default n_samples

    Returns
    -------
    (n_rows,) int64
    """
    n_samples = labels.shape[0]
    if sampler == "instance":
        return rng.permutation(n_samples).astype(np.int64)
    if sampler not in _EXPONENT:
        raise ConfigError(f"sampler {sampler!r} is unknown; use instance, class or sqrt")
    size = n_samples if n_rows is None else n_rows
    return rng.choice(n_samples, size=size, replace=True, p=row_weights(labels, sampler))
