"""Generated YouTube-8M-like data whose clean labels are known.

Video level only for now: long-tailed classes grouped into topics (several labels a video that
co-occur within a topic), features made from per-class latent prototypes through a fixed random
nonlinear map (some classes visible mainly in ``audio``, others mainly in ``rgb``), and the two
label errors of machine-generated tags: missing labels and spurious labels from confusable
classes (nearest prototypes), so the noise is class-conditional, not uniform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LATENT = 64


@dataclass(frozen=True)
class SynthVideos:
    """Generated videos. ``labels``/``clean_labels`` are lists of int64 arrays (one per video);
    ``rgb`` is ``(n_videos, 1024)`` and ``audio`` ``(n_videos, 128)`` float32 in [-2, 2]."""

    ids: list[str]
    labels: list[np.ndarray]
    clean_labels: list[np.ndarray]
    rgb: np.ndarray
    audio: np.ndarray


def yt8m_like_videos(
    n_videos: int,
    n_classes: int,
    seed: int = 0,
    *,
    missing: float = 0.3,
    spurious: float = 0.1,
    labels_per_video: float = 3.0,
    zipf: float = 1.0,
    noise: float = 2.5,
) -> SynthVideos:
    """Generate ``n_videos`` video-level rows over ``n_classes`` classes.

    ``missing`` is the fraction of true labels dropped, ``spurious`` the chance a video gains a
    label of a class confusable with one of its own. ``zipf`` is the exponent of the class
    frequency law (class ``c`` is drawn with weight ``(c + 1) ** -zipf``); ``noise`` the
    standard deviation of the latent noise (signal strength per label is about 1).
    """
    world, draws = np.random.SeedSequence(seed).spawn(2)
    rng_world, rng = np.random.default_rng(world), np.random.default_rng(draws)

    prior = (np.arange(n_classes) + 1.0) ** -zipf
    n_topics = max(2, n_classes // 12)
    topic_of = rng_world.integers(0, n_topics, size=n_classes)
    prototypes = rng_world.normal(size=(n_classes, LATENT)).astype(np.float32)
    modality = rng_world.choice(3, size=n_classes, p=[0.6, 0.2, 0.2])  # both / rgb / audio
    maps = {
        name: (rng_world.normal(size=(LATENT, dim)) / np.sqrt(LATENT)).astype(np.float32)
        for name, dim in (("rgb", 1024), ("audio", 128))
    }
    similarity = prototypes @ prototypes.T
    np.fill_diagonal(similarity, -np.inf)
    confusable = similarity.argmax(axis=1)

    clean: list[np.ndarray] = []
    for _ in range(n_videos):
        first = rng.choice(n_classes, p=prior / prior.sum())
        others = np.flatnonzero((topic_of == topic_of[first]) & (np.arange(n_classes) != first))
        n_extra = min(int(rng.poisson(labels_per_video - 1)), others.size)
        weights = prior[others] / prior[others].sum() if others.size else None
        extra = rng.choice(others, size=n_extra, replace=False, p=weights)
        clean.append(np.sort(np.concatenate([[first], extra])).astype(np.int64))

    latent = {"rgb": np.zeros((n_videos, LATENT), np.float32)}
    latent["audio"] = np.zeros_like(latent["rgb"])
    for row, classes in enumerate(clean):
        strength = rng.uniform(0.5, 1.5, size=(classes.size, 1)).astype(np.float32)
        signal = strength * prototypes[classes]
        latent["rgb"][row] = signal[modality[classes] != 2].sum(axis=0)
        latent["audio"][row] = signal[modality[classes] != 1].sum(axis=0)
    features = {}
    for name, weights in maps.items():
        noisy = latent[name] + rng.normal(scale=noise, size=latent[name].shape).astype(np.float32)
        features[name] = np.clip(1.5 * np.tanh(noisy @ weights), -2.0, 2.0).astype(np.float32)

    noisy_labels = []
    for classes in clean:
        kept = classes[rng.random(classes.size) >= missing]
        if rng.random() < spurious:
            kept = np.union1d(kept, confusable[rng.choice(classes)])
        noisy_labels.append(kept.astype(np.int64))
    return SynthVideos(
        ids=[f"synth{i:07d}" for i in range(n_videos)],
        labels=noisy_labels,
        clean_labels=clean,
        rgb=features["rgb"],
        audio=features["audio"],
    )
