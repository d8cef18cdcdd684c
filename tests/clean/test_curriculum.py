"""Curriculum: clean rows weigh 1, the others rise linearly; `fit` asks it for each epoch's
weights, resumes a killed run exactly and refuses to resume under another curriculum."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.train.test_loop import FULL, Kill, _equal_weights, _kill_after, _mlp, _toy_store
from webly.clean import Curriculum
from webly.data import Dataset
from webly.errors import ConfigError, DataError
from webly.train import fit
from webly.train.loop import WeightSchedule

GROUPS = ("rgb", "audio")
CLEAN = np.array([True, False, True, False, False])


def test_weights_at_the_start_middle_and_end_of_the_ramp() -> None:
    curriculum = Curriculum(CLEAN, ramp_epochs=4, start_weight=0.2)
    others = {t: 0.2 + 0.8 * min(1.0, (t - 1) / 4) for t in (1, 3, 5, 9)}
    assert others == {1: 0.2, 3: pytest.approx(0.6), 5: 1.0, 9: 1.0}
    for epoch, weight in others.items():
        weights = curriculum.weights(epoch)
        assert weights.dtype == np.float32 and weights.shape == (5,)
        np.testing.assert_allclose(weights, np.where(CLEAN, 1.0, weight), rtol=1e-6)
    np.testing.assert_array_equal(Curriculum(CLEAN, 3).weights(1), CLEAN.astype(np.float32))
    np.testing.assert_array_equal(Curriculum(CLEAN, 0).weights(1), np.ones(5, np.float32))
    assert isinstance(curriculum, WeightSchedule) and len(curriculum) == 5


def test_subset_and_settings() -> None:
    curriculum = Curriculum(CLEAN, 2, 0.5)
    part = curriculum.subset(np.array([3, 0]))
    np.testing.assert_array_equal(part.clean, [False, True])
    np.testing.assert_array_equal(part.weights(1), [0.5, 1.0])
    settings = curriculum.settings()
    assert settings["ramp_epochs"] == 2 and settings["start_weight"] == 0.5
    assert settings["rows"] == 5 and Curriculum(CLEAN.copy(), 2, 0.5).settings() == settings
    assert Curriculum(~CLEAN, 2, 0.5).settings() != settings
    assert Curriculum(CLEAN, 3, 0.5).settings() != settings


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((CLEAN.astype(int), 2), DataError, r"clean has shape \(5,\) and dtype int64; pass an"),
        ((CLEAN, -1), ConfigError, r"ramp_epochs is -1; pass an integer >= 0"),
        ((CLEAN, 2.5), ConfigError, r"ramp_epochs is 2\.5"),
        ((CLEAN, 2, 1.5), ConfigError, r"start_weight is 1\.5; pass a number in \[0, 1\]"),
    ],
)
def test_bad_curriculum_is_one_line(args: tuple[Any, ...], error: type, message: str) -> None:
    with pytest.raises(error, match=message) as err:
        Curriculum(*args)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="epochs are numbered from 1"):
        Curriculum(CLEAN, 2).weights(0)


@pytest.fixture
def train(tmp_path: Path) -> Dataset:
    return _toy_store(tmp_path / "train", 120, 0)


def _curriculum(n: int, seed: int = 0) -> Curriculum:
    return Curriculum(np.random.default_rng(seed).random(n) < 0.6, ramp_epochs=2)


@pytest.mark.slow
def test_fit_asks_each_epoch_for_its_weights(
    tmp_path: Path, train: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    curriculum = _curriculum(len(train))
    asked: list[int] = []
    real = Curriculum.weights

    def spy(self: Curriculum, epoch: int) -> np.ndarray:
        asked.append(epoch)
        return real(self, epoch)

    monkeypatch.setattr(Curriculum, "weights", spy)
    curriculum_model, plain, fixed = _mlp(), _mlp(), _mlp()
    fit(curriculum_model, train, None, FULL, GROUPS, tmp_path / "c", sample_weight=curriculum)
    assert asked == [1, 2, 3]
    fit(plain, train, None, FULL, GROUPS, tmp_path / "p")
    fit(fixed, train, None, FULL, GROUPS, tmp_path / "f", sample_weight=real(curriculum, 1))
    assert not _equal_weights(curriculum_model, plain)
    assert not _equal_weights(curriculum_model, fixed)  # the weights did change after epoch 1


@pytest.mark.slow
def test_an_all_clean_curriculum_trains_as_no_weights(tmp_path: Path, train: Dataset) -> None:
    every = Curriculum(np.ones(len(train), dtype=bool), ramp_epochs=2)
    a, b = _mlp(), _mlp()
    fit(a, train, None, replace(FULL, epochs=2), GROUPS, tmp_path / "a", sample_weight=every)
    fit(b, train, None, replace(FULL, epochs=2), GROUPS, tmp_path / "b")
    assert _equal_weights(a, b)


def test_fit_resumes_a_curriculum_exactly_and_not_under_another(
    tmp_path: Path, train: Dataset
) -> None:
    curriculum = _curriculum(len(train))
    whole = _mlp()
    fit(whole, train, None, FULL, GROUPS, tmp_path / "whole", sample_weight=curriculum)
    with pytest.raises(Kill):
        fit(_mlp(), train, None, FULL, GROUPS, tmp_path / "k", sample_weight=curriculum,
            on_epoch_end=_kill_after(1))  # fmt: skip
    with pytest.raises(ConfigError, match="other training settings"):
        fit(_mlp(), train, None, FULL, GROUPS, tmp_path / "k",
            sample_weight=_curriculum(len(train), seed=1))  # fmt: skip
    resumed = _mlp()
    fit(resumed, train, None, FULL, GROUPS, tmp_path / "k", sample_weight=curriculum)
    assert _equal_weights(whole, resumed)
    with pytest.raises(DataError, match="schedule covers 5 rows but the training data has 120"):
        fit(_mlp(), train, None, FULL, GROUPS, tmp_path / "x", sample_weight=Curriculum(CLEAN, 1))
