"""Test-time augmentation: view 0 is iter_scores, views differ, seeds decide, max >= mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import random_batch
from webly.core import TopK
from webly.data import Dataset, DatasetWriter, FeatureSpec, Layout
from webly.ensemble.tta import frame_view, scores_topk, tta_scores
from webly.errors import ConfigError
from webly.models import create_model
from webly.train import iter_scores


def _store(path: Path, level: str, task: str) -> Dataset:
    spec = FeatureSpec("rgb", 6, "uint8", level=level)  # type: ignore[arg-type]
    layout = Layout(features=(spec,), n_classes=5, task=task)  # type: ignore[arg-type]
    with DatasetWriter(path, layout) as writer:
        writer.write_batch(random_batch(np.random.default_rng(0), layout, 30, max_frames=9))
    return Dataset.open(path)


def _model(level: str) -> Any:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        if level == "frame":
            return create_model("dbof", 5, {"rgb": 6}, cluster_size=8, hidden=8)
        return create_model("mlp", 5, {"rgb": 6}, hidden=[16], dropout=0.5)


@pytest.fixture(params=["video", "frame"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Any, Dataset]:
    task = "multilabel" if request.param == "video" else "multiclass"
    return _model(request.param), _store(tmp_path / "store", request.param, task)


def _scores(model: Any, ds: Dataset, **kwargs: Any) -> np.ndarray:
    batches = list(tta_scores(model, ds, ("rgb",), batch_size=8, max_frames=4, **kwargs))
    assert np.concatenate([rows for rows, _ in batches]).tolist() == list(range(len(ds)))
    return np.concatenate([scores for _, scores in batches])


def test_one_view_is_iter_scores(case: tuple[Any, Dataset]) -> None:
    model, ds = case
    plain = np.concatenate([p for _, p in iter_scores(model, ds, ("rgb",), batch_size=8)])
    np.testing.assert_array_equal(_scores(model, ds, views=1), plain)


def test_views_differ_and_the_seed_decides(case: tuple[Any, Dataset]) -> None:
    model, ds = case
    one = _scores(model, ds, views=1)
    four = _scores(model, ds, views=4, seed=1)
    assert np.abs(four - one).max() > 1e-3
    np.testing.assert_array_equal(_scores(model, ds, views=4, seed=1), four)
    assert np.abs(_scores(model, ds, views=4, seed=2) - four).max() > 1e-4
    if ds.task == "multiclass":
        np.testing.assert_allclose(four.sum(axis=1), 1.0, rtol=1e-5)  # a mean of distributions


def test_max_is_at_least_mean_and_view_zero(case: tuple[Any, Dataset]) -> None:
    model, ds = case
    mean = _scores(model, ds, views=3, mode="mean", seed=5)
    most = _scores(model, ds, views=3, mode="max", seed=5)
    assert np.all(most >= mean - 1e-7) and np.all(most >= _scores(model, ds, views=1))
    assert np.any(most > mean + 1e-4)


def test_video_noise_views_and_regular_frame_views(tmp_path: Path) -> None:
    video = _store(tmp_path / "v", "video", "multilabel")
    model = _model("video")
    noisy = _scores(model, video, views=2, dropout=0.0, noise=0.3)
    assert np.abs(noisy - _scores(model, video, views=1)).max() > 1e-3
    frames = _store(tmp_path / "f", "frame", "multiclass")
    dbof = _model("frame")
    regular = _scores(dbof, frames, views=3, frame_sampling="regular", seed=0)
    assert np.abs(regular - _scores(dbof, frames, views=1)).max() > 1e-4
    # regular views need no randomness
    np.testing.assert_array_equal(
        _scores(dbof, frames, views=3, frame_sampling="regular", seed=9), regular
    )


def test_frame_views_pick_by_hand() -> None:
    x = torch.arange(10, dtype=torch.float32).repeat(3, 1)[:, :, None]  # frame t holds t
    lengths = torch.tensor([10, 3, 0])
    rng = np.random.default_rng(0)
    first, kept = frame_view(x, lengths, 1, 3, "regular", 5, rng)
    second, _ = frame_view(x, lengths, 2, 3, "regular", 5, rng)
    assert kept.tolist() == [5, 5, 0]
    assert first[0, :, 0].tolist() == [0, 2, 4, 6, 8]  # offset 0 of an interval of 2
    assert second[0, :, 0].tolist() == [1, 3, 5, 7, 9]  # offset 1/2
    assert first[1, :, 0].tolist() == [0, 0, 1, 1, 2]  # 3 frames spread over 5
    drawn, _ = frame_view(x, lengths, 1, 3, "random", 6, rng)
    picks = drawn[0, :, 0].numpy()
    assert picks.shape == (6,) and np.all(np.diff(picks) >= 0) and picks.max() <= 9


def test_scores_topk_keeps_each_rows_best() -> None:
    rng = np.random.default_rng(0)
    blocks = [(np.arange(i, i + 4), rng.random((4, 7)).astype(np.float32)) for i in (0, 4)]
    top = scores_topk(blocks, 3)
    expected = TopK.from_dense(np.concatenate([b for _, b in blocks]), 3)
    np.testing.assert_array_equal(top.indices, expected.indices)
    assert scores_topk([], 3).indices.shape == (0, 3)


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    video = _store(tmp_path / "v", "video", "multilabel")
    with pytest.raises(ConfigError, match="would be identical"):
        next(tta_scores(_model("video"), video, ("rgb",), views=2, dropout=0.0))
    with pytest.raises(ConfigError, match="mode 'median'"):
        next(tta_scores(_model("video"), video, ("rgb",), mode="median"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="views is 0"):
        next(tta_scores(_model("video"), video, ("rgb",), views=0))
    with pytest.raises(ConfigError, match="needs a network"):
        next(tta_scores(object(), video, ("rgb",)))  # type: ignore[arg-type]


def _image_store(path: Path) -> Dataset:
    """A video-level store: ``image`` and its stored views ``image_flip``, ``image_top_left``."""
    names = ("image", "image_flip", "image_top_left")
    layout = Layout(tuple(FeatureSpec(n, 6, "float32") for n in names), n_classes=5,
                    task="multiclass")  # fmt: skip
    with DatasetWriter(path, layout) as writer:
        writer.write_batch(random_batch(np.random.default_rng(1), layout, 20))
    return Dataset.open(path)


def test_stored_views_are_read_from_their_groups_and_combined(tmp_path: Path) -> None:
    ds = _image_store(tmp_path / "images")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model("mlp", 5, {"image": 6}, hidden=[16])
    each = [
        np.concatenate([p for _, p in iter_scores(model, ds, (group,), batch_size=8)])
        for group in ("image", "image_flip", "image_top_left")
    ]
    for mode, combine in (("mean", np.mean), ("max", np.max)):
        batches = list(tta_scores(model, ds, ("image",), mode=mode, batch_size=8,  # type: ignore[arg-type]
                                  stored_views=("flip", "top_left")))  # fmt: skip
        assert np.concatenate([rows for rows, _ in batches]).tolist() == list(range(20))
        got = np.concatenate([scores for _, scores in batches])
        np.testing.assert_allclose(got, combine(each, axis=0), rtol=1e-6)
    assert np.abs(each[1] - each[0]).max() > 1e-3  # the views differ


def test_stored_views_refuse_a_missing_group_and_another_view_count(tmp_path: Path) -> None:
    ds = _image_store(tmp_path / "images")
    model = create_model("mlp", 5, {"image": 6}, hidden=[16])
    with pytest.raises(ConfigError, match="stored view 'bottom_right': the store has no group "
                       "image_bottom_right; import the data with that view"):  # fmt: skip
        list(tta_scores(model, ds, ("image",), stored_views=("flip", "bottom_right")))
    with pytest.raises(ConfigError, match="views is 4 but 1 stored views make 2"):
        list(tta_scores(model, ds, ("image",), views=4, stored_views=("flip",)))
