from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from webly.baselines import class_prior_scores
from webly.data import Dataset
from webly.data.synth import (
    YT8MLikeConfig,
    synth_yt8m_like,
    yt8m_like_difficulty,
    yt8m_like_world,
)
from webly.errors import ConfigError, DataError
from webly.metrics import gap_at_k


@pytest.fixture(scope="module")
def video_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "video"
    synth_yt8m_like(out, YT8MLikeConfig(videos=3000, classes=100), workers=1)
    return out


@pytest.fixture(scope="module")
def frame_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "frame"
    config = YT8MLikeConfig(videos=300, classes=40, max_frames=40, seed=3)
    synth_yt8m_like(out, config, workers=2)
    return out


@pytest.mark.slow
def test_splits_layout_and_manifest(video_store: Path) -> None:
    train, test, unlabeled = (Dataset.open(video_store / s) for s in ("train", "test", "unlabeled"))
    assert (len(train), len(test), len(unlabeled)) == (3000, 750, 750)
    assert [(f.name, f.dim, f.dtype) for f in train.layout.features] == [
        ("mean_rgb", 1024, "uint8"),
        ("mean_audio", 128, "uint8"),
    ]
    assert train.class_names[42] == "c0042"
    assert (test.labels != test.clean_labels).nnz == 0
    assert unlabeled.labels.nnz == 0 and unlabeled.clean_labels is not None
    assert unlabeled.clean_labels.nnz > 0
    source = train.manifest["source"]
    assert source["config"]["videos"] == 3000 and source["config"]["test_videos"] == 750
    assert source["noise"]["requested"]["missing"] == 0.3
    assert test.manifest["source"]["noise"] == source["noise"]


def test_long_tail_and_labels_per_video(video_store: Path) -> None:
    clean = Dataset.open(video_store / "train").clean_labels
    assert clean is not None
    per_video = np.diff(clean.indptr)
    assert 2.6 < per_video.mean() < 3.2 and per_video.min() >= 1
    counts = np.sort(np.bincount(clean.indices, minlength=100))[::-1]
    assert counts[0] > 20 * counts[-1] and counts[-1] <= 15  # head vs a handful
    # co-occurring labels share a topic far more often than chance
    world = yt8m_like_world(YT8MLikeConfig(videos=3000, classes=100))
    row = clean[np.flatnonzero(per_video >= 2)[0]].indices
    assert np.unique(world.topic[row]).size == 1


def test_realized_noise_rates_within_one_point(video_store: Path) -> None:
    realized = Dataset.open(video_store / "train").manifest["source"]["noise"]["realized"]
    assert abs(realized["missing"] - 0.3) < 0.01
    assert abs(realized["spurious"] - 0.1) < 0.01
    assert abs(realized["instance"] - 0.05) < 0.01


@pytest.mark.slow
def test_instance_noise_hits_low_snr_videos(tmp_path: Path) -> None:
    config = YT8MLikeConfig(videos=3000, classes=60, missing=0, spurious=0, instance=0.2)
    synth_yt8m_like(tmp_path / "out", config, workers=1)
    train = Dataset.open(tmp_path / "out/train")
    assert train.clean_labels is not None
    changed = (train.labels != train.clean_labels).getnnz(axis=1) > 0
    difficulty = yt8m_like_difficulty(config)
    hard = difficulty > np.median(difficulty)
    assert changed[hard].mean() > 2 * changed[~hard].mean()


def ridge_scores(
    x: np.ndarray, labels: sp.csr_matrix, x_test: np.ndarray, l2: float = 30.0
) -> np.ndarray:
    """A closed-form linear probe (ridge regression on standardised features): fast and exact."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    weight = np.linalg.solve(z.T @ z + l2 * np.eye(z.shape[1]), z.T @ labels.toarray())
    return ((x_test - mean) / std) @ weight


def test_modalities_carry_their_classes(video_store: Path) -> None:
    train, test = Dataset.open(video_store / "train"), Dataset.open(video_store / "test")
    world = yt8m_like_world(YT8MLikeConfig(videos=3000, classes=100))
    truth = test.clean_labels
    assert truth is not None and train.clean_labels is not None
    gaps = {}
    for group in ("rgb", "audio"):
        rows, test_rows = np.arange(len(train)), np.arange(len(test))
        video_group = (f"mean_{group}",)  # the video-level group of the modality
        x, x_test = train.features(rows, video_group), test.features(test_rows, video_group)
        scores = ridge_scores(x, train.clean_labels, x_test)
        for code, kind in ((1, "rgb_only"), (2, "audio_only")):
            cls = np.flatnonzero(world.modality == code)
            gaps[group, kind] = gap_at_k(scores[:, cls], truth[:, cls])
    assert gaps["rgb", "rgb_only"] > gaps["audio", "rgb_only"] + 0.3
    assert gaps["audio", "audio_only"] > gaps["rgb", "audio_only"] + 0.3


def test_learnable_beyond_the_prior(video_store: Path) -> None:
    train, test = Dataset.open(video_store / "train"), Dataset.open(video_store / "test")
    rows = np.arange(1500)
    x, x_test = train.features(rows), test.features(np.arange(len(test)))
    scores = ridge_scores(x, train.labels[rows], x_test)
    prior = class_prior_scores(train.labels[rows], len(test))
    assert gap_at_k(scores, test.clean_labels) > gap_at_k(prior, test.clean_labels) + 0.3


@pytest.mark.slow
def test_frame_means_and_short_segments(frame_store: Path) -> None:
    train = Dataset.open(frame_store / "train")
    assert [(f.name, f.level) for f in train.layout.features] == [
        ("rgb", "frame"),
        ("audio", "frame"),
        ("mean_rgb", "video"),
        ("mean_audio", "video"),
    ]
    lengths = train.n_frames()
    assert lengths.min() >= 13 and lengths.max() <= 40
    rows = np.arange(50)
    frames, n = train.frames(rows)
    for i in rows:
        mean = train.features([i], ("mean_rgb", "mean_audio"))[0]
        np.testing.assert_allclose(frames[i, : n[i]].mean(axis=0), mean, atol=1e-5)
    # a short-segment label changes a few consecutive frames only: the rgb frames of a video
    # change abruptly at piece boundaries and stay constant (up to per-frame noise) in between
    world = yt8m_like_world(YT8MLikeConfig(videos=300, classes=40, max_frames=40, seed=3))
    clean = train.clean_labels
    assert clean is not None
    x, n_all = train.frames(np.arange(len(train)), ("rgb",))
    jumps = np.linalg.norm(np.diff(x, axis=1), axis=2)  # (N, T - 1)
    valid = np.arange(x.shape[1] - 1)[None, :] < n_all[:, None] - 1
    noise_level = np.median(jumps[valid])
    big = (jumps > 2 * noise_level) & valid
    assert 0 < big.sum(axis=1).mean() < 12  # a few cuts a video, not every frame
    has_short = np.asarray(clean[:, np.flatnonzero(world.short)].sum(axis=1)).ravel() > 0
    assert big[has_short].sum(axis=1).mean() > big[~has_short].sum(axis=1).mean()


@pytest.mark.slow
def test_same_seed_same_bytes_any_workers(tmp_path: Path) -> None:
    config = YT8MLikeConfig(videos=600, classes=30, max_frames=12)

    def crcs(out: Path, workers: int) -> list[str]:
        synth_yt8m_like(out, config, workers=workers)
        return [
            shard["crc32c"]
            for split in ("train", "test", "unlabeled")
            for shard in Dataset.open(out / split).manifest["shards"]
        ]

    one, two = crcs(tmp_path / "a", 1), crcs(tmp_path / "b", 2)
    assert one == two
    other = YT8MLikeConfig(videos=600, classes=30, max_frames=12, seed=1)
    synth_yt8m_like(tmp_path / "c", other, workers=2)
    shards = Dataset.open(tmp_path / "c/train").manifest["shards"]
    assert shards[0]["crc32c"] != one[0]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"labels_per_video": 50.0, "classes": 20}, "labels_per_video is 50.0"),
        ({"missing": 1.0}, "missing is 1.0; it must be in [0, 1)"),
        ({"spurious": -0.1}, "spurious is -0.1"),
        ({"instance": 1.5}, "instance is 1.5"),
        ({"videos": 0}, "videos is 0"),
        ({"max_frames": 10, "min_frames": 20}, "min_frames is 20"),
        ({"audio_only": 0.6, "rgb_only": 0.6}, "audio_only + rgb_only"),
    ],
)
def test_bad_configs_say_what_to_fix(tmp_path: Path, kwargs: dict[str, float], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        synth_yt8m_like(tmp_path / "out", YT8MLikeConfig(**kwargs))  # type: ignore[arg-type]
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    config = YT8MLikeConfig(videos=40, classes=10)
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        synth_yt8m_like(out, config)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="is not a folder of webly datasets"):
        synth_yt8m_like(out, config, overwrite=True)  # not webly's: never deleted
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    out = tmp_path / "bench"
    synth_yt8m_like(out, YT8MLikeConfig(videos=20, classes=10))
    summary = synth_yt8m_like(out, config, overwrite=True)  # webly's own: replaced
    assert summary.rows == {"train": 40, "test": 10, "unlabeled": 10}
    assert len(Dataset.open(out / "train")) == 40
