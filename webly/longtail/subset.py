"""A class-balanced fine-tune subset: the top-N rows of each class by confidence (AliProducts:
the 30 most confident images per class, to fine-tune the classifier or the whole network)."""

from __future__ import annotations

import numpy as np

from webly.core import LabelsLike, canonical_labels
from webly.errors import ConfigError
from webly.longtail.labels import ScoresLike, entry_scores, rank_in_class


def balanced_subset(labels: LabelsLike, scores: ScoresLike, per_class: int = 30) -> np.ndarray:
    """Rows of the balanced subset: each class's ``per_class`` most confident rows.

    Parameters
    ----------
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
    scores : (n_samples,) or (n_samples, n_classes) float
        Confidence of each row in its class, higher = more trusted; ties go to the lower row.
    per_class : int >= 1
        Rows to take per class; a class with fewer gives all of its rows.

    Returns
    -------
    (m,) int64, sorted, without duplicates
        A multi-label row is a candidate of each of its classes and is returned once; a class
        can then hold more than ``per_class`` rows of the subset (rows chosen for its
        co-occurring classes), never fewer than ``min(per_class, n_c)``.

    Examples
    --------
    ``fit(net, train.subset(balanced_subset(train.labels, p_given, 30)), valid, ...)``
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int | np.integer) or per_class < 1:
        raise ConfigError(f"balanced subset per_class is {per_class!r}; pass an int >= 1")
    csr = canonical_labels(labels)
    _, rows, rank = rank_in_class(csr, entry_scores(csr, scores))
    return np.unique(rows[rank < per_class]).astype(np.int64)
