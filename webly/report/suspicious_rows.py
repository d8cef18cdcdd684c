"""Every flagged training row as CSV, written beside the report page (``report.html`` ->
``report.suspicious_rows.csv``) in one step, for a spreadsheet or a relabelling tool.

One line per (row, detector), label issues first (highest noise score first), then
near-duplicates (closest first), then outliers (farthest first). Columns:

- ``row``: the row's position in the training store; ``id``: its id;
- ``detector``: ``label`` (the clean stage's verdict), ``near_duplicate`` or ``outlier``
  (`webly.report.data_issues`, on the rows it examined);
- ``score``: label: the noise score in [0, 1], higher is more suspicious; near_duplicate: the
  distance to the nearest row; outlier: the mean distance to the nearest rows;
- ``given_labels``: the class names of the labels the verdict judged (near_duplicate, outlier:
  the given labels), ``|``-separated;
- ``suggested_labels``: label: the labels after the clean stage's repair when it changed them,
  else the top prediction; near_duplicate: the nearest row's labels; outlier: empty;
- ``action``: what the clean stage did to the row (label only);
- ``detail``: label: the top prediction and its score; near_duplicate: the nearest row's id;
- ``text``: the row's text, when the store has texts.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from webly._fs import replaced_file
from webly.clean.report import NoiseReport
from webly.data.store import Dataset
from webly.report.data_issues import FeatureIssues

SUFFIX = ".suspicious_rows.csv"
COLUMNS = ("row", "id", "detector", "score", "given_labels", "suggested_labels", "action",
           "detail")  # fmt: skip
SEPARATOR = "|"  # between the class names of one cell


def rows_file(page: Path) -> Path:
    """The CSV beside the report page ``page``."""
    return page.with_name(page.stem + SUFFIX)


def flagged_counts(report: NoiseReport | None, issues: FeatureIssues | None) -> dict[str, int]:
    """Lines the file holds for each detector."""
    counts = {"label": int(report.is_noisy.sum()) if report is not None else 0}
    if issues is not None:
        counts |= {
            "near_duplicate": int(issues.near_duplicate.sum()),
            "outlier": int(issues.outlier.sum()),
        }
    return counts


def write_suspicious_rows(
    path: Path, train: Dataset, report: NoiseReport | None, issues: FeatureIssues | None
) -> int:
    """Write the file at ``path`` (replaced in one step: a temporary beside it, fsync, rename)
    from the clean stage's ``report`` and the feature ``issues``; returns its lines, the
    header left out."""
    names = np.asarray(train.class_names, dtype=object)
    ids, texts = train.ids, train.texts
    written = 0
    with replaced_file(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS + (("text",) if texts is not None else ()))
        for row, line in _lines(train.labels, names, ids, report, issues):
            writer.writerow((row, *line, *((texts[row],) if texts is not None else ())))
            written += 1
    return written


def _lines(
    given: sp.csr_matrix,
    names: np.ndarray,
    ids: np.ndarray,
    report: NoiseReport | None,
    issues: FeatureIssues | None,
) -> Iterator[tuple[int, tuple[object, ...]]]:
    """The file's lines as (row, the other cells but the text)."""

    def listed(labels: sp.csr_matrix, row: int) -> str:
        return SEPARATOR.join(names[labels.indices[labels.indptr[row] : labels.indptr[row + 1]]])

    if report is not None:
        actions = report.action_names()
        repaired = report.cleaned_labels()
        edited = (np.diff(report.removed.indptr) + np.diff(report.added.indptr)) > 0
        flagged = np.flatnonzero(report.is_noisy)
        for row in flagged[np.argsort(-report.row_score[flagged], kind="stable")]:
            top = int(report.predicted[row])
            predicted = str(names[top]) if top >= 0 else ""
            yield int(row), (
                ids[row], "label", f"{report.row_score[row]:.4f}",
                listed(report.labels, row), listed(repaired, row) if edited[row] else predicted,
                actions[row],
                f"predicted {predicted} ({report.predicted_prob[row]:.3f})" if predicted
                else "no prediction",
            )  # fmt: skip
    if issues is None:
        return
    near = np.flatnonzero(issues.near_duplicate)
    for at in near[np.argsort(issues.nearest_distance[near], kind="stable")]:
        row, other = int(issues.rows[at]), int(issues.nearest[at])
        yield row, (
            ids[row], "near_duplicate", f"{issues.nearest_distance[at]:.4f}",
            listed(given, row), listed(given, other), "", f"nearest: {ids[other]}",
        )  # fmt: skip
    far = np.flatnonzero(issues.outlier)
    for at in far[np.argsort(-issues.mean_distance[far], kind="stable")]:
        row = int(issues.rows[at])
        yield row, (
            ids[row], "outlier", f"{issues.mean_distance[at]:.4f}", listed(given, row), "",
            "", f"mean distance to the {issues.k} nearest rows",
        )  # fmt: skip
