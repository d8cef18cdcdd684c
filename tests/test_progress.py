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
    for fold in (1, 2, 3):  # after the first epoch, with the training time left
        assert any(line.startswith(f"zoo: mlp fold {fold}/3") for line in lines)
    assert "zoo: mlp fold 3/3 (about " in printed
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


def rendered(display: progress.RunDisplay, width: int) -> list[str]:
    """The lines of a live display as a console ``width`` wide shows them now."""
    out = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    out.print(display.progress.get_renderable())  # type: ignore[attr-defined]
    return [line.rstrip() for line in out.export_text().splitlines()]


@pytest.mark.parametrize("width", [80, 100, 120])
def test_live_lines_fit_the_console_with_whole_times(width: int) -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=width)
    with progress.run_display(console) as display:
        display.stage("ensemble", 4, 11)
        progress.model_started("resnet_av_student_with_a_long_name", 1, 5)
        with progress.epoch_reporter(100_000, 12, "gap@20") as report:
            report(advance=50_000, loss=0.0712, seen=50_000, started=0.0)
            lines = rendered(display, width)
    assert len(lines) == 3
    for line in lines:
        assert len(line) <= width
        times = line.split()[-2:]  # elapsed, left: never cut to "0:0…"
        assert "…" not in line[-2 * progress.TIME_WIDTH :], line
        assert all(len(t) == 7 for t in times), line
    assert "loss 0.0712" in lines[2] and "gap@20 -" in lines[2]
    assert lines[0].startswith("stage 5/11 ensemble")


def test_column_widths_leave_the_times_whole() -> None:
    for width in (40, 60, 80, 120, 200):
        widths = progress.column_widths(width)
        assert widths[-2:] == (progress.TIME_WIDTH, progress.TIME_WIDTH)
        if width >= 80:
            assert sum(widths) + 4 <= width and widths[2] >= 34  # the epoch figures whole


@pytest.mark.parametrize("terminal", [True, False])
def test_a_resumed_fold_says_so(terminal: bool) -> None:
    console = Console(file=io.StringIO(), force_terminal=terminal, width=120, record=True)
    with progress.run_display(console) as display:
        display.stage("zoo", 2, 5)
        progress.model_resumed("mlp", 1, 3, "from its trainer checkpoint")
    assert "zoo: mlp fold 2/3 resumed: from its trainer checkpoint" in console.export_text()


def test_resumed_outside_a_run_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    progress.model_resumed("mlp", -1, 1, "its model was saved by an earlier run")
    assert (
        capsys.readouterr().err == "mlp every row resumed: its model was saved by an earlier run\n"
    )


def epoch(number: int, seconds: float) -> EpochStats:
    return EpochStats(
        epoch=number, loss=0.5, metric=0.25, seconds=seconds, samples_per_s=100, lr=0.1
    )


def test_time_left_comes_from_the_work_planned_and_each_models_epoch_cost() -> None:
    work = progress.Work()
    assert work.left() is None  # nothing planned
    work.planned({"a": (3, 2), "b": (3, 4)})
    assert work.left() is None  # nothing measured
    work.started("a")
    work.epoch_done(1, 10.0)
    assert work.left("a") == 5 * 10.0  # 2 more fits of 2 epochs, 1 epoch of this one
    assert work.left() == 5 * 10.0 + 12 * 10.0  # b unmeasured: the measured average
    work.epoch_done(2, 20.0)
    work.fit_done()
    assert work.left() == 4 * 15.0 + 12 * 15.0
    work.started("b")
    work.epoch_done(1, 5.0)
    assert work.left("b") == (2 * 4 + 3) * 5.0  # b's own cost now
    assert work.left() == 4 * 15.0 + 11 * 5.0
    work.fit_done()  # stopped early: its other epochs are not waited for
    assert work.left("b") == 2 * 4 * 5.0
    assert work.left("c") is None


def test_the_stage_line_shows_the_time_left_of_the_planned_work() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with progress.run_display(console) as display:
        display.stage("zoo", 2, 5)
        assert rendered(display, 120)[0].endswith("-:--:--")  # not "0:00:01"
        progress.work_planned({"mlp": (3, 2)})
        progress.model_started("mlp", 0, 3)
        with progress.epoch_reporter(1000, 2, "gap@20") as report:
            report(epoch(1, 100.0))
            stage, model = rendered(display, 120)[:2]
    assert stage.startswith("stage 3/5 zoo") and stage.endswith("0:08:20")  # 5 epochs x 100 s
    assert model.startswith("zoo: mlp fold 1/3") and model.endswith("0:08:20")


def test_model_lines_say_the_time_left_in_the_stage() -> None:
    console = Console(file=io.StringIO(), width=120, record=True)
    with progress.run_display(console) as display:
        display.stage("zoo", 2, 5)
        progress.work_planned({"mlp": (2, 2)})
        progress.model_started("mlp", 0, 2)
        with progress.epoch_reporter(1000, 2, "gap@20") as report:
            report(epoch(1, 100.0))
            report(epoch(2, 100.0))
        progress.model_started("mlp", 1, 2)
    lines = console.export_text().splitlines()
    assert lines[0] == "zoo: mlp fold 1/2"  # nothing measured yet
    assert "zoo: mlp fold 2/2 (about 0:03:20 of training left)" in lines


def test_steps_show_a_bar_in_a_terminal_and_a_line_otherwise(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with progress.run_display(console) as display:
        display.stage("ensemble", 4, 8)
        with progress.steps("stacker fold 1/3", 40, "rounds") as advance:
            for _ in range(5):
                advance(1)
            bar = rendered(display, 120)[1]
        assert len(rendered(display, 120)) == 1  # the bar is gone when the work ends
    assert bar.startswith("stacker fold 1/3") and "5/40 rounds" in bar
    with progress.steps("predict", None, "rows") as advance:
        advance(256)
        advance(44)
    assert capsys.readouterr().err.startswith("predict: 300 rows in ")


def test_the_stage_line_adds_the_training_planned_in_later_stages() -> None:
    work = progress.Work()
    work.later = {"a": 6, "student": 4}  # e.g. the clean rounds' and distill's epochs
    assert work.left() is None  # nothing measured
    work.planned({"a": (1, 2)})
    work.started("a")
    work.epoch_done(1, 10.0)
    assert work.left("a") == 1 * 10.0  # in this stage: 1 epoch left of its only fit
    assert work.left() == (1 + 6) * 10.0 + 4 * 10.0  # the student at the measured average
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with progress.run_display(console) as display:
        display.stage("zoo", 2, 5)
        display.later({"mlp": 10})
        progress.work_planned({"mlp": (1, 2)})
        progress.model_started("mlp", 0, 1)
        with progress.epoch_reporter(1000, 2, "gap@20") as report:
            report(epoch(1, 60.0))
            stage, model = rendered(display, 120)[:2]
    assert stage.endswith("0:11:00")  # (1 + 10) epochs x 60 s
    assert model.endswith("0:01:00")  # this model's fit in this stage
