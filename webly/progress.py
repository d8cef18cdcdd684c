"""Progress of a run: one Rich display across the stages in a terminal, a plain log otherwise.

`webly run` opens one `run_display` for the whole run; within it the pipeline says which
stage runs (`RunDisplay.stage`), the out-of-fold trainer which model and fold
(`RunDisplay.model`), and the trainer reports its epochs (`epoch_reporter`). In a terminal
that is one live display of three lines::

    stage 3/12 zoo                  ━━━━━━━━━━╸────────  0:01:12 elapsed   0:02:30 left
    zoo: mlp fold 2/3               ━━━━━━━━━━━━━━━━━──
    epoch 4/8                       ━━━━━━━╸──────────  loss 0.0712  18,400/s  gap@20 0.6421

and without one (a log file, a pipe, CI) one line per stage, model and epoch. Outside a run
(`webly.train.fit` called directly) the trainer shows its own epoch bar or lines.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Report = Callable[..., None]
"""``report(stats)`` at the end of an epoch (a `webly.train.loop.EpochStats`), and
``report(advance=n, loss=mean, seen=rows, started=perf_counter)`` after each batch."""


Reporting = contextlib.AbstractContextManager[Report]
"""A context manager yielding a `Report` for one model's training."""


class RunDisplay(Protocol):
    """What the pipeline and the trainer tell the display of a run."""

    def stage(self, name: str, index: int, total: int) -> None:
        """Stage ``index`` (0-based) of ``total`` starts."""

    def model(self, model: str, fold: int, folds: int) -> None:
        """``model``'s fold ``fold`` (0-based; -1: trained on every row) of ``folds`` starts
        in the current stage."""

    def epochs(self, n_rows: int, epochs: int, metric: str) -> Reporting:
        """A reporter for one model's training: ``epochs`` epochs of ``n_rows`` rows."""


_ACTIVE: list[RunDisplay] = []


@contextlib.contextmanager
def run_display(console: Console) -> Iterator[RunDisplay]:
    """The display of one run on ``console``: live when it is a terminal, lines otherwise.
    While open, `active` returns it."""
    display: RunDisplay
    if console.is_terminal and not console.quiet:
        live = _LiveDisplay(console)
        display = live
        with live.progress:
            _ACTIVE.append(display)
            try:
                yield display
            finally:
                _ACTIVE.pop()
        return
    display = _LineDisplay(console)
    _ACTIVE.append(display)
    try:
        yield display
    finally:
        _ACTIVE.pop()


def active() -> RunDisplay | None:
    """The display of the run in progress in this process, None outside `run_display`."""
    return _ACTIVE[-1] if _ACTIVE else None


def model_started(model: str, fold: int, folds: int) -> None:
    """Tell the run's display (if any) that a model's fold (-1: every row) starts training."""
    display = active()
    if display is not None:
        display.model(model, fold, folds)


def epoch_reporter(n_rows: int, epochs: int, metric: str) -> Reporting:
    """The trainer's reporter: the run's display when a run is in progress, else a bar of its
    own on stderr when it is a terminal, else one line per epoch on stderr."""
    display = active()
    if display is not None:
        return display.epochs(n_rows, epochs, metric)
    if sys.stderr.isatty():
        progress = Progress(*_columns(), console=Console(stderr=True))
        return _bar(progress, n_rows, epochs, own=True, metric=metric)
    return _epoch_lines(metric, epochs, print_line=lambda text: print(text, file=sys.stderr))


# --------------------------------------------------------------------------- internals


class _LiveDisplay:
    """One Rich live display: stage, model and epoch lines (see the module docstring)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(*_columns(), console=console)
        self.stages = self.progress.add_task("", total=None, info="")
        self.models: TaskID | None = None
        self.current = ""

    def stage(self, name: str, index: int, total: int) -> None:
        self.current = name
        self.progress.update(
            self.stages, description=f"stage {index + 1}/{total} {name}", total=total,
            completed=index,
        )  # fmt: skip
        if self.models is not None:
            self.progress.remove_task(self.models)
            self.models = None

    def model(self, model: str, fold: int, folds: int) -> None:
        description = f"{self.current}: {model} {_where(fold, folds)}"
        if self.models is None:
            self.models = self.progress.add_task(description, total=folds, info="")
        self.progress.update(self.models, description=description, completed=max(fold, 0))

    def epochs(self, n_rows: int, epochs: int, metric: str) -> Reporting:
        return _bar(self.progress, n_rows, epochs, own=False, metric=metric)


class _LineDisplay:
    """One line per stage, model and epoch (a log, a pipe, CI)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.current = ""

    def stage(self, name: str, index: int, total: int) -> None:
        self.current = name  # the pipeline prints a line per stage itself

    def model(self, model: str, fold: int, folds: int) -> None:
        self.console.print(f"{self.current}: {model} {_where(fold, folds)}", highlight=False)

    def epochs(self, n_rows: int, epochs: int, metric: str) -> Reporting:
        return _epoch_lines(
            metric, epochs, print_line=lambda text: self.console.print(f"  {text}", highlight=False)
        )


def _where(fold: int, folds: int) -> str:
    return "every row" if fold < 0 else f"fold {fold + 1}/{folds}"


def _columns() -> tuple[Any, ...]:
    """What a line of the display shows: what, bar, figures, elapsed, time left."""
    return (
        TextColumn("{task.description:<32}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


@contextlib.contextmanager
def _bar(
    progress: Progress, n_rows: int, epochs: int, own: bool, metric: str = ""
) -> Iterator[Report]:
    """An epoch bar on ``progress`` (started and stopped here when ``own``), removed after."""
    task = progress.add_task(f"epoch 1/{epochs}", total=n_rows, info="")
    valid = "-"  # the last epoch's validation metric

    def report(stats: Any = None, **batch: Any) -> None:
        nonlocal valid
        if stats is not None:
            valid = "-" if stats.metric is None else f"{stats.metric:.4f}"
            if stats.epoch < epochs:
                progress.reset(task, description=f"epoch {stats.epoch + 1}/{epochs}")
            return
        speed = batch["seen"] / max(time.perf_counter() - batch["started"], 1e-9)
        info = f"loss {batch['loss']:.4f}  {speed:,.0f}/s  {metric} {valid}"
        progress.update(task, advance=batch["advance"], info=info)

    if own:
        progress.start()
    try:
        yield report
    finally:
        if own:
            progress.stop()
        else:
            progress.remove_task(task)


@contextlib.contextmanager
def _epoch_lines(metric: str, epochs: int, print_line: Callable[[str], None]) -> Iterator[Report]:
    """One line per finished epoch."""

    def report(stats: Any = None, **_: Any) -> None:
        if stats is not None:
            shown = "-" if stats.metric is None else f"{stats.metric:.4f}"
            print_line(
                f"epoch {stats.epoch}/{epochs}: loss {stats.loss:.4f}  {metric} {shown}  "
                f"{stats.samples_per_s:,.0f} samples/s  {stats.seconds:.1f}s"
            )

    yield report
