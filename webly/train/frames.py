"""Which frames of each video a frame-level model sees.

``random``: as many frames as the video has, at most ``max_frames``, drawn with replacement, in
time order (the YouTube-8M starter code's training sampler, which gives every row exactly
``max_frames``, drew 300 frames of a 20-frame video: 15 times the compute for the same
frames). ``regular``: at most
``max_frames`` frames at regular intervals. ``cosine``: a frame is kept only if its cosine
distance to the last kept frame exceeds ``threshold`` (the first frame is always kept), which
drops runs of near-identical frames; more than ``max_frames`` survivors are thinned at regular
intervals. ``all``: every frame (inference).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from webly.data.store import Dataset
from webly.errors import ConfigError

FrameSampling = Literal["random", "regular", "cosine", "all"]
FRAME_SAMPLINGS = ("random", "regular", "cosine", "all")


def cosine_keep(frames: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the frames to keep by the cosine-distance rule.

    Parameters
    ----------
    frames : (T, D) float
    threshold : float in [0, 2]
        A frame is kept when ``1 - cos(frame, last kept frame)`` is above it.

    Returns
    -------
    (T_kept,) int64, increasing; empty for ``T = 0``
    """
    norms = np.linalg.norm(frames, axis=1)
    unit = frames / np.where(norms > 0, norms, 1.0)[:, None]  # (T, D)
    kept: list[int] = []
    for t in range(frames.shape[0]):
        if not kept or 1.0 - float(unit[t] @ unit[kept[-1]]) > threshold:
            kept.append(t)
    return np.asarray(kept, dtype=np.int64)


def regular_indices(n: int, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` indices of ``0..n-1`` at regular intervals, ``(k,)`` int64."""
    if n <= max_frames:
        return np.arange(n, dtype=np.int64)
    return np.linspace(0, n - 1, max_frames).round().astype(np.int64)


def gather_frames(
    ds: Dataset,
    rows: np.ndarray,
    groups: Sequence[str],
    sampling: FrameSampling,
    max_frames: int,
    rng: np.random.Generator,
    threshold: float = 0.1,
    decode: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames of ``rows`` chosen by ``sampling``, zero-padded.

    Parameters
    ----------
    ds, rows, groups : the store, (B,) row positions in it, frame-level feature groups
    sampling : one of ``random``, ``regular``, ``cosine``, ``all`` (``max_frames`` ignored)
    max_frames : the most frames per row
    rng : draws the ``random`` frames
    threshold : cosine-distance threshold of ``cosine``
    decode : False to return the stored values where the sampling allows it (not ``cosine``,
        which compares decoded frames), see `Dataset.frames`

    Returns
    -------
    x : (B, T, D) float32 (or the stored dtype), T the longest kept sequence
    lengths : (B,) int64 frames kept per row
    """
    if sampling not in FRAME_SAMPLINGS:
        raise ConfigError(
            f"frame sampling {sampling!r} is unknown; use one of {', '.join(FRAME_SAMPLINGS)}"
        )
    if max_frames < 1:
        raise ConfigError(f"max_frames is {max_frames}; it must be >= 1")
    if sampling == "all":
        return ds.frames(rows, groups, decode=decode)
    if sampling == "regular":
        return ds.frames(rows, groups, max_frames=max_frames, sampling="uniform", decode=decode)
    if sampling == "random":
        return ds.frames(
            rows, groups, max_frames=max_frames, sampling="replace", rng=rng, decode=decode
        )
    full, full_lengths = ds.frames(rows, groups)  # (B, T_all, D), (B,)
    picks = []
    for b, n in enumerate(full_lengths.tolist()):
        kept = cosine_keep(full[b, :n], threshold)
        picks.append(kept[regular_indices(kept.size, max_frames)])
    lengths = np.array([p.size for p in picks], dtype=np.int64)
    x = np.zeros((len(picks), int(lengths.max(initial=0)), full.shape[2]), dtype=np.float32)
    for b, pick in enumerate(picks):
        x[b, : pick.size] = full[b, pick]
    return x, lengths
