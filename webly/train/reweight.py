"""Class re-weighting: per-class loss weights from inverse class frequency to a power."""

from __future__ import annotations

from typing import Literal

import numpy as np

from webly.core import LabelsLike, canonical_labels
from webly.errors import ConfigError, DataError
from webly.metrics.classification import class_counts

Normalize = Literal["mean", "classes"]


def class_weights(
    labels: LabelsLike,
    power: float = 0.5,
    normalize: Normalize | None = "mean",
    n_classes: int | None = None,
) -> np.ndarray:
    """Per-class loss weights ``w_c ∝ n_c ** -power``, for ``fit(..., class_weight=...)``.

    Parameters
    ----------
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
        The training labels; ``n_c`` is the number of rows labelled with class c.
    power : float >= 0
        0 gives every class weight 1, 1 is inverse frequency, 0.5 (default) its square root.
    normalize : {"mean", "classes", None}
        ``"mean"``: the mean weight over labelled (row, class) entries is 1,
        ``sum_c n_c w_c = sum_c n_c`` (for multi-class data: the mean weight over rows), so the
        loss of the positive terms keeps its scale. ``"classes"``: the mean over classes is 1.
        None: the raw ``n_c ** -power``.
    n_classes : int, optional
        Class count of 1-d labels (default: the largest id + 1).

    Returns
    -------
    (n_classes,) float32
        A class without rows gets the largest weight of the classes with rows: it has no
        positive terms to scale, but a multi-label BCE loss still weights its negatives, and
        they should be learned as firmly as the rarest observed class's. It does not count in
        the ``"mean"`` normalisation (n_c = 0).

    Notes
    -----
    ``fit`` multiplies each class's term of the per-sample loss by its weight; for multi-label
    BCE that term includes the negatives, so the weights scale a class's negatives too.
    """
    if not np.isfinite(power) or power < 0:
        raise ConfigError(f"class weight power is {power}; use a finite value >= 0 (0.5 = sqrt)")
    if normalize not in ("mean", "classes", None):
        raise ConfigError(f"class weight normalize is {normalize!r}; use 'mean', 'classes' or None")
    counts = class_counts(canonical_labels(labels, n_classes=n_classes))  # (n_classes,)
    present = counts > 0
    if not present.any():
        raise DataError("labels have no positives, so class frequencies are undefined; pass labels")
    weights = np.empty(counts.size, dtype=np.float64)
    weights[present] = counts[present].astype(np.float64) ** -power
    weights[~present] = weights[present].max()
    if normalize == "mean":
        weights *= counts.sum() / float(counts @ weights)
    elif normalize == "classes":
        weights /= weights.mean()
    return weights.astype(np.float32)
