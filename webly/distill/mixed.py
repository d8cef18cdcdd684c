"""Mixed training rows: more inputs for a student to copy its teacher on, without new labels.

A student copies its teacher's function only where it sees it, and the labeled rows are few
(`webly.distill.unlabeled` adds rows nobody labeled, where a data set has them). Mixup-style
inputs cost nothing: row ``i`` of the mixed store is ``w_i * x_i + (1 - w_i) * x_j`` for a
random partner ``j`` and ``w_i ~ Beta(alpha, alpha)``, every feature group mixed alike (frame
groups zero-padded to the longer of the two videos, as `webly.train.mixup` does in a batch).
Unlike mixup in training, the target of a mixed row is not the mix of the two rows' labels but
the teacher's prediction of the mixed input itself: the teacher is run on the stored rows
(`webly.distill.run`), and they train through the trainer's unlabeled-rows term
(`webly.distill.unlabeled.teach_unlabeled`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from webly.data.store import Batch, Dataset
from webly.distill._derived import derived_store
from webly.errors import ConfigError


def mix_rows(
    train: Dataset,
    out: str | Path,
    alpha: float,
    seed: int,
    *,
    rows: np.ndarray | None = None,
    overwrite: bool = False,
) -> Dataset:
    """Write one mixed row per row of ``rows`` of ``train`` to a new store ``out`` (no labels).

    Parameters
    ----------
    train : the training store (only read)
    out : the mixed store; reused as it is when it holds the mix of this ``train``, ``rows``,
        ``alpha`` and ``seed``, otherwise written (replacing a store there only with
        ``overwrite``)
    alpha : > 0, the Beta(alpha, alpha) of each row's weight ``w``
    seed : draws the partners and the weights
    rows : ``(n,)`` positions in ``train`` of the rows to mix, partners drawn among them (the
        rows a model trains on: a row it validates on must not leak into its mixed rows);
        None: every row

    Returns
    -------
    Dataset
        ``n`` rows, ``mix-<i>`` the mix of ``rows[i]`` and ``rows[partners[i]]`` by
        ``weights[i]`` (`mix_plan`), the feature groups of ``train``, no labels; its manifest's
        ``source`` records ``alpha``, ``seed``, the training store's hash and a SHA-256 of
        ``rows``.
    """
    if not alpha > 0:
        raise ConfigError(f"mixup alpha is {alpha}; use a value > 0, e.g. 0.4")
    rows = np.arange(len(train)) if rows is None else np.asarray(rows, dtype=np.int64)
    partners, weights = mix_plan(rows.size, alpha, seed)
    return derived_store(
        train, Path(out), rows, {"generator": "mixup", "alpha": alpha, "seed": seed},
        lambda block: _mixed_batch(
            train, block, rows[block], rows[partners[block]], weights[block]
        ),
        overwrite=overwrite,
    )  # fmt: skip


def mix_plan(n_rows: int, alpha: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's partner ``(n_rows,)`` int64 (a permutation) and weight ``(n_rows,)`` float32
    ``~ Beta(alpha, alpha)``, drawn from ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    partners = rng.permutation(n_rows).astype(np.int64)
    return partners, rng.beta(alpha, alpha, n_rows).astype(np.float32)


def _mixed_batch(
    train: Dataset, ids: np.ndarray, rows: np.ndarray, partners: np.ndarray, w: np.ndarray
) -> Batch:
    """The mixed rows ``w * rows + (1 - w) * partners`` of every feature group of ``train``,
    named ``mix-<i>`` for ``i`` in ``ids``."""
    features: dict[str, np.ndarray] = {}
    frames: dict[str, Sequence[np.ndarray]] = {}
    for spec in train.layout.features:
        if spec.level == "video":
            a, b = train.features(rows, [spec.name]), train.features(partners, [spec.name])
            features[spec.name] = w[:, None] * a + (1 - w[:, None]) * b  # (B, D)
            continue
        a, len_a = train.frames(rows, [spec.name])  # (B, Ta, D)
        b, len_b = train.frames(partners, [spec.name])  # (B, Tb, D)
        n_time = max(a.shape[1], b.shape[1])
        a = np.pad(a, ((0, 0), (0, n_time - a.shape[1]), (0, 0)))
        b = np.pad(b, ((0, 0), (0, n_time - b.shape[1]), (0, 0)))
        mixed = w[:, None, None] * a + (1 - w[:, None, None]) * b  # (B, T, D)
        lengths = np.maximum(len_a, len_b)
        frames[spec.name] = [mixed[i, : lengths[i]] for i in range(rows.size)]
    return Batch(
        ids=[f"mix-{i}" for i in ids],
        labels=[np.empty(0, np.int64)] * rows.size,
        features=features,
        frames=frames,
    )
