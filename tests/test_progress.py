"""A run's progress: one live display in a terminal, lines otherwise, and the trainer's own
reporting outside a run."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tests.test_pipeline import run
from webly import progress
from webly.train.loop import EpochStats, TrainConfig, fit


def stats(epoch: int) -> EpochStats:
    return EpochStats(epoch=epoch, loss=0.5, metric=0.25, seconds=1.0, samples_per_s=100, lr=0.1)


@pytest.mark.slow
def test_lines_when_not_a_terminal(tmp_path: Path) -> None:
    _, printed = run(tmp_path, tmp_path / "run")  # a recording console is not a terminal
    lines = printed.splitlines()
    for fold in (1, 2, 3):
        assert f"zoo: mlp fold {fold}/3" in lines
    assert sum(line.startswith("  epoch 1/1: loss ") for line in lines) == 6  # 2 members x 3
    assert lines.index("zoo: running") < lines.index("zoo: logistic fold 1/3")
    assert progress.active() is None


def test_one_live_display_in_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    with progress.run_display(console) as display:
        assert progress.active() is display
        display.stage("zoo", 2, 12)
        progress.model_started("mlp", 1, 3)
        with progress.epoch_reporter(1000, 2, "gap@20") as report:
            report(advance=500, loss=0.7, seen=500, started=0.0)
            report(stats(1))
        progress.model_started("mlp", -1, 1)
    assert progress.active() is None
    shown = buffer.getvalue()
    assert "stage 3/12 zoo" in shown and "zoo: mlp every row" in shown
    assert "loss 0.7000" in shown and "epoch 2/2" in shown


def test_training_outside_a_run_reports_lines(
    capsys: pytest.CaptureFixture[str], small_store: Any, tmp_path: Path
) -> None:
    from webly.models import create_model

    model = create_model("mlp", small_store.n_classes, {"rgb": 16, "audio": 4}, hidden=[8])
    fit(
        model,
        small_store,
        None,
        TrainConfig(epochs=2, batch_size=16),
        ("rgb", "audio"),
        tmp_path / "w",
    )
    err = capsys.readouterr().err
    assert "epoch 1/2: loss " in err and "epoch 2/2: loss " in err


def test_quiet_console_shows_nothing() -> None:
    buffer = io.StringIO()
    with progress.run_display(Console(file=buffer, quiet=True)) as display:
        display.model("mlp", 0, 3)
        with display.epochs(10, 1, "gap@20") as report:
            report(stats(1))
    assert buffer.getvalue() == ""
