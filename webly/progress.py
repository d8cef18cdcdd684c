"""Progress of a run: one Rich display across the stages in a terminal, a plain log otherwise.

`webly run` opens one `run_display` for the whole run; within it the pipeline says which
stage runs (`RunDisplay.stage`; only the stages the recipe asks for are shown and counted),
the out-of-fold trainer the training it plans (`work_planned`), which model and fold starts
(`model_started`) or resumes an earlier run's work (`model_resumed`), and the trainer reports
its epochs (`epoch_reporter`). Other long work (the stacker's boosting rounds, the rows
`webly predict` scores) shows a bar of its own (`steps`). In a terminal that is one live
display; columns: what, bar, figures, elapsed, time left::

    stage 3/5 zoo                 ━━━━━━━━━━╸─────────                       0:01:12  0:02:30
    zoo: mlp fold 2/3             ━━━━━━━━━━━━━━━━━──                        0:00:40  0:01:10
    epoch 4/8                     ━━━━━━━╸───────────  loss 0.0712 18,400/s  0:00:05  0:00:07

The stage and model lines' time left is the training planned (models x folds x epochs) times
what each model's epochs cost as they are measured (`Work`); the columns fit the console's
width, 80 included, without cutting the times (`column_widths`). Without a terminal (a log
file, a pipe, CI) it is one line per stage, model (with the stage's time left), resume,
epoch and bar. Outside a run (`webly.train.fit` called directly) the trainer shows its own
epoch bar or lines.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text

Report = Callable[..., None]
"""``report(stats)`` at the end of an epoch (a `webly.train.loop.EpochStats`), and
``report(advance=n, loss=mean, seen=rows, started=perf_counter)`` after each batch."""


Reporting = contextlib.AbstractContextManager[Report]
"""A context manager yielding a `Report` for one model's training."""

Advance = Callable[[int], None]
"""``advance(n)``: ``n`` more steps of a `steps` bar are done."""


class RunDisplay(Protocol):
    """What the pipeline and the trainer tell the display of a run."""

    def stage(self, name: str, index: int, total: int) -> None:
        """Stage ``index`` (0-based) of ``total`` starts."""

    def model(self, model: str, fold: int, folds: int) -> None:
        """``model``'s fold ``fold`` (0-based; -1: trained on every row) of ``folds`` starts
        in the current stage."""

    def resumed(self, model: str, fold: int, folds: int, how: str) -> None:
        """``model``'s fold goes on from an earlier run's work, ``how`` (one line)."""

    def plan(self, work: dict[str, tuple[int, int]]) -> None:
        """The training the current stage has left: ``{model: (fits, epochs of each)}``,
        what its time left is estimated from (`Work`)."""

    def steps(
        self, description: str, total: int | None, unit: str
    ) -> contextlib.AbstractContextManager[Advance]:
        """A bar for other work than epochs (`steps`)."""

    def later(self, work: dict[str, int]) -> None:
        """The training planned in the stages after the current one: ``{model: epochs}``,
        which the stage line's time left adds (`Work.later`)."""

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


def work_planned(work: dict[str, tuple[int, int]]) -> None:
    """Tell the run's display (if any) the training the current stage has left:
    ``{model: (fits still to train, epochs of each)}``."""
    display = active()
    if display is not None:
        display.plan(work)


def steps(
    description: str, total: int | None, unit: str
) -> contextlib.AbstractContextManager[Advance]:
    """Progress of work that is not a model's epochs (the stacker's boosting rounds, the rows
    `webly predict` scored): ``total`` steps (None: not known ahead) counted in ``unit``. A
    bar on the run's display, else a bar on stderr when it is a terminal, else one line on
    stderr when the work ends (one line a fold, a file, ...)."""
    display = active()
    if display is not None:
        return display.steps(description, total, unit)
    if sys.stderr.isatty():
        progress = _Progress(*_columns(), console=Console(stderr=True))
        return _steps_bar(progress, description, total, unit, own=True)
    return _steps_line(description, unit, lambda text: print(text, file=sys.stderr))


class Work:
    """The training planned in a stage and the measured cost of each model's epochs: one
    estimate of the time left (`left`) from what is planned, not from the stages done.

    An epoch of a model not measured yet costs what the measured ones cost on average; a fit
    that stops early (early stopping, its time limit) leaves nothing behind it."""

    def __init__(self) -> None:
        self.plan: dict[str, list[int]] = {}  # model -> [fits not started, epochs of each]
        self.later: dict[str, int] = {}  # model -> epochs planned in the stages after this
        self.costs: dict[str, list[float]] = {}  # model -> seconds of its measured epochs
        self.current: str | None = None  # the model trained last (or now)
        self.running = False  # whether its fit goes on
        self.epoch = 0  # the epochs its fit has done

    def planned(self, work: dict[str, tuple[int, int]]) -> None:
        self.plan = {model: [fits, epochs] for model, (fits, epochs) in work.items()}
        self.running, self.epoch = False, 0

    def started(self, model: str) -> None:
        """A fit of ``model`` starts."""
        self.current, self.running, self.epoch = model, True, 0
        if model in self.plan:
            self.plan[model][0] = max(self.plan[model][0] - 1, 0)

    def epoch_done(self, epoch: int, seconds: float) -> None:
        """The running fit finished its epoch ``epoch`` (1-based) in ``seconds``."""
        self.epoch = epoch
        if self.current is not None:
            self.costs.setdefault(self.current, []).append(seconds)

    def fit_done(self) -> None:
        self.running, self.epoch = False, 0

    def left(self, model: str | None = None) -> float | None:
        """Seconds the planned training has left: ``model``'s in this stage when given, else
        this stage's and the later stages' (`later`). None without a plan (or ``model`` not
        in it) and while nothing has been measured yet."""
        if model is not None and model not in self.plan:
            return None
        if model is None and not self.plan and not self.later:
            return None
        epochs_left: dict[str, int] = {}
        for name, (fits, epochs) in self.plan.items():
            if model is not None and name != model:
                continue
            running = max(epochs - self.epoch, 0) if self.running and name == self.current else 0
            epochs_left[name] = fits * epochs + running
        if model is None:
            for name, epochs in self.later.items():
                epochs_left[name] = epochs_left.get(name, 0) + epochs
        measured = [c for costs in self.costs.values() for c in costs]
        default = sum(measured) / len(measured) if measured else None
        total = 0.0
        for name, n in epochs_left.items():
            costs = self.costs.get(name)
            cost = sum(costs) / len(costs) if costs else default
            if n and cost is None:
                return None
            total += n * (cost or 0.0)
        return total


def model_resumed(model: str, fold: int, folds: int, how: str) -> None:
    """Say that a model's fold (-1: every row) resumes an earlier run's work, ``how`` (its
    saved model, its trainer checkpoint): a line on the run's display, else on stderr."""
    display = active()
    if display is not None:
        display.resumed(model, fold, folds, how)
    else:
        print(f"{model} {_where(fold, folds)} resumed: {how}", file=sys.stderr)


def epoch_reporter(n_rows: int, epochs: int, metric: str) -> Reporting:
    """The trainer's reporter: the run's display when a run is in progress, else a bar of its
    own on stderr when it is a terminal, else one line per epoch on stderr."""
    display = active()
    if display is not None:
        return display.epochs(n_rows, epochs, metric)
    if sys.stderr.isatty():
        progress = _Progress(*_columns(), console=Console(stderr=True))
        return _bar(progress, n_rows, epochs, own=True, metric=metric)
    return _epoch_lines(metric, epochs, print_line=lambda text: print(text, file=sys.stderr))


# --------------------------------------------------------------------------- internals


class _LiveDisplay:
    """One Rich live display: stage, model and epoch lines (see the module docstring)."""

    def __init__(self, console: Console) -> None:
        self.progress = _Progress(*_columns(), console=console)
        self.stages = self.progress.add_task("", total=None, info="", left=None)
        self.models: TaskID | None = None
        self.current = ""
        self.model_name = ""
        self.work = Work()

    def stage(self, name: str, index: int, total: int) -> None:
        self.current = name
        self.work.planned({})  # each model's measured epoch cost stays: the next stage's too
        self.progress.update(
            self.stages, description=f"stage {index + 1}/{total} {name}", total=total,
            completed=index, left=None,
        )  # fmt: skip
        if self.models is not None:
            self.progress.remove_task(self.models)
            self.models = None

    def model(self, model: str, fold: int, folds: int) -> None:
        description = f"{self.current}: {model} {_where(fold, folds)}"
        self.model_name = model
        self.work.started(model)
        if self.models is None:
            self.models = self.progress.add_task(description, total=folds, info="", left=None)
        self.progress.update(self.models, description=description, completed=max(fold, 0))
        self._time_left()

    def plan(self, work: dict[str, tuple[int, int]]) -> None:
        self.work.planned(work)
        self._time_left()

    def later(self, work: dict[str, int]) -> None:
        self.work.later = dict(work)
        self._time_left()

    def _time_left(self) -> None:
        """The stage's and the model's time left, from the work planned (`Work.left`)."""
        self.progress.update(self.stages, left=self.work.left())
        if self.models is not None:
            self.progress.update(self.models, left=self.work.left(self.model_name))

    def resumed(self, model: str, fold: int, folds: int, how: str) -> None:
        text = f"{self.current}: {model} {_where(fold, folds)} resumed: {how}"
        self.progress.console.print(text, highlight=False)  # above the live lines

    def steps(
        self, description: str, total: int | None, unit: str
    ) -> contextlib.AbstractContextManager[Advance]:
        return _steps_bar(self.progress, description, total, unit, own=False)

    @contextlib.contextmanager
    def epochs(self, n_rows: int, epochs: int, metric: str) -> Iterator[Report]:
        with _bar(self.progress, n_rows, epochs, own=False, metric=metric) as bar:

            def report(stats: Any = None, **batch: Any) -> None:
                bar(stats, **batch)
                if stats is not None:
                    self.work.epoch_done(stats.epoch, stats.seconds)
                    self._time_left()

            try:
                yield report
            finally:
                self.work.fit_done()
                self._time_left()


class _LineDisplay:
    """One line per stage, model and epoch (a log, a pipe, CI)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.current = ""
        self.work = Work()

    def stage(self, name: str, index: int, total: int) -> None:
        self.current = name  # the pipeline prints a line per stage itself
        self.work.planned({})

    def model(self, model: str, fold: int, folds: int) -> None:
        self.work.started(model)
        left = self.work.left()
        after = "" if left is None else f" (about {format_seconds(left)} of training left)"
        self.console.print(f"{self.current}: {model} {_where(fold, folds)}{after}", highlight=False)

    def plan(self, work: dict[str, tuple[int, int]]) -> None:
        self.work.planned(work)

    def later(self, work: dict[str, int]) -> None:
        self.work.later = dict(work)

    def resumed(self, model: str, fold: int, folds: int, how: str) -> None:
        text = f"{self.current}: {model} {_where(fold, folds)} resumed: {how}"
        self.console.print(text, highlight=False)

    def steps(
        self, description: str, total: int | None, unit: str
    ) -> contextlib.AbstractContextManager[Advance]:
        return _steps_line(
            description, unit, lambda text: self.console.print(f"  {text}", highlight=False)
        )

    @contextlib.contextmanager
    def epochs(self, n_rows: int, epochs: int, metric: str) -> Iterator[Report]:
        def print_line(text: str) -> None:
            self.console.print(f"  {text}", highlight=False)

        with _epoch_lines(metric, epochs, print_line=print_line) as lines:

            def report(stats: Any = None, **batch: Any) -> None:
                lines(stats, **batch)
                if stats is not None:
                    self.work.epoch_done(stats.epoch, stats.seconds)

            try:
                yield report
            finally:
                self.work.fit_done()


def format_seconds(seconds: float) -> str:
    """``H:MM:SS``, as Rich's time columns show it."""
    whole = int(max(seconds, 0.0) + 0.5)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _where(fold: int, folds: int) -> str:
    return "every row" if fold < 0 else f"fold {fold + 1}/{folds}"


def _columns() -> tuple[Any, ...]:
    """What a line of the display shows: what, bar, figures, elapsed, time left."""
    return (
        TextColumn("{task.description}"),
        BarColumn(bar_width=None),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        _TimeLeftColumn(),
    )


class _TimeLeftColumn(TimeRemainingColumn):
    """A line's time left: from the work planned (its ``left`` field, `Work.left`; -:--:--
    while unknown) on the stage and model lines, from its own speed on an epoch bar."""

    def __call__(self, task: Task) -> Any:
        if "left" in task.fields:  # as it is now, not Rich's copy of half a second ago
            return self.render(task)
        return super().__call__(task)

    def render(self, task: Task) -> Any:
        if "left" not in task.fields:
            return super().render(task)
        left = task.fields["left"]
        shown = "-:--:--" if left is None else format_seconds(left)
        return Text(shown, style="progress.remaining")


TIME_WIDTH = 8
"""Room for a time column: ``H:MM:SS`` up to ``99:59:59``."""


def column_widths(width: int) -> tuple[int, int, int, int, int]:
    """The widths of `_columns` on a console ``width`` characters wide (one space between
    columns): the times always whole, then the figures (up to 36), the description (22 to
    36) and the bar (at least 4, at most 40), cutting the figures and then the description
    with an ellipsis when the console is narrower than 80."""
    rest = max(width - 2 * TIME_WIDTH - 4, 3)  # 4 spaces between the 5 columns
    info = max(min(36, rest - 22 - 4), 1)
    description = max(min(36, rest - info - 4), 1)
    bar = max(min(40, rest - info - description), 1)
    return description, bar, info, TIME_WIDTH, TIME_WIDTH


class _Progress(Progress):
    """A `Progress` whose lines fit the console: fixed column widths (`column_widths`) from
    its width at each refresh, so that Rich never shrinks the time columns to "0:4…"."""

    def __init__(self, *columns: Any, console: Console) -> None:
        self.out = console  # Progress's own console property needs its Live, made after this
        super().__init__(*columns, console=console)

    def make_tasks_table(self, tasks: Iterable[Task]) -> Table:
        widths = column_widths(self.out.width)
        table = Table.grid(
            *(Column(width=w, no_wrap=True, overflow="ellipsis") for w in widths),
            padding=(0, 1),
        )
        for task in tasks:
            if task.visible:
                table.add_row(*(column(task) for column in self.columns if callable(column)))
        return table


@contextlib.contextmanager
def _shown(progress: Progress, task: TaskID, own: bool) -> Iterator[None]:
    """Show ``task`` while the block runs: start and stop ``progress`` when the bar owns it,
    else remove the task from the display it shares."""
    if own:
        progress.start()
    try:
        yield
    finally:
        if own:
            progress.stop()
        else:
            progress.remove_task(task)


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
        info = f"loss {batch['loss']:.4f} {speed:,.0f}/s {metric} {valid}"
        progress.update(task, advance=batch["advance"], info=info)

    with _shown(progress, task, own):
        yield report


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


@contextlib.contextmanager
def _steps_bar(
    progress: Progress, description: str, total: int | None, unit: str, own: bool
) -> Iterator[Advance]:
    """A `steps` bar on ``progress`` (started and stopped here when ``own``), removed after."""
    task = progress.add_task(description, total=total, info="")
    done = 0

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n
        shown = f"{done:,}/{total:,} {unit}" if total is not None else f"{done:,} {unit}"
        progress.update(task, advance=n, info=shown)

    with _shown(progress, task, own):
        yield advance


@contextlib.contextmanager
def _steps_line(
    description: str, unit: str, print_line: Callable[[str], None]
) -> Iterator[Advance]:
    """One line when the work ends: the steps done and the seconds they took."""
    started, done = time.perf_counter(), 0

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n

    yield advance
    print_line(f"{description}: {done:,} {unit} in {time.perf_counter() - started:.1f} s")
