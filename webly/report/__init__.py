"""The HTML report of a run (``webly report RUN``; the pipeline's last stage): results, label
noise, long tail, accuracy against size, stage times and the recipe, in one static page that
opens offline (`build_report`)."""

from webly.report.build import REPORT_FILE, build_report, render_report

__all__ = ["REPORT_FILE", "build_report", "render_report"]
