"""Label noise with a known truth: inject the errors web labels make, and measure them.

Kinds (``rate`` is in [0, 1)):

- ``missing`` (multi-label): drops exactly ``round(rate * n_labels)`` true labels, the dominant
  error of machine-generated tags;
- ``spurious`` (multi-label): adds ``round(rate * n_labels)`` wrong labels, each a class
  confusable with one of the row's true labels (class-conditional, not uniform);
- ``symmetric``: ``round(rate * n_labelled_rows)`` rows get one label replaced by a uniformly
  drawn other class;
- ``pair``: as ``symmetric``, but the replacement is the label's most confusable class;
- ``instance``: as ``pair``, but the ``round(rate * n_labelled_rows)`` rows are drawn without
  replacement with probability proportional to their ``difficulty``: harder rows are
  mislabeled more often, and the share of rows changed is exactly ``rate``.

Labels are ``(n_samples, n_classes)`` CSR matrices throughout (one label a row for multi-class).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import scipy.sparse as sp

from webly.core import Task
from webly.errors import ConfigError

NoiseKind = Literal["missing", "spurious", "symmetric", "pair", "instance"]
NOISE_KINDS: tuple[str, ...] = get_args(NoiseKind)
KINDS_FOR_TASK: dict[Task, tuple[str, ...]] = {
    Task.MULTICLASS: ("symmetric", "pair", "instance"),
    Task.MULTILABEL: ("missing", "spurious", "instance"),
}


def check_noise(kind: str, rate: float, task: Task | None = None) -> None:
    """Raise `ConfigError` unless ``kind`` is a noise kind (fitting ``task``, when given) and
    ``rate`` is in [0, 1): one label a row (multi-class) admits symmetric, pair and instance
    noise; label sets (multi-label) admit missing, spurious and instance noise."""
    if kind not in NOISE_KINDS:
        raise ConfigError(f"noise kind {kind!r} is unknown; use one of {', '.join(NOISE_KINDS)}")
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"noise rate {rate} is outside [0, 1); use e.g. --rate 0.2")
    fits = KINDS_FOR_TASK[task] if task is not None else NOISE_KINDS
    if kind not in fits:
        raise ConfigError(
            f"{kind} noise does not fit a {task} dataset; use one of {', '.join(fits)}"
        )


def inject(
    labels: sp.csr_matrix,
    kind: NoiseKind,
    rate: float,
    seed: int | np.random.SeedSequence,
    *,
    confusable: np.ndarray | None = None,
    difficulty: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Return a noisy copy of ``labels``; see the module docstring for each ``kind``.

    Parameters
    ----------
    labels : (n_samples, n_classes) CSR matrix of true labels (any positive value is a label).
    confusable : (n_classes, m) int array, each class's most confusable classes, best first
        (`confusable_classes`); without it replacements are drawn uniformly.
    difficulty : (n_samples,) non-negative array, required by ``instance``; rows are chosen
        with probability proportional to it.
    """
    check_noise(kind, rate)
    labels = sp.csr_matrix(labels, dtype=np.float32)
    labels.sum_duplicates()
    labels.eliminate_zeros()
    n_rows, n_classes = labels.shape
    if n_classes < 2 and kind != "missing" and rate > 0:
        raise ConfigError(f"{kind} noise needs at least 2 classes; the labels have {n_classes}")
    if confusable is not None:
        confusable = np.asarray(confusable, dtype=np.int64).reshape(n_classes, -1)
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_rows), np.diff(labels.indptr))
    cols = labels.indices.astype(np.int64)

    if kind == "missing":
        keep = np.ones(cols.size, dtype=bool)
        keep[rng.choice(cols.size, round(rate * cols.size), replace=False)] = False
        return _csr(rows[keep], cols[keep], labels.shape)
    if kind == "spurious":
        picks = rng.choice(cols.size, round(rate * cols.size), replace=False)
        added = _replacements(labels, rows[picks], cols[picks], rng, confusable)
        ok = added >= 0  # a row that already holds every class gains nothing
        return _csr(
            np.concatenate([rows, rows[picks][ok]]),
            np.concatenate([cols, added[ok]]),
            labels.shape,
        )

    labelled = np.flatnonzero(np.diff(labels.indptr) > 0)
    if kind == "instance":
        if difficulty is None or np.shape(difficulty) != (n_rows,):
            raise ConfigError(f"instance noise needs difficulty of shape ({n_rows},), one per row")
        weight = np.asarray(difficulty, dtype=np.float64)[labelled]
        if (weight < 0).any() or not np.isfinite(weight).all():
            raise ConfigError("instance noise difficulty must be finite and >= 0")
        # Weighted sampling without replacement (Efraimidis-Spirakis): the k largest
        # log(u) / w; rows of zero difficulty come last.
        with np.errstate(divide="ignore"):
            keys = np.log(rng.random(labelled.size)) / weight
        k = round(rate * labelled.size)
        chosen = labelled[np.argpartition(-keys, k - 1)[:k]] if k else labelled[:0]
    else:
        chosen = rng.choice(labelled, round(rate * labelled.size), replace=False)
    # One label of each chosen row (a uniformly drawn one) is replaced.
    position = labels.indptr[chosen] + rng.integers(0, np.diff(labels.indptr)[chosen])
    table = None if kind == "symmetric" else confusable
    replaced = _replacements(labels, chosen, cols[position], rng, table)
    new = cols.copy()
    new[position] = np.where(replaced >= 0, replaced, cols[position])
    return _csr(rows, new, labels.shape)


def _replacements(
    labels: sp.csr_matrix,
    rows: np.ndarray,
    classes: np.ndarray,
    rng: np.random.Generator,
    confusable: np.ndarray | None,
) -> np.ndarray:
    """A wrong class for each ``(row, class)``: its first confusable class (or a uniform other
    class) that the row does not hold yet, nor was given earlier in this call; -1 where the row
    already holds every class."""
    n_classes = labels.shape[1]
    if confusable is not None:
        out = confusable[classes, 0].copy()
    else:
        out = (classes + 1 + rng.integers(0, n_classes - 1, size=classes.size)) % n_classes
    taken: dict[int, set[int]] = {}
    for i, (row, cls) in enumerate(zip(rows.tolist(), out.tolist(), strict=True)):
        held = taken.get(row)
        if held is None:
            held = set(labels.indices[labels.indptr[row] : labels.indptr[row + 1]].tolist())
            taken[row] = held
        if cls in held:
            candidates = [] if confusable is None else confusable[classes[i]].tolist()
            free = [c for c in candidates if c not in held]
            if not free and len(held) < n_classes:
                # A uniform class the row lacks: a few draws, then the explicit list.
                draws = rng.integers(0, n_classes, size=16).tolist()
                free = [c for c in draws if c not in held] or [
                    c for c in range(n_classes) if c not in held
                ]
            cls = free[0] if free else -1
            out[i] = cls
        held.add(cls)
    return out


def confusable_classes(prototypes: np.ndarray, m: int = 3, block: int = 1024) -> np.ndarray:
    """``(n_classes, m)`` int64: each class's ``m`` nearest other classes by cosine similarity
    of their ``(n_classes, dim)`` prototypes (or class-mean features), nearest first.

    Works in blocks of ``block`` classes, so 50,000 classes need no 50,000² matrix.
    """
    unit = prototypes / np.maximum(np.linalg.norm(prototypes, axis=1, keepdims=True), 1e-12)
    n_classes = unit.shape[0]
    m = min(m, n_classes - 1)
    out = np.empty((n_classes, m), dtype=np.int64)
    for start in range(0, n_classes, block):
        sim = unit[start : start + block] @ unit.T  # (block, n_classes)
        sim[np.arange(sim.shape[0]), np.arange(start, start + sim.shape[0])] = -np.inf
        top = np.argpartition(-sim, m - 1, axis=1)[:, :m]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        out[start : start + block] = np.take_along_axis(top, order, axis=1)
    return out


def realized_rates(noisy: sp.csr_matrix, clean: sp.csr_matrix) -> dict[str, float]:
    """How noisy ``noisy`` is against the truth ``clean`` (both ``(n_samples, n_classes)``).

    ``missing``: share of true labels absent; ``spurious``: share of given labels that are
    wrong; ``rows_changed``: share of rows whose label set differs.
    """
    given, truth = (sp.csr_matrix(m, dtype=bool).astype(np.int8) for m in (noisy, clean))
    agree = given.multiply(truth).nnz
    differ = (given != truth).getnnz(axis=1) > 0
    return {
        "missing": 1.0 - agree / max(truth.nnz, 1),
        "spurious": 1.0 - agree / max(given.nnz, 1),
        "rows_changed": float(differ.mean()) if differ.size else 0.0,
    }


def _csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    matrix = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix
