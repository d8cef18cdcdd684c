"""The HTML report of a run (``webly report RUN``; the pipeline's last stage): results (with
validation and latency beside the test figures), errors by class, label noise (against the
truth when the data knows it), data issues beyond the labels, long tail, accuracy against size,
stage times and the recipe, in one static page that opens offline, and the CSV of every flagged
training row beside it (`build_report`)."""

from webly.report.build import REPORT_FILE, build_report, render_report

__all__ = ["REPORT_FILE", "build_report", "render_report"]
