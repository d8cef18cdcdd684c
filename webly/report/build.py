"""`build_report`: a run directory to one static HTML file that opens offline.

The page is rendered from ``templates/report.html`` (Jinja2, CSS inline, no script) with the
charts inline as SVG, so it fetches nothing: it can be mailed, archived or opened from a
laptop with no network. Its figures come only from the run's stage manifests and the
artifacts they point at (`RunFiles`); each section says what the run lacks for it.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from webly import __version__
from webly.errors import ConfigError
from webly.report.blocks import Section
from webly.report.compression import compression_section
from webly.report.long_tail import long_tail_section
from webly.report.noise import noise_section
from webly.report.results import results_section
from webly.report.run_files import REPORT_STAGE, RunFiles
from webly.report.summary import summary_cards
from webly.report.timing import run_section
from webly.stages.context import write_atomic

REPORT_FILE = "report.html"
TEMPLATE = "report.html"  # in templates/


def build_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of the run directory ``run`` to ``out`` (default
    ``RUN/report/report.html``) atomically and return its path.

    Works on a finished or an unfinished run (the sections say what is missing); raises
    `DataError` when ``run`` is not a run directory and `ConfigError` when ``out`` is a
    folder, before anything is written. The recipe's ``report`` section sets how many
    suspicious rows and confused pairs are listed.
    """
    if out is not None and Path(out).is_dir():
        raise ConfigError(
            f"--out {out} is a folder; give the report's file, e.g. {out}/report.html"
        )
    files = RunFiles.open(run)
    path = Path(out) if out is not None else files.run / REPORT_STAGE / REPORT_FILE
    html = render_report(files)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, html.encode())
    return path


def render_report(files: RunFiles) -> str:
    """The report page of the run in ``files``, as HTML text."""
    sections: list[Section] = [
        results_section(files),
        noise_section(files, files.recipe.report),
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
    )
