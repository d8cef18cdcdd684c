"""Test-time augmentation: score each row under several views of its features and combine them.

View 0 is the row as `webly.train.loop.iter_scores` sees it (all frames, features untouched);
views 1..V-1 are perturbed copies, and the probabilities of the V views are combined by their
mean or their maximum, per class.

- Frame-level models: each view keeps ``max_frames`` frames of every row, in time order:
  ``random`` draws them with replacement (the trainer's ``random`` frame sampling), ``regular``
  takes them at regular intervals ``n / max_frames`` apart, starting at offset
  ``(v - 1) / (V - 1)`` of an interval for view v (rows shorter than ``max_frames`` repeat frames
  evenly).
- Video-level models: each view drops each feature with probability ``dropout`` (the kept ones
  scaled by ``1 / (1 - dropout)``, as inverted dropout keeps the expected input) and/or adds
  Gaussian noise of standard deviation ``noise`` (feature units).
- Stored views (``stored_views``): views computed when the data was imported and kept as
  groups of their own, e.g. the image route's flips and corner crops (`webly.data.images`
  ``views``: groups ``image_flip``, ``image_top_left``, ...; the store holds an image model's
  features, not pixels, so they cannot be drawn here). View s reads every group ``g`` the model
  reads from ``g_s`` where the store has it; the views are view 0 and those.

Views are drawn from ``seed`` (one child seed per batch of ``batch_size`` rows), so a call is
deterministic given ``(seed, batch_size)``; the probabilities of view 0 are exactly those of
`iter_scores`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from webly.core import TopK
from webly.data.images import view_group
from webly.data.store import Dataset
from webly.errors import ConfigError
from webly.train.loop import eval_batches, predict_probs

Mode = Literal["mean", "max"]
ViewSampling = Literal["random", "regular"]


def tta_scores(
    model: nn.Module,
    ds: Dataset,
    groups: tuple[str, ...] | list[str],
    views: int | None = None,
    mode: Mode = "mean",
    seed: int = 0,
    batch_size: int = 1024,
    *,
    frame_sampling: ViewSampling = "random",
    max_frames: int = 300,
    dropout: float = 0.1,
    noise: float = 0.0,
    stored_views: Sequence[str] = (),
    device: torch.device | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Probabilities of ``model`` over ``ds`` combined over ``views`` augmented views.

    Parameters
    ----------
    model : a `webly.models.Network` (video- or frame-level), trained
    ds, groups : the store and the feature groups the model reads
    views : views per row, >= 1 (1: exactly `iter_scores`); None: 4 drawn views, or view 0
        and the ``stored_views``
    mode : ``"mean"`` or ``"max"`` over the views, per class
    seed : draws the views
    batch_size : rows per forward pass
    frame_sampling, max_frames : the frame views of a frame-level model (module docstring)
    dropout, noise : the feature views of a video-level model; one of them must be > 0 when
        ``views > 1``
    stored_views : views read from the store instead of drawn (module docstring), e.g.
        ``("flip",)`` reads ``image_flip`` for ``image``
    device : where to run; the model's device if None

    Yields
    ------
    rows : (B,) int64 row positions, in order
    scores : (B, n_classes) float32 combined probabilities
    """
    if stored_views:
        yield from _stored_view_scores(model, ds, groups, views, mode, stored_views, batch_size,
                                       device)  # fmt: skip
        return
    views = 4 if views is None else views
    _check(model, views, mode, frame_sampling, max_frames, dropout, noise)
    frame_level = getattr(model, "level", "video") == "frame"
    n_batches = -(-len(ds) // batch_size)
    batch_seeds = iter(np.random.SeedSequence(seed).spawn(n_batches))
    for rows, x, lengths in eval_batches(model, ds, groups, batch_size, device):
        rng = np.random.default_rng(next(batch_seeds))
        combined = predict_probs(model, x, lengths, ds.task)  # (B, C)
        for view in range(1, views):
            if frame_level:
                assert lengths is not None
                vx, vlengths = frame_view(x, lengths, view, views, frame_sampling, max_frames, rng)
                probs = predict_probs(model, vx, vlengths, ds.task)
            else:
                probs = predict_probs(model, _feature_view(x, dropout, noise, rng), None, ds.task)
            if mode == "mean":
                combined += probs
            else:
                np.maximum(combined, probs, out=combined)
        if mode == "mean":
            combined /= views
        yield rows, combined


def _stored_view_scores(
    model: nn.Module,
    ds: Dataset,
    groups: tuple[str, ...] | list[str],
    views: int | None,
    mode: Mode,
    stored_views: Sequence[str],
    batch_size: int,
    device: torch.device | None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`tta_scores` over view 0 and the views kept in the store: one `eval_batches` stream a
    view, read in step."""
    _check_model_and_mode(model, mode)
    if views is not None and views != 1 + len(stored_views):
        raise ConfigError(
            f"views is {views} but {len(stored_views)} stored views make {1 + len(stored_views)}"
            " (view 0 and each stored one); leave views out"
        )
    stored = {f.name for f in ds.layout.features}
    streams = [eval_batches(model, ds, groups, batch_size, device)]
    for view in stored_views:
        replaced = [view_group(view, g) if view_group(view, g) in stored else g for g in groups]
        if replaced == list(groups):
            wanted = ", ".join(view_group(view, g) for g in groups)
            raise ConfigError(
                f"stored view {view!r}: the store has no group {wanted}; import the data with "
                "that view (webly data import-images --views) or leave it out"
            )
        streams.append(eval_batches(model, ds, replaced, batch_size, device))
    for batches in zip(*streams, strict=True):
        rows = batches[0][0]
        probs = [predict_probs(model, x, lengths, ds.task) for _, x, lengths in batches]
        combined = np.mean(probs, axis=0) if mode == "mean" else np.max(probs, axis=0)
        yield rows, combined.astype(np.float32, copy=False)


def scores_topk(batches: Iterable[tuple[np.ndarray, np.ndarray]], k: int) -> TopK:
    """Each row's ``k`` best classes from ``(rows, (B, n_classes) scores)`` batches in row order
    (`tta_scores`, `iter_scores`), keeping only the top k of each batch: ``(n_samples, k)``."""
    parts = [TopK.from_dense(scores, k) for _, scores in batches]
    if not parts:
        return TopK(np.zeros((0, k), np.int32), np.zeros((0, k), np.float32))
    return TopK(
        np.concatenate([p.indices for p in parts]), np.concatenate([p.scores for p in parts])
    )


# --------------------------------------------------------------------------- views


def frame_view(
    x: torch.Tensor,
    lengths: torch.Tensor,
    view: int,
    views: int,
    sampling: ViewSampling,
    max_frames: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``max_frames`` frames of each row of ``(B, T, D)`` frames (rows without frames keep
    none): returns ``(B, max_frames, D)`` frames and ``(B,)`` lengths."""
    n = lengths.cpu().numpy()  # (B,)
    if x.shape[1] == 0:
        return x, lengths
    if sampling == "random":
        where = np.sort(rng.random((n.size, max_frames)), axis=1)  # (B, F) in [0, 1)
    else:
        offset = (view - 1) / max(views - 1, 1)
        where = np.broadcast_to((np.arange(max_frames) + offset) / max_frames, (n.size, max_frames))
    picks = np.minimum((where * n[:, None]).astype(np.int64), np.maximum(n[:, None] - 1, 0))
    index = torch.from_numpy(picks).to(x.device)
    frames = x[torch.arange(n.size, device=x.device)[:, None], index]  # (B, F, D)
    kept = torch.from_numpy(np.where(n > 0, max_frames, 0)).to(lengths.device)
    return frames, kept


def _feature_view(
    x: torch.Tensor, dropout: float, noise: float, rng: np.random.Generator
) -> torch.Tensor:
    """``(B, D)`` features with inverted dropout and Gaussian noise drawn from ``rng``."""
    out = x
    if dropout > 0:
        keep = rng.random(tuple(x.shape)) >= dropout
        out = out * torch.from_numpy(keep / (1.0 - dropout)).to(x.device, x.dtype)
    if noise > 0:
        out = out + torch.from_numpy(noise * rng.standard_normal(tuple(x.shape))).to(
            x.device, x.dtype
        )
    return out


def _check(
    model: nn.Module,
    views: int,
    mode: str,
    sampling: str,
    max_frames: int,
    dropout: float,
    noise: float,
) -> None:
    _check_model_and_mode(model, mode)
    if views < 1:
        raise ConfigError(f"views is {views}; use 1 (no augmentation) or more")
    if sampling not in ("random", "regular"):
        raise ConfigError(f"TTA frame_sampling {sampling!r} is unknown; use random or regular")
    if max_frames < 1:
        raise ConfigError(f"max_frames is {max_frames}; it must be >= 1")
    if not (0.0 <= dropout < 1.0 and noise >= 0.0):
        raise ConfigError(
            f"TTA dropout {dropout}, noise {noise}: dropout must be in [0, 1), noise >= 0"
        )
    if views > 1 and getattr(model, "level", "video") != "frame" and dropout == noise == 0:
        raise ConfigError(
            f"{views} views of a video-level model with dropout 0 and noise 0 would be identical; "
            "set dropout (e.g. 0.1) or noise > 0"
        )


def _check_model_and_mode(model: nn.Module, mode: str) -> None:
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"test-time augmentation needs a network, got {type(model).__name__}; GBDT members "
            "have no views to draw"
        )
    if mode not in ("mean", "max"):
        raise ConfigError(f"TTA mode {mode!r} is unknown; use mean or max")
