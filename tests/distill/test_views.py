"""Frame-subset views: each video reduced to a random share of its frames, in time order, the
same ones in every frame group, its mean groups averaged over them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import random_batch
from webly.data import Dataset, DatasetWriter, FeatureSpec, Layout
from webly.data.store import dequantize_uint8
from webly.distill.views import frame_views, view_plan
from webly.errors import ConfigError

LAYOUT = Layout(
    features=(
        FeatureSpec("mean_rgb", 3, "float32"),
        FeatureSpec("rgb", 3, "uint8", level="frame"),
        FeatureSpec("audio", 2, "uint8", level="frame"),
        FeatureSpec("mean_audio", 2, "float16"),
        FeatureSpec("other", 4, "float32"),
    ),
    n_classes=5,
)


@pytest.fixture
def store(tmp_path: Path) -> Dataset:
    """40 videos of 1..9 frames (row 5: none), rgb code 0 of frame t is t: its position."""
    batch = random_batch(np.random.default_rng(0), LAYOUT, 40, max_frames=9)
    frames = {name: list(rows) for name, rows in batch.frames.items()}
    for rows in frames.values():
        rows[5] = rows[5][:0]
    for video in frames["rgb"]:
        video[:, 0] = np.arange(len(video))
    batch.frames = frames
    writer = DatasetWriter(tmp_path / "train", LAYOUT)
    writer.write_batch(batch)
    return writer.commit()


def test_each_view_keeps_a_share_of_its_frames_in_order_and_averages_them(
    store: Dataset, tmp_path: Path
) -> None:
    rows = np.array([5, *range(39, 9, -1)])  # out of order, row 5 without frames
    views = frame_views(store, tmp_path / "views", keep=0.4, seed=3, rows=rows)
    assert len(views) == rows.size and views.labels.nnz == 0
    assert list(views.ids[:2]) == ["view-0", "view-1"] and views.layout.features == LAYOUT.features
    lengths = store.n_frames()[rows]
    expected = np.minimum(lengths, np.maximum(1, np.floor(0.4 * lengths + 0.5)))
    np.testing.assert_array_equal(views.n_frames(), expected)
    assert views.n_frames()[0] == 0 and (views.n_frames()[1:] >= 1).all()
    np.testing.assert_array_equal(views.features(np.arange(rows.size), ["other"]),
                                  store.features(rows, ["other"]))  # fmt: skip
    for i, row in enumerate(rows.tolist()):
        (rgb,), _ = views.frames([i], ["rgb"], decode=False)
        (audio,), _ = views.frames([i], ["audio"], decode=False)
        (all_rgb,), n = store.frames([row], ["rgb"], decode=False)
        (all_audio,), _ = store.frames([row], ["audio"], decode=False)
        kept = rgb[: views.n_frames()[i], 0].astype(np.int64)  # the kept frames' positions
        assert (np.diff(kept) > 0).all() and (kept < n[0]).all()
        np.testing.assert_array_equal(rgb[: kept.size], all_rgb[kept])
        np.testing.assert_array_equal(audio[: kept.size], all_audio[kept])  # the same frames
        means = views.features([i], ["mean_rgb", "mean_audio"])[0]
        if kept.size == 0:  # no frames to average: the stored means kept
            np.testing.assert_array_equal(
                means, store.features([row], ["mean_rgb", "mean_audio"])[0]
            )
            continue
        np.testing.assert_allclose(means[:3], dequantize_uint8(all_rgb[kept]).mean(0), rtol=1e-6)
        mean_audio = dequantize_uint8(all_audio[kept]).mean(0).astype(np.float16)
        np.testing.assert_array_equal(means[3:], mean_audio)  # written as the group's float16


def test_the_plan_keeps_about_the_share_each_row_drawn_apart() -> None:
    lengths = np.array([0, 1, 2, 3, 300, 300])
    picks, counts = view_plan(lengths, 0.25, seed=0)
    np.testing.assert_array_equal(counts, [0, 1, 1, 1, 75, 75])
    first, second = np.split(picks, np.cumsum(counts)[:-1])[-2:]
    assert (np.diff(first) > 0).all() and not np.array_equal(first, second)
    again, _ = view_plan(lengths, 0.25, seed=0)
    other, _ = view_plan(lengths, 0.25, seed=1)
    np.testing.assert_array_equal(again, picks)
    assert not np.array_equal(other, picks)


def test_the_same_views_are_reused_another_rewritten_and_the_seed_decides(
    store: Dataset, tmp_path: Path
) -> None:
    first = frame_views(store, tmp_path / "views", keep=0.5, seed=3)
    written = (tmp_path / "views" / "manifest.json").stat().st_mtime_ns
    again = frame_views(store, tmp_path / "views", keep=0.5, seed=3)
    assert again.manifest == first.manifest
    assert (tmp_path / "views" / "manifest.json").stat().st_mtime_ns == written  # not rewritten
    source = first.manifest["source"]
    assert source["generator"] == "frame-views" and source["keep"] == 0.5 and source["seed"] == 3
    twin = frame_views(store, tmp_path / "twin", keep=0.5, seed=3)
    rows = np.arange(len(store))
    np.testing.assert_array_equal(twin.frames(rows)[0], first.frames(rows)[0])
    other = frame_views(store, tmp_path / "views", keep=0.5, seed=4, overwrite=True)
    assert other.manifest["source"]["seed"] == 4
    assert not np.array_equal(other.frames(rows)[0], first.frames(rows)[0])


def test_a_store_without_frames_or_a_share_outside_0_1_is_refused(
    store: Dataset, tmp_path: Path
) -> None:
    layout = Layout(features=(FeatureSpec("mean_rgb", 3), FeatureSpec("other", 4)), n_classes=5)
    with DatasetWriter(tmp_path / "video", layout) as writer:
        writer.write_batch(random_batch(np.random.default_rng(0), layout, 4))
    with pytest.raises(ConfigError, match=r"only video-level features \(mean_rgb, other\), no "
                       r"frames to subset; remove distill\.frame_views") as caught:  # fmt: skip
        frame_views(Dataset.open(tmp_path / "video"), tmp_path / "views", keep=0.5, seed=0)
    assert "\n" not in str(caught.value)
    for keep in (0.0, 1.0):
        with pytest.raises(ConfigError, match=r"use a share in \(0, 1\)"):
            frame_views(store, tmp_path / "views", keep=keep, seed=0)
    assert not (tmp_path / "views").exists()
