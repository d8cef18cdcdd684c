"""zoo.time_limit: a budget spread over the fold models, refused when one epoch cannot fit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.train.test_loop import _mlp, _toy_store
from tests.train.test_oof import _store, _zoo
from webly.errors import ConfigError
from webly.predictions import Predictions
from webly.train import TrainConfig, fit
from webly.train.budget import TimeBudget, check_time_limit, epoch_seconds
from webly.train.oof import fit_oof
from webly.train.zoo import plan_zoo


def test_fit_stops_before_an_epoch_that_would_end_past_its_time_limit(tmp_path: Path) -> None:
    train = _toy_store(tmp_path / "t", 160, 0)
    config = TrainConfig(epochs=50, batch_size=16, lr=1e-2, patience=None, time_limit=1e-3)
    result = fit(_mlp(), train, None, config, ("rgb", "audio"), tmp_path / "w")
    assert len(result.history) == 1 and result.out_of_time and result.stopped_early
    free = fit(_mlp(), train, None, TrainConfig(epochs=3, lr=1e-2, patience=None),
               ("rgb", "audio"), tmp_path / "free")  # fmt: skip
    assert len(free.history) == 3 and not free.out_of_time
    # a budget, not a result setting: a run resumes under another one
    assert (
        config.results_settings()
        == TrainConfig(epochs=50, batch_size=16, lr=1e-2, patience=None).results_settings()
    )


def test_each_fold_model_gets_an_equal_share_of_what_is_left(tmp_path: Path) -> None:
    folders = [tmp_path / f"fold-{i}" for i in range(4)]
    budget = TimeBudget.start(100.0, folders)
    assert budget.share() == pytest.approx(25.0, abs=0.5)
    (folders[0] / "model").mkdir(parents=True)
    assert budget.share() == pytest.approx(100.0 / 3, abs=0.5)
    assert TimeBudget(time.time() - 5, tuple(folders)).share() == 1.0  # past the deadline


def test_a_limit_that_cannot_fit_one_epoch_of_every_member_x_fold_is_refused(
    tmp_path: Path,
) -> None:
    train = _store(tmp_path / "train", 150, 0)
    zoo = _zoo({"name": "logistic"}, {"name": "mlp", "hparams": {"hidden": [16]}})
    members = plan_zoo(zoo, train)
    estimates = check_time_limit(1e6, members, train, 3)
    assert set(estimates) == {"logistic", "mlp"} and all(s > 0 for s in estimates.values())
    assert epoch_seconds(members[1], train, 1000) > epoch_seconds(members[1], train, 10)
    with pytest.raises(ConfigError, match=r"^zoo.time_limit is 1e-06 s, but one epoch of every "
                       r"member x fold takes about .* raise zoo.time_limit to at least \d+ or "
                       r"leave it out$"):  # fmt: skip
        fit_oof(_zoo({"name": "logistic"}, time_limit=1e-6), train, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_fold_metrics_record_the_share_and_how_each_fold_trained(tmp_path: Path) -> None:
    train = _store(tmp_path / "train", 150, 0)
    result = fit_oof(_zoo({"name": "logistic"}, time_limit=600), train, None, tmp_path / "out")
    assert result.failed == []
    folds = Predictions.open(tmp_path / "out" / "logistic" / "predictions").fold_metrics
    for fold in ("0", "1", "2"):
        record = folds[fold]
        assert 0 < record["time_limit"] <= 600 and record["out_of_time"] is False
        assert record["lr"] == 0.05 and record["epochs"] == 2 and record["valid_rows"] == 50
        assert "history" not in record  # the curves stay beside the model, for the tracker
    saved = json.loads(
        (tmp_path / "out" / "logistic" / "fold-0" / "model" / "fit.json").read_text()
    )
    assert [epoch["epoch"] for epoch in saved["history"]] == [1, 2]
    assert all(isinstance(epoch["loss"], float) for epoch in saved["history"])
