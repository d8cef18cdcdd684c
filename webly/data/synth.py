"""Generated YouTube-8M-like benchmarks whose clean labels are known.

`synth_yt8m_like` writes one folder with three webly datasets laid out as an imported
YouTube-8M store: ``train/`` (noisy ``labels`` plus ``clean_labels``), ``test/`` (labels = truth)
and ``unlabeled/`` (no labels; ``clean_labels`` kept so pseudo-labels can be checked).

How a video is made (`YT8MLikeWorld` holds what all videos share):

- labels: a first class drawn from a Zipf prior, then about ``labels_per_video - 1`` more from
  its topic (weighted by the prior, without replacement), so classes co-occur within topics;
- time: ``T`` frames (uniform in ``[min_frames, max_frames]``; video level uses the same
  virtual frames), each label shown in one contiguous segment (short for a share of the
  classes, long for the rest), the timeline cut into scenes of distractor content;
- the timeline falls into pieces over which the content is constant; a piece's latent is its
  scene's distractor prototype plus the prototypes of the labels shown in it (a per-video
  strength each) plus per-piece noise of a per-video level ``sigma``, in each modality: rgb-only
  classes add nothing to the audio latent, audio-only ones nothing to the rgb latent;
- features are the latents through a fixed random 2-layer tanh map (`RandomFeatureMap`, one per
  modality), so the task is not linear; frames add a small per-frame noise (rows of a fixed pool
  at a random offset) in code space and are quantised as YouTube-8M over [-2, 2]. Video-level
  features are the mean over the virtual frames, so short segments are weak in the mean as they
  are in ``mean_rgb``/``mean_audio`` of frame-level data;
- train labels get instance-dependent noise (difficulty = ``sigma`` / mean strength, i.e. 1/SNR),
  spurious labels from confusable classes (nearest prototypes) and missing labels, with
  `webly.data.noise.inject`, dosed so the realized shares match the requested ones.

Generation streams in chunks of videos, shards are written in parallel, and every chunk has its
own seed, so the bytes depend on the config only, not on the number of workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from webly._fs import atomic_output
from webly.data.latent import RandomFeatureMap, class_prototypes, zipf_prior
from webly.data.noise import confusable_classes, inject, realized_rates
from webly.data.store import (
    DATASETS,
    DatasetWriter,
    Layout,
    ShardInfo,
    ShardWriter,
    dequantize_uint8,
    quantize_uint8,
)
from webly.data.yt8m import DIMS, yt8m_layout
from webly.errors import ConfigError

LATENT = 64
"""Dimension of the latent space of prototypes, distractors and noise."""
GAIN = 2.5
"""Latents (unit-norm prototypes) are scaled by this before the feature map, which puts the
map's tanh units in their nonlinear range."""
TOPIC_SIMILARITY = 0.25
"""Share of a prototype's variance that is its topic's centre: topic mates are confusable."""
SCALE = 1.5
"""Features lie in (-SCALE, SCALE): codes 32..223, leaving room for the per-frame noise."""
FRAME_NOISE = 32
"""Per-frame noise codes lie in [0, 2 * FRAME_NOISE] (a triangular law around FRAME_NOISE)."""
FRAME_STD = float(np.sqrt(2 * ((FRAME_NOISE + 1) ** 2 - 1) / 12) * 4 / 255)
"""Standard deviation of the per-frame noise in feature units (about 0.21)."""
POOL_ROWS = 16384
"""Rows of the per-frame noise pool (each video reads a window at a random offset)."""
N_DISTRACTORS = 64
"""Distractor (scene) prototypes shared by all videos: content unrelated to any class."""
SCENE_CUTS = 3.0
"""Mean number of scene cuts a video."""
VIRTUAL_FRAMES = (100, 300)
"""Frame counts of the virtual timeline of video-level data."""
SHORT_SPAN = (0.03, 0.12)
LONG_SPAN = (0.3, 1.0)
"""Share of the frames a label's segment covers, for short-segment and other classes."""
STRENGTH = (0.6, 1.4)
"""Per-video strength of each label's prototype."""
SIGMA = (0.5, 0.5)
"""Per-video latent noise level: lognormal with this median and log-standard deviation."""

SPLITS = ("train", "test", "unlabeled")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class YT8MLikeConfig:
    """What `synth_yt8m_like` generates. ``None`` fields are resolved on construction.

    Parameters
    ----------
    videos, test_videos, unlabeled_videos : rows of the train / test / unlabeled splits
        (the last two default to ``videos // 4``; they may be 0).
    classes : number of classes. labels_per_video : mean true labels a video (at most the size
        of a topic). zipf : exponent of the class frequency law ``p_c ∝ (c + 1) ** -zipf``.
    topics : classes are grouped into this many topics (default ``max(1, classes // 10)``).
    max_frames : 0 for a video-level store, else frames a video (uniform in
        ``[min_frames, max_frames]``, ``min_frames`` defaulting to ``max_frames // 3``).
    short_segments : share of the classes shown in a short segment (3-12% of the frames).
    missing, spurious : share of the true train labels that are absent from the given ones, and
        of the given train labels that are wrong (at least what the instance noise makes).
    instance : expected share of train videos with one label replaced by a confusable class,
        with probability proportional to 1/SNR of the video.
    audio_only, rgb_only : share of the classes visible in one modality only.
    seed : the one seed of everything.
    """

    videos: int = 4000
    test_videos: int | None = None
    unlabeled_videos: int | None = None
    classes: int = 200
    labels_per_video: float = 3.0
    zipf: float = 1.0
    topics: int | None = None
    max_frames: int = 0
    min_frames: int | None = None
    short_segments: float = 0.3
    missing: float = 0.3
    spurious: float = 0.1
    instance: float = 0.05
    audio_only: float = 0.2
    rgb_only: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.videos < 1:
            raise ConfigError(f"videos is {self.videos}; generate at least 1 video (--videos)")
        for name in ("test_videos", "unlabeled_videos"):
            value = getattr(self, name)
            object.__setattr__(self, name, self.videos // 4 if value is None else value)
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} is {value}; it must be >= 0")
        if self.classes < 2:
            raise ConfigError(f"classes is {self.classes}; it must be >= 2 (--classes)")
        topics = max(1, self.classes // 10) if self.topics is None else self.topics
        object.__setattr__(self, "topics", topics)
        if not 1 <= topics <= self.classes:
            raise ConfigError(f"topics is {topics}; use 1..{self.classes} (the number of classes)")
        if self.labels_per_video > self.classes:
            raise ConfigError(
                f"labels_per_video is {self.labels_per_video} but there are only {self.classes} "
                "classes; ask for fewer labels a video or more --classes"
            )
        if not 1.0 <= self.labels_per_video <= self.classes / topics:
            raise ConfigError(
                f"labels_per_video is {self.labels_per_video}; it must be in [1, "
                f"{self.classes / topics:g}] (the classes a topic) for {self.classes} classes in "
                f"{topics} topics; use fewer topics"
            )
        if self.zipf < 0:
            raise ConfigError(f"zipf exponent is {self.zipf}; it must be >= 0 (0: uniform)")
        if self.max_frames < 0:
            raise ConfigError(f"max_frames is {self.max_frames}; use 0 (video level) or >= 1")
        if self.max_frames:
            low = max(1, self.max_frames // 3) if self.min_frames is None else self.min_frames
            object.__setattr__(self, "min_frames", low)
            if not 1 <= low <= self.max_frames:
                raise ConfigError(
                    f"min_frames is {low}; it must be in [1, max_frames = {self.max_frames}]"
                )
        else:
            object.__setattr__(self, "min_frames", 0)
        for name in ("short_segments", "missing", "spurious", "instance", "audio_only", "rgb_only"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} is {value}; it must be in [0, 1), e.g. 0.2")
        if self.audio_only + self.rgb_only > 1.0:
            raise ConfigError(
                f"audio_only + rgb_only is {self.audio_only + self.rgb_only:g}; "
                "the two shares of the classes must add up to at most 1"
            )

    def split_sizes(self) -> dict[str, int]:
        """Videos of each split, ``{"train": .., "test": .., "unlabeled": ..}``."""
        sizes = (self.videos, self.test_videos, self.unlabeled_videos)
        return {split: int(n or 0) for split, n in zip(SPLITS, sizes, strict=True)}


# --------------------------------------------------------------------------- the shared world


@dataclass(frozen=True)
class YT8MLikeWorld:
    """What every video of a config shares (rebuilt from the config's seed in each process).

    Attributes
    ----------
    prior : (n_classes,) float64 Zipf probabilities of a video's first label.
    topic : (n_classes,) int64 topic of each class (the pairs ``2i, 2i + 1`` share one).
    members : per topic, the (n_members,) int64 classes in it.
    modality : (n_classes,) int8: 0 both modalities, 1 rgb only, 2 audio only.
    short : (n_classes,) bool: the class shows in a short segment of its videos.
    prototypes : (n_classes, LATENT) float32 unit latent prototypes (siblings and topic mates
        are similar). confusable : (n_classes, 3) int64 nearest classes by prototype.
    distractors : (N_DISTRACTORS, LATENT) float32 unit scene prototypes.
    maps : the rgb and audio `RandomFeatureMap`.
    """

    prior: np.ndarray
    topic: np.ndarray
    members: tuple[np.ndarray, ...]
    modality: np.ndarray
    short: np.ndarray
    prototypes: np.ndarray
    confusable: np.ndarray
    distractors: np.ndarray
    maps: dict[str, RandomFeatureMap]


def _world_seeds(config: YT8MLikeConfig) -> list[np.random.SeedSequence]:
    """Seeds of the world's parts: classes, prototypes, distractors, rgb map, audio map, pool.
    (The splits use the root's other children.)"""
    return np.random.SeedSequence(config.seed).spawn(len(SPLITS) + 1)[-1].spawn(6)


@lru_cache(maxsize=2)
def yt8m_like_world(config: YT8MLikeConfig) -> YT8MLikeWorld:
    """The class structure and feature maps of ``config`` (cached per process)."""
    rng_classes, rng_protos, rng_distract, rng_rgb, rng_audio = map(
        np.random.default_rng, _world_seeds(config)[:5]
    )
    n = config.classes
    n_topics = int(config.topics or 1)
    topic = (rng_classes.permutation((n + 1) // 2) % n_topics)[np.arange(n) // 2]
    order = rng_classes.permutation(n)
    n_rgb, n_audio = round(config.rgb_only * n), round(config.audio_only * n)
    modality = np.zeros(n, np.int8)
    modality[order[:n_rgb]] = 1
    modality[order[n_rgb : n_rgb + n_audio]] = 2
    short = np.zeros(n, bool)
    short[rng_classes.permutation(n)[: round(config.short_segments * n)]] = True

    own = class_prototypes(n, LATENT, rng_protos, pair_similarity=0.5)
    centres = class_prototypes(n_topics, LATENT, rng_protos)[topic]
    protos = np.sqrt(1 - TOPIC_SIMILARITY) * own + np.sqrt(TOPIC_SIMILARITY) * centres
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    return YT8MLikeWorld(
        prior=zipf_prior(n, config.zipf),
        topic=topic.astype(np.int64),
        members=tuple(np.flatnonzero(topic == t) for t in range(n_topics)),
        modality=modality,
        short=short,
        prototypes=protos.astype(np.float32),
        confusable=confusable_classes(protos, m=3),
        distractors=class_prototypes(N_DISTRACTORS, LATENT, rng_distract),
        maps={
            "rgb": RandomFeatureMap(LATENT, DIMS["rgb"], rng_rgb, scale=SCALE),
            "audio": RandomFeatureMap(LATENT, DIMS["audio"], rng_audio, scale=SCALE),
        },
    )


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class _Truth:
    """The clean labels of a split and what the features of its videos depend on."""

    labels: sp.csr_matrix  # (n_videos, n_classes), indices sorted within rows
    strength: np.ndarray  # (nnz,) float32, aligned with labels.indices
    sigma: np.ndarray  # (n_videos,) float32 latent noise level

    @property
    def difficulty(self) -> np.ndarray:
        """(n_videos,) 1/SNR: the noise level over the mean strength of the video's labels."""
        mean = np.add.reduceat(self.strength, self.labels.indptr[:-1]) / np.diff(self.labels.indptr)
        return self.sigma / mean


def _draw_truth(
    config: YT8MLikeConfig, world: YT8MLikeWorld, n: int, rng: np.random.Generator
) -> _Truth:
    """Clean labels of ``n`` videos: a Zipf first label, then more from its topic (successive
    sampling by prior weight, via Gumbel top-k), ``1 + Poisson(labels_per_video - 1)`` in all."""
    first = rng.choice(config.classes, size=n, p=world.prior)
    wanted = 1 + rng.poisson(config.labels_per_video - 1.0, size=n)
    rows: list[np.ndarray] = []
    row_of: list[np.ndarray] = []
    log_prior = np.log(world.prior)
    for t, members in enumerate(world.members):
        videos = np.flatnonzero(world.topic[first] == t)
        if not videos.size:
            continue
        keys = log_prior[members] + rng.gumbel(size=(videos.size, members.size))
        keys[members[None, :] == first[videos, None]] = np.inf  # the first label always
        ranked = np.argsort(-keys, axis=1, kind="stable")
        take = np.arange(members.size)[None, :] < np.minimum(wanted[videos], members.size)[:, None]
        rows.append(members[ranked][take])
        row_of.append(np.repeat(videos, take.sum(axis=1)))
    classes, row = np.concatenate(rows), np.concatenate(row_of)
    labels = sp.csr_matrix(
        (np.ones(classes.size, np.float32), (row, classes)), shape=(n, config.classes)
    )
    labels.sort_indices()
    strength = rng.uniform(*STRENGTH, size=labels.nnz).astype(np.float32)
    sigma = (SIGMA[0] * np.exp(SIGMA[1] * rng.normal(size=n))).astype(np.float32)
    return _Truth(labels, strength, sigma)


def _split_truth(
    config: YT8MLikeConfig, world: YT8MLikeWorld, split: str
) -> tuple[_Truth, np.random.SeedSequence, np.random.SeedSequence]:
    """The truth of ``split`` and the seeds of its label noise and of its chunks."""
    split_seed = np.random.SeedSequence(config.seed).spawn(len(SPLITS))[SPLITS.index(split)]
    truth_seed, noise_seed, chunk_seed = split_seed.spawn(3)
    n = config.split_sizes()[split]
    truth = _draw_truth(config, world, n, np.random.default_rng(truth_seed))
    return truth, noise_seed, chunk_seed


def yt8m_like_difficulty(config: YT8MLikeConfig, split: str = "train") -> np.ndarray:
    """``(n_videos,)`` float32 difficulty (1/SNR: the video's latent noise level over the mean
    strength of its labels) of each video of ``split``, in row order; instance noise is
    proportional to it."""
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} is unknown; use one of {', '.join(SPLITS)}")
    return _split_truth(config, yt8m_like_world(config), split)[0].difficulty


def _add_noise(
    config: YT8MLikeConfig,
    world: YT8MLikeWorld,
    truth: _Truth,
    seed: np.random.SeedSequence,
) -> tuple[sp.csr_matrix, dict[str, float]]:
    """Noisy train labels: instance noise, then spurious labels until their share of the given
    labels is ``spurious``, then true labels dropped uniformly at the rate that leaves
    ``missing`` of them absent (a uniform drop keeps the spurious share). Returns the labels and
    the share of rows the instance step changed."""
    clean = truth.labels
    seeds = iter(seed.spawn(10))
    noisy = clean
    if config.instance > 0:
        noisy = inject(
            clean,
            "instance",
            config.instance,
            next(seeds),
            confusable=world.confusable,
            difficulty=truth.difficulty,
        )
    changed = realized_rates(noisy, clean)["rows_changed"]
    for _ in range(8):  # adds that hit a dropped true label are not spurious: top them up
        agree = noisy.multiply(clean).nnz
        short = config.spurious / (1 - config.spurious) * agree - (noisy.nnz - agree)
        if short < 0.5:
            break
        rate = min(0.99, short / max(noisy.nnz, 1))
        noisy = inject(noisy, "spurious", rate, next(seeds), confusable=world.confusable)
    agree = noisy.multiply(clean).nnz
    drop = 1.0 - (1.0 - config.missing) * clean.nnz / max(agree, 1)
    if drop > 0:
        noisy = inject(noisy, "missing", drop, next(seeds))
    return noisy, {"instance": changed}


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class _ChunkTask:
    """Videos ``first .. first + n`` of a split, for a worker to turn into record batches."""

    config: YT8MLikeConfig
    split: str
    first: int
    indptr: np.ndarray  # (n + 1,) into classes / strength
    classes: np.ndarray  # (nnz,) int64 clean labels
    strength: np.ndarray  # (nnz,) float32
    sigma: np.ndarray  # (n,) float32
    given: tuple[np.ndarray, np.ndarray]  # (indptr, indices) of the stored labels
    seed: np.random.SeedSequence


@dataclass(frozen=True)
class _ShardTask:
    path: Path
    layout: Layout
    chunks: tuple[_ChunkTask, ...]


@dataclass(frozen=True)
class _Pieces:
    """The timeline of a chunk's videos cut where content changes, flattened over videos.

    ``video``/``start``/``length`` are (n_pieces,) int64, pieces of a video consecutive and in
    time order; ``frames`` is (n_videos,) int64.
    """

    video: np.ndarray
    start: np.ndarray
    length: np.ndarray
    frames: np.ndarray


def _timeline(
    task: _ChunkTask, world: YT8MLikeWorld, rng: np.random.Generator
) -> tuple[_Pieces, sp.csr_matrix, np.ndarray]:
    """Cut each video into pieces; returns them, the (n_pieces, nnz) CSR of the labels shown in
    each piece (value: the label's strength) and the (n_pieces,) scene distractor of each."""
    config, n = task.config, task.sigma.size
    low, high = (
        (int(config.min_frames or 1), config.max_frames) if config.max_frames else VIRTUAL_FRAMES
    )
    frames = rng.integers(low, high + 1, size=n)
    label_video = np.repeat(np.arange(n), np.diff(task.indptr))
    span = np.where(
        world.short[task.classes],
        rng.uniform(*SHORT_SPAN, size=task.classes.size),
        rng.uniform(*LONG_SPAN, size=task.classes.size),
    )
    length = np.clip(np.rint(span * frames[label_video]), 1, frames[label_video]).astype(np.int64)
    begin = (rng.random(length.size) * (frames[label_video] - length + 1)).astype(np.int64)
    n_cuts = rng.poisson(SCENE_CUTS, size=n)
    cut_video = np.repeat(np.arange(n), n_cuts)
    cuts = (rng.random(cut_video.size) * frames[cut_video]).astype(np.int64)
    width = int(frames.max()) + 1
    videos = np.arange(n)

    def key(video: np.ndarray, position: np.ndarray) -> np.ndarray:
        return video * width + position

    bounds = np.unique(
        np.concatenate(
            [
                key(videos, np.zeros(n, np.int64)),
                key(videos, frames),
                key(label_video, begin),
                key(label_video, begin + length),
                key(cut_video, cuts),
            ]
        )
    )
    same = bounds[1:] // width == bounds[:-1] // width
    starts = bounds[:-1][same]
    pieces = _Pieces(starts // width, starts % width, (bounds[1:] - bounds[:-1])[same], frames)

    first = np.searchsorted(starts, key(label_video, begin))
    last = np.searchsorted(starts, key(label_video, begin + length))
    count = last - first
    label = np.repeat(np.arange(task.classes.size), count)
    piece = first[label] + np.arange(label.size) - np.repeat(np.cumsum(count) - count, count)
    shown = sp.csr_matrix(
        (task.strength[label], (piece, label)), shape=(starts.size, task.classes.size)
    )
    cut_keys = np.sort(key(cut_video, cuts))
    scene_first = np.concatenate([[0], np.cumsum(n_cuts + 1)])
    scene = (
        scene_first[pieces.video]
        + np.searchsorted(cut_keys, starts, side="right")
        - np.searchsorted(cut_keys, key(pieces.video, np.zeros_like(starts)), side="right")
    )
    distractor = rng.integers(0, N_DISTRACTORS, size=scene_first[-1])[scene]
    return pieces, shown, distractor


def _piece_features(
    task: _ChunkTask,
    world: YT8MLikeWorld,
    pieces: _Pieces,
    shown: sp.csr_matrix,
    distractor: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Features of each piece per modality, ``(n_pieces, dim)`` float32 in (-SCALE, SCALE)."""
    out = {}
    background = world.distractors[distractor]  # (P, LATENT)
    sigma = task.sigma[pieces.video, None]
    for code, name in ((2, "rgb"), (1, "audio")):  # rgb hides audio-only classes and vice versa
        visible = (world.modality[task.classes] != code).astype(np.float32)
        signal = shown @ (visible[:, None] * world.prototypes[task.classes])  # (P, LATENT)
        noise = rng.normal(size=background.shape).astype(np.float32)
        latent = background + signal + noise * (sigma / np.sqrt(LATENT))
        out[name] = world.maps[name](GAIN * latent)
    return out


def _chunk_batch(task: _ChunkTask, layout: Layout) -> pa.RecordBatch:
    """Generate the chunk's videos as one record batch in ``layout``'s schema."""
    world = yt8m_like_world(task.config)
    rng = np.random.default_rng(task.seed)
    pieces, shown, distractor = _timeline(task, world, rng)
    features = _piece_features(task, world, pieces, shown, distractor, rng)
    n = task.sigma.size
    columns: dict[str, pa.Array] = {
        "id": pa.array([f"{task.split}{task.first + i:07d}" for i in range(n)], pa.string()),
        "labels": _list_array(*task.given),
        "clean_labels": _list_array(task.indptr, task.classes),
    }
    weight = sp.csr_matrix(
        (pieces.length.astype(np.float64), (pieces.video, np.arange(pieces.video.size))),
        shape=(n, pieces.video.size),
    )
    if not task.config.max_frames:
        # video level: the mean over the virtual frames, with the mean of their per-frame noise
        spread = FRAME_STD / np.sqrt(pieces.frames)[:, None]
        for name, values in features.items():
            mean = (weight @ values) / pieces.frames[:, None]  # (n, dim)
            noisy = mean + rng.normal(size=mean.shape) * spread
            columns[f"mean_{name}"] = _fixed_array(quantize_uint8(noisy))
        return pa.RecordBatch.from_pydict(columns, schema=layout.schema())
    pools = _frame_pools(task.config)
    offsets = np.concatenate([[0], np.cumsum(pieces.frames)])
    window = rng.integers(0, POOL_ROWS - pieces.frames + 1)
    for name, values in features.items():
        base = quantize_uint8(values) - np.uint8(FRAME_NOISE)  # codes 32..223 -> 0..191
        frames = np.repeat(base, pieces.length, axis=0)  # (n_frames, dim)
        pool, prefix = pools[name]
        for video, (lo, hi) in enumerate(
            zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
        ):
            frames[lo:hi] += pool[window[video] : window[video] + hi - lo]  # stays <= 255
        # each video's integer code sums, from the pieces and the pool's prefix sums: no second
        # pass over the frames; the mean is then computed exactly as the YouTube-8M import does
        sums = weight @ base.astype(np.float64) + (prefix[window + pieces.frames] - prefix[window])
        mean = dequantize_uint8(np.rint(sums).astype(np.uint32) / pieces.frames[:, None])
        columns[name] = pa.ListArray.from_arrays(
            pa.array(offsets.astype(np.int32)), _fixed_array(frames)
        )
        columns[f"mean_{name}"] = _fixed_array(mean)
    return pa.RecordBatch.from_pydict(columns, schema=layout.schema())


@lru_cache(maxsize=2)
def _frame_pools(config: YT8MLikeConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per modality the (POOL_ROWS, dim) uint8 per-frame noise codes (a triangular law on
    ``[0, 2 * FRAME_NOISE]``) and their (POOL_ROWS + 1, dim) int32 prefix sums over rows."""
    rng = np.random.default_rng(_world_seeds(config)[-1])
    out = {}
    for name, dim in DIMS.items():
        pool = rng.integers(0, FRAME_NOISE + 1, (POOL_ROWS, dim), np.uint8)
        pool += rng.integers(0, FRAME_NOISE + 1, (POOL_ROWS, dim), np.uint8)
        prefix = np.zeros((POOL_ROWS + 1, dim), np.int32)
        np.cumsum(pool, axis=0, dtype=np.int32, out=prefix[1:])
        out[name] = (pool, prefix)
    return out


def _fixed_array(values: np.ndarray) -> pa.FixedSizeListArray:
    """(n, dim) array -> Arrow fixed_size_list<dim> without copying."""
    flat = pa.array(np.ascontiguousarray(values).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def _list_array(indptr: np.ndarray, indices: np.ndarray) -> pa.ListArray:
    """CSR row pointers and column indices -> Arrow list<int32>."""
    return pa.ListArray.from_arrays(
        pa.array(np.asarray(indptr, np.int32)), pa.array(np.asarray(indices, np.int32))
    )


# --------------------------------------------------------------------------- writing

CHUNK_ROWS = {"video": 2048, "frame": 256}
"""Videos generated at a time (one record batch): about 2.4 MB video level, 60 MB frame level."""
SHARD_CHUNKS = 8
"""Chunks a shard: shards of 16,384 video-level or 2,048 frame-level videos (about 0.5 GB)."""


@dataclass(frozen=True)
class SynthSummary:
    """What `synth_yt8m_like` wrote: rows per split, frames, bytes, noise and time."""

    out: Path
    rows: dict[str, int]
    frames: int
    bytes: int
    requested: dict[str, float]
    realized: dict[str, float]
    seconds: float

    def __str__(self) -> str:
        rows = ", ".join(f"{n:,} {split}" for split, n in self.rows.items())
        frames = f", {self.frames:,} frames" if self.frames else ""
        noise = ", ".join(
            f"{kind} {self.realized[kind]:.1%} (asked {self.requested[kind]:.1%})"
            for kind in self.requested
        )
        return (
            f"generated {rows} videos{frames} ({self.bytes / 1e6:,.1f} MB) in "
            f"{self.seconds:.1f} s into {self.out}; train label noise: {noise}"
        )


def synth_yt8m_like(
    out: str | Path,
    config: YT8MLikeConfig,
    overwrite: bool = False,
    workers: int | None = None,
) -> SynthSummary:
    """Generate a YouTube-8M-like benchmark into the folder ``out``.

    ``out`` gets up to three datasets, ``train/``, ``test/`` and ``unlabeled/`` (a split of 0
    videos is left out), laid out as `webly.data.yt8m.import_yt8m` lays out YouTube-8M: at video
    level (``config.max_frames == 0``) uint8 groups ``mean_rgb`` (1024) and ``mean_audio``
    (128); at frame level uint8 frame groups ``rgb``/``audio`` plus float32 ``mean_rgb``/
    ``mean_audio``, the mean of the dequantised frames. Classes are named ``c0000``, ``c0001``,
    ...; their descriptions name topic, modality and segment length. Every manifest's
    ``source`` records the generator, the config and the requested and realized train noise
    rates.

    Shards are generated by ``workers`` processes (default: one per CPU); the bytes written
    depend on ``config`` only. The output is atomic: on error nothing is left at ``out``, and an
    existing non-empty ``out`` is replaced only with ``overwrite`` (else `DataError`).
    """
    started = time.perf_counter()
    world = yt8m_like_world(config)
    frames = bool(config.max_frames)
    layout = replace(
        yt8m_layout(
            "frame" if frames else "video", config.classes, "float32" if frames else "uint8"
        ),
        class_names=tuple(f"c{c:04d}" for c in range(config.classes)),
        class_descriptions=_descriptions(world),
        has_clean_labels=True,
    )
    requested = {
        "missing": config.missing,
        "spurious": config.spurious,
        "instance": config.instance,
    }
    truths, given, chunk_seeds = {}, {}, {}
    realized: dict[str, float] = {}
    for split in SPLITS:
        if config.split_sizes()[split] == 0:
            continue
        truth, noise_seed, chunk_seeds[split] = _split_truth(config, world, split)
        truths[split] = truth
        if split == "train":
            given[split], realized = _add_noise(config, world, truth, noise_seed)
            realized.update(realized_rates(given[split], truth.labels))
        elif split == "test":
            given[split] = truth.labels
        else:
            given[split] = sp.csr_matrix(truth.labels.shape, dtype=np.float32)
    chunk = CHUNK_ROWS["frame" if frames else "video"]
    rows: dict[str, int] = {}
    n_frames = n_bytes = 0
    with atomic_output(out, overwrite, kind=DATASETS) as tmp:
        writers, tasks = {}, []
        for split, truth in truths.items():
            source = {
                "generator": "webly.data.synth.synth_yt8m_like",
                "split": split,
                "config": asdict(config),
                "noise": {"requested": requested, "realized": realized},
            }
            writers[split] = DatasetWriter(tmp / split, layout, source=source)
            starts = range(0, truth.labels.shape[0], chunk)
            chunks = [
                _chunk_task(config, split, truth, given[split], first, first + chunk, seed)
                for first, seed in zip(starts, chunk_seeds[split].spawn(len(starts)), strict=True)
            ]
            tasks += [
                (split, _ShardTask(writers[split].shard_path(i), layout, tuple(part)))
                for i, part in enumerate(_groups(chunks, SHARD_CHUNKS))
            ]
        for (split, _), (info, shard_frames) in zip(
            tasks, _run([t for _, t in tasks], workers), strict=True
        ):
            writers[split].add_shard(info)
            rows[split] = rows.get(split, 0) + info.rows
            n_frames += shard_frames
            n_bytes += info.bytes
        for writer in writers.values():
            writer.commit()
    return SynthSummary(
        out=Path(out),
        rows=rows,
        frames=n_frames,
        bytes=n_bytes,
        requested=requested,
        realized=realized,
        seconds=time.perf_counter() - started,
    )


def _descriptions(world: YT8MLikeWorld) -> tuple[str, ...]:
    """Per class e.g. ``topic 7, rgb only, short segments``."""
    shown = ("rgb and audio", "rgb only", "audio only")
    return tuple(
        f"topic {t}, {shown[m]}, {'short' if s else 'long'} segments"
        for t, m, s in zip(
            world.topic.tolist(), world.modality.tolist(), world.short.tolist(), strict=True
        )
    )


def _chunk_task(
    config: YT8MLikeConfig,
    split: str,
    truth: _Truth,
    given: sp.csr_matrix,
    first: int,
    stop: int,
    seed: np.random.SeedSequence,
) -> _ChunkTask:
    """The work of videos ``first .. stop`` (clipped to the split) of ``split``."""
    stop = min(stop, truth.labels.shape[0])
    lo, hi = truth.labels.indptr[first], truth.labels.indptr[stop]
    part = given[first:stop]
    return _ChunkTask(
        config=config,
        split=split,
        first=first,
        indptr=truth.labels.indptr[first : stop + 1] - lo,
        classes=truth.labels.indices[lo:hi].astype(np.int64),
        strength=truth.strength[lo:hi],
        sigma=truth.sigma[first:stop],
        given=(part.indptr, part.indices),
        seed=seed,
    )


def _groups(items: list[_ChunkTask], size: int) -> Iterator[list[_ChunkTask]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _run(tasks: list[_ShardTask], workers: int | None) -> Iterator[tuple[ShardInfo, int]]:
    """Results of ``tasks`` in order; in this process for one worker, else in a process pool."""
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    if workers <= 1:
        yield from map(_write_shard, tasks)
        return
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        yield from pool.map(_write_shard, tasks)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_shard(task: _ShardTask) -> tuple[ShardInfo, int]:
    """Generate and write one shard (runs in a worker); returns it and its number of frames."""
    writer = ShardWriter(
        task.path, task.layout, source=f"synth {task.chunks[0].split}", batch_bytes=0
    )
    n_frames = 0
    try:
        for chunk in task.chunks:
            record = _chunk_batch(chunk, task.layout)
            if chunk.config.max_frames:
                n_frames += len(record.column("rgb").values)
            writer.write_record_batch(record)
        return writer.close(), n_frames
    except BaseException:
        writer.abort()
        raise
