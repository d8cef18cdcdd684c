"""From a verdict to one action a row: keep, drop, down-weight, relabel or add missing labels.

The rules, in order (`ActionRules` holds the numbers):

1. Rows not flagged are kept.
2. Repairs. Multi-class: a flagged row whose top-1 class is not its given label and has
   probability >= ``relabel_threshold`` is relabelled to it. Multi-label: its suspect missing
   labels with probability >= ``relabel_threshold`` are added and (unless ``remove_spurious``
   is off) its suspect spurious labels with probability <= ``1 - relabel_threshold`` removed;
   a row that loses a label is ``relabel``, one that only gains ``add_missing``, and one left
   without any label ``drop``.
3. Of the flagged rows not repaired, the highest-scored ``floor(drop_fraction * n_samples)``
   are dropped (ties: the earlier row), the rest down-weighted to ``down_weight``.

Sample weights: 0 for ``drop``, ``down_weight`` for ``down_weight``, 1 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from webly.clean.verdict import NoiseVerdict, bool_csr
from webly.errors import ConfigError

ACTIONS: tuple[str, ...] = ("keep", "drop", "down_weight", "relabel", "add_missing")
KEEP, DROP, DOWN_WEIGHT, RELABEL, ADD_MISSING = range(len(ACTIONS))


@dataclass(frozen=True)
class ActionRules:
    """The numbers of the action rules (see the module docstring).

    Attributes
    ----------
    drop_fraction : float in [0, 1]
        Most rows dropped for being flagged and not repaired, as a share of all rows.
    relabel_threshold : float in [0.5, 1]
        Probability the prediction needs to repair a label instead of dropping the row.
    down_weight : float in [0, 1]
        Sample weight of flagged rows that are neither repaired nor dropped.
    remove_spurious : bool
        Multi-label: remove suspect spurious labels (True) or only add missing ones (False;
        where rare classes are learned poorly, their true labels look spurious).
    """

    drop_fraction: float = 0.1
    relabel_threshold: float = 0.9
    down_weight: float = 0.5
    remove_spurious: bool = True

    def __post_init__(self) -> None:
        for name, low in (("drop_fraction", 0.0), ("relabel_threshold", 0.5), ("down_weight", 0.0)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not low <= value <= 1
            ):
                raise ConfigError(f"{name} is {value!r}; pass a number in [{low}, 1]")
        if not isinstance(self.remove_spurious, bool):
            raise ConfigError(f"remove_spurious is {self.remove_spurious!r}; pass true or false")

    def weights(self) -> np.ndarray:
        """(len(ACTIONS),) float32 sample weight of each action."""
        out = np.ones(len(ACTIONS), dtype=np.float32)
        out[DROP], out[DOWN_WEIGHT] = 0.0, self.down_weight
        return out


@dataclass(frozen=True, eq=False)
class Actions:
    """The chosen actions.

    Attributes
    ----------
    codes : (n_samples,) uint8
        Index into `ACTIONS` of each row's action.
    removed, added : (n_samples, n_classes) bool csr_matrix
        Given labels taken away, and labels added, by the repairs.
    """

    codes: np.ndarray
    removed: sp.csr_matrix
    added: sp.csr_matrix


def choose_actions(verdict: NoiseVerdict, rules: ActionRules) -> Actions:
    """Apply ``rules`` to ``verdict``; see the module docstring."""
    labels = verdict.labels
    shape = labels.shape
    codes = np.full(verdict.n_samples, KEEP, dtype=np.uint8)
    if not verdict.task.multilabel:
        given = labels.indices
        fix = (
            verdict.is_noisy
            & (verdict.predicted >= 0)
            & (verdict.predicted != given)
            & (verdict.predicted_prob >= rules.relabel_threshold)
        )
        rows = np.flatnonzero(fix)
        removed = bool_csr(rows, given[rows], shape)
        added = bool_csr(rows, verdict.predicted[rows], shape)
        codes[fix] = RELABEL
    else:
        removed = _suspects_where(
            verdict,
            verdict.suspect_spurious,
            upper=1 - rules.relabel_threshold if rules.remove_spurious else -np.inf,
        )
        added = _suspects_where(verdict, verdict.suspect_missing, lower=rules.relabel_threshold)
        loses, gains = np.diff(removed.indptr) > 0, np.diff(added.indptr) > 0
        codes[gains] = ADD_MISSING
        codes[loses] = RELABEL
        left = np.diff(labels.indptr) - np.diff(removed.indptr) + np.diff(added.indptr)
        codes[(loses | gains) & (left == 0)] = DROP
    rest = np.flatnonzero(verdict.is_noisy & (codes == KEEP))
    ranked = rest[np.argsort(-verdict.row_score[rest], kind="stable")]
    n_drop = int(np.floor(rules.drop_fraction * verdict.n_samples))
    codes[ranked[:n_drop]] = DROP
    codes[ranked[n_drop:]] = DOWN_WEIGHT
    return Actions(codes, removed, added)


def _suspects_where(
    verdict: NoiseVerdict,
    suspects: sp.csr_matrix | None,
    *,
    lower: float = -np.inf,
    upper: float = np.inf,
) -> sp.csr_matrix:
    """The entries of ``suspects`` whose predicted probability lies in [lower, upper]."""
    if suspects is None or verdict.suspect_prob is None:
        raise ConfigError(
            f"a {verdict.task} verdict of {verdict.method!r} lacks the per-label suspects; "
            "pass the verdict find_noisy_labels returned"
        )
    coo = suspects.tocoo()
    if coo.nnz == 0:  # indexing with empty arrays would return a (1, 0) matrix
        return bool_csr(coo.row, coo.col, suspects.shape)
    prob = np.asarray(verdict.suspect_prob[coo.row, coo.col]).ravel()
    keep = (prob >= lower) & (prob <= upper)
    return bool_csr(coo.row[keep], coo.col[keep], suspects.shape)
