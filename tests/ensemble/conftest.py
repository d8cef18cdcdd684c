"""Members whose quality is known: top-k predictions of the same rows against known labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from webly.core import TopK


def multilabel_members(
    strengths: Sequence[float], n: int = 300, n_classes: int = 30, k: int = 10, seed: int = 0
) -> tuple[sp.csr_matrix, list[TopK]]:
    """1-3 positives a row and one member per strength: sigmoid(strength * (2y - 1) + N(0, 1))
    cut to its top k (strength 0 is noise, 10 all but perfect). Float32 scores do not tie."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, n_classes), dtype=bool)
    for row in range(n):
        truth[row, rng.choice(n_classes, rng.integers(1, 4), replace=False)] = True
    members = []
    for strength in strengths:
        logits = strength * np.where(truth, 1.0, -1.0) + rng.normal(0, 1, truth.shape)
        members.append(TopK.from_dense((1 / (1 + np.exp(-logits))).astype(np.float32), k))
    return sp.csr_matrix(truth, dtype=np.int8), members
