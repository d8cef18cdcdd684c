"""Frame-subset views of the training videos: more inputs for a student to copy its teacher on,
without new labels.

A video seen through a random subset of its frames is another input its teacher can label
(what the YouTube-8M 2018 winners distilled their frame-level students on). Row ``i`` of the
views store keeps about ``keep`` of the frames of training row ``rows[i]`` (`view_plan`: at
least one, in time order), the same positions in every frame-level group. A video-level group
``mean_<g>`` of a frame group ``<g>`` (YouTube-8M's ``mean_rgb`` of ``rgb``) becomes the mean of
the kept frames; the other video-level groups are copied. As with mixed rows
(`webly.distill.mixed`), the target of a view is the teacher's prediction of the view itself
(`webly.distill.run`), learned through the trainer's unlabeled-rows term
(`webly.distill.unlabeled.teach_unlabeled`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from webly.data.store import Batch, Dataset, FeatureSpec, Layout
from webly.distill._derived import derived_store
from webly.errors import ConfigError


def frame_views(
    train: Dataset,
    out: str | Path,
    keep: float,
    seed: int,
    *,
    rows: np.ndarray | None = None,
    overwrite: bool = False,
) -> Dataset:
    """Write one view per row of ``rows`` of ``train``, a random subset of its frames, to a new
    store ``out`` (no labels).

    Parameters
    ----------
    train : the training store (only read); it needs a frame-level group (`check_frames`)
    out : the views store; reused as it is when it holds the views of this ``train``, ``rows``,
        ``keep`` and ``seed``, otherwise written (replacing a store there only with
        ``overwrite``)
    keep : in (0, 1), the share of each video's frames kept (`view_plan`)
    seed : draws the frames kept
    rows : ``(n,)`` positions in ``train`` of the rows to view (the rows a model trains on: a
        row it validates on must not leak into its views); None: every row

    Returns
    -------
    Dataset
        ``n`` rows, ``view-<i>`` of ``rows[i]``: its ``T_i`` frames reduced to the ``m_i``
        picked by `view_plan` (``(m_i, dim)`` in every frame group, stored values copied), each
        ``mean_<g>`` group of a frame group ``<g>`` (same ``dim``) the ``(dim,)`` mean of the
        kept frames of ``<g>`` (decoded, then written in the group's dtype; kept as it is for a
        row without frames), the other video-level groups copied; the feature groups of
        ``train``, no labels; its manifest's ``source`` records ``keep``, ``seed``, the
        training store's hash and a SHA-256 of ``rows``.
    """
    if not 0 < keep < 1:
        raise ConfigError(f"frame views keep {keep:g} of the frames; use a share in (0, 1): 0.5")
    check_frames(train)
    rows = np.arange(len(train)) if rows is None else np.asarray(rows, dtype=np.int64)
    picks, counts = view_plan(train.n_frames()[rows], keep, seed)
    starts = np.concatenate([[0], np.cumsum(counts)])
    return derived_store(
        train, Path(out), rows, {"generator": "frame-views", "keep": keep, "seed": seed},
        lambda block: _views_batch(
            train, block, rows[block],
            [picks[starts[i] : starts[i + 1]] for i in block.tolist()],
        ),
        overwrite=overwrite,
    )  # fmt: skip


def check_frames(train: Dataset) -> None:
    """Refuse (`ConfigError`) a store without a frame-level group: it has no frames to view."""
    if not any(spec.level == "frame" for spec in train.layout.features):
        have = ", ".join(spec.name for spec in train.layout.features)
        raise ConfigError(
            f"distill.frame_views: {train.path} has only video-level features ({have}), no "
            "frames to subset; remove distill.frame_views or use frame-level data"
        )


def view_plan(lengths: np.ndarray, keep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The frames each view keeps, drawn from ``seed``: of a video's ``T`` frames (``lengths``,
    ``(n,)``), ``m = min(T, max(1, floor(keep * T + 0.5)))`` drawn without replacement.

    Returns ``(picks, counts)``: ``counts`` ``(n,)`` int64 the ``m`` of each row, ``picks``
    ``(sum(counts),)`` int64 the kept frames' positions within their video, row after row, each
    row's in time order.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.minimum(lengths, np.maximum(1, np.floor(keep * lengths + 0.5).astype(np.int64)))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    owner = np.repeat(np.arange(lengths.size), lengths)  # (n_frames,) the row of each frame
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    shuffled = np.lexsort((rng.random(owner.size), owner))  # each row's frames, randomly ordered
    rank = np.arange(owner.size) - starts[owner[shuffled]]
    kept = np.sort(shuffled[rank < counts[owner[shuffled]]])  # row after row, in time order
    return kept - starts[owner[kept]], counts


def _mean_groups(layout: Layout) -> list[tuple[FeatureSpec, str]]:
    """Each frame group with its video-level mean group ``mean_<name>`` (of the same dim)."""
    video = {spec.name: spec for spec in layout.features if spec.level == "video"}
    return [
        (spec, f"mean_{spec.name}")
        for spec in layout.features
        if spec.level == "frame"
        and (mean := video.get(f"mean_{spec.name}")) is not None
        and mean.dim == spec.dim
    ]


def _views_batch(
    train: Dataset, ids: np.ndarray, rows: np.ndarray, picks: list[np.ndarray]
) -> Batch:
    """The views of ``rows`` keeping the frames ``picks`` (one ``(m_i,)`` array a row), named
    ``view-<i>`` for ``i`` in ``ids``."""
    features: dict[str, np.ndarray] = {}
    frames: dict[str, list[np.ndarray]] = {}
    for spec in train.layout.features:
        if spec.level == "video":
            features[spec.name] = train.features(rows, [spec.name])  # (B, D), copied
            continue
        stored, _ = train.frames(rows, [spec.name], decode=False)  # (B, T, D) stored values
        frames[spec.name] = [stored[i, pick] for i, pick in enumerate(picks)]  # (m_i, D) each
    for spec, mean in _mean_groups(train.layout):
        for i, kept in enumerate(frames[spec.name]):
            if kept.size:  # a row without frames keeps its mean
                features[mean][i] = spec.decode(kept).mean(axis=0)
    return Batch(
        ids=[f"view-{i}" for i in ids],
        labels=[np.empty(0, np.int64)] * rows.size,
        features=features,
        frames=frames,
    )
