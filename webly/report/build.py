"""`build_report`: a run directory to one static HTML file that opens offline.

The page is rendered from ``templates/report.html`` (Jinja2, CSS inline, no script) with the
charts inline as SVG, so it fetches nothing: it can be mailed, archived or opened from a
laptop with no network. Its figures come from the run's stage manifests and the artifacts they
point at (`RunFiles`), and from a bounded sample of the training features (`find_data_issues`);
each section says what the run lacks for it. Beside the page goes the CSV of every flagged
training row (`webly.report.suspicious_rows`), which the page links to.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from webly import __version__
from webly._fs import write_atomic
from webly.errors import ConfigError
from webly.report.blocks import Link, Section
from webly.report.compression import compression_section
from webly.report.data_issues import DataIssues, find_data_issues
from webly.report.data_section import data_section
from webly.report.long_tail import long_tail_section
from webly.report.noise import noise_section
from webly.report.per_class import per_class_section
from webly.report.results import results_section
from webly.report.run_files import REPORT_STAGE, RunFiles
from webly.report.summary import summary_cards
from webly.report.suspicious_rows import flagged_counts, rows_file, write_suspicious_rows
from webly.report.timing import run_section
from webly.rundir import StageStatus

REPORT_FILE = "report.html"
TEMPLATE = "report.html"  # in templates/


def build_report(
    run: str | Path, out: str | Path | None = None, statuses: Sequence[StageStatus] | None = None
) -> Path:
    """Write the HTML report of the run directory ``run`` to ``out`` (default
    ``RUN/report/report.html``) atomically and return its path; once the data stage has
    finished, the CSV of every flagged training row goes beside it first (`rows_file`).
    ``statuses``: the stages' states to show (`webly.pipeline.run_status`, which tells the
    stale ones); by default as their manifests record them.

    Works on a finished or an unfinished run (the sections say what is missing); raises
    `DataError` when ``run`` is not a run directory and `ConfigError` when ``out`` or the
    CSV beside it is a folder, before anything is written. The recipe's ``report`` section
    sets how many suspicious rows and confused pairs are listed.
    """
    if out is not None and Path(out).is_dir():
        raise ConfigError(
            f"--out {out} is a folder; give the report's file, e.g. {out}/report.html"
        )
    files = RunFiles.open(run, statuses)
    path = Path(out) if out is not None else files.run / REPORT_STAGE / REPORT_FILE
    flagged = rows_file(path)
    if flagged.is_dir():
        raise ConfigError(
            f"{flagged} is a folder, where the report writes its flagged rows; move it away or "
            "give the report another name with --out"
        )
    train = files.train
    issues = find_data_issues(train, files.recipe.seed) if train is not None else None
    html = render_report(files, issues, flagged.name if issues is not None else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    if train is not None and issues is not None:  # the rows first: the page links to them
        write_suspicious_rows(flagged, train, files.noise_report, issues.features)
    write_atomic(path, html.encode())
    return path


def render_report(
    files: RunFiles, issues: DataIssues | None = None, flagged: str | None = None
) -> str:
    """The report page of the run in ``files``, as HTML text, with the data ``issues``
    `find_data_issues` found in its training store (None: no data-issues figures) and a link to
    the CSV of the flagged rows, ``flagged`` (a name beside the page; None: no link)."""
    link = None
    if flagged is not None:
        counts = flagged_counts(files.noise_report, issues.features if issues else None)
        link = Link(
            f"Every flagged training row ({sum(counts.values()):,} lines, CSV)",
            flagged,
            ", ".join(f"{detector}: {n:,}" for detector, n in counts.items())
            + f"; written beside this page as {flagged}.",
        )
    sections: list[Section] = [
        results_section(files),
        per_class_section(files),
        noise_section(files, files.recipe.report, link),
        data_section(files.train, issues, files.recipe.seed, link),
        long_tail_section(files),
        compression_section(files),
        run_section(files),
    ]
    environment = Environment(
        loader=PackageLoader("webly.report", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return environment.get_template(TEMPLATE).render(
        run=str(files.run.resolve()),
        generated=now,
        version=__version__,
        cards=summary_cards(files),
        sections=sections,
        missing=[text for section in sections for text in section.missing],
        warnings=[text for section in sections for text in section.warnings],
    )
