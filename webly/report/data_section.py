"""The data-issues section: beyond the labels, the training rows that are near-copies of each
other or unlike the rest, and how unevenly the classes are spread, in cleanlab Datalab's words
(near_duplicate, outlier, class_imbalance; `webly.report.data_issues` finds them)."""

from __future__ import annotations

import numpy as np

from webly.data.store import Dataset
from webly.report.blocks import Link, Note, Section, Table
from webly.report.data_issues import (
    DIMS,
    FRAMES,
    NEAR_DUPLICATE,
    OUTLIER,
    ClassImbalance,
    DataIssues,
    FeatureIssues,
)
from webly.report.noise import clip_text, label_list

LISTED = 15  # near-duplicate pairs and outliers listed on the page at most


def data_section(
    train: Dataset | None, issues: DataIssues | None, seed: int, rows_file: Link | None
) -> Section:
    """The data-issues section of the training store ``train`` with what `find_data_issues`
    found in it (with ``seed``); ``rows_file`` links the file of every flagged row."""
    section = Section(
        "data",
        "Data issues",
        "Beyond the labels: training rows that are near-copies of one another or unlike the "
        "rest, and classes far rarer than the others (cleanlab Datalab's near_duplicate, "
        "outlier and class_imbalance).",
    )
    if train is None or issues is None:
        section.blocks.append(Note("No data yet: the data stage has not finished.", missing=True))
        return section
    features = issues.features
    section.blocks.append(_summary(train, features, issues.classes))
    if features is not None:
        section.blocks.append(_examined(train, features, seed))
        section.blocks.append(_pairs(train, features))
        section.blocks.append(_outliers(train, features))
    if rows_file is not None:
        section.blocks.append(rows_file)
    return section


def _summary(train: Dataset, features: FeatureIssues | None, classes: ClassImbalance) -> Table:
    """One row per issue: what is flagged, out of what, and the rule."""
    names = train.class_names
    rows = []
    if features is not None:
        examined = features.rows.size
        for issue, flags, rule in (
            ("near_duplicate", features.near_duplicate,
             f"closer to another row than {NEAR_DUPLICATE:g} x the median distance to the "
             f"nearest row (< {features.near_duplicate_below:.4f})"),
            ("outlier", features.outlier,
             f"mean distance to the {features.k} nearest rows over Q3 + "
             f"{1 / OUTLIER - 1:.1f} x IQR of those means (> {features.outlier_above:.4f})"),
        ):  # fmt: skip
            flagged = int(flags.sum())
            rows.append(
                (issue, f"{flagged:,} rows", f"{flagged / examined:.2%} of {examined:,} examined",
                 rule)
            )  # fmt: skip
    labels = int(classes.counts.sum())
    rarest = f"{names[classes.rarest]}: {classes.counts[classes.rarest]:,} labels"
    rows.append(
        (
            "class_imbalance",
            f"{classes.n_under:,} classes" if classes.flagged else "none",
            f"rarest {rarest} ({classes.share:.3%} of {labels:,} labels)",
            f"a class under {classes.below:.3%} of the labels (0.1 / {classes.counts.size:,} "
            "classes, were they spread evenly)",
        )
    )
    return Table(
        "Issues found",
        ("issue", "flagged", "of", "rule"),
        rows,
        caption="Datalab's rules and thresholds; class_imbalance counts every training row's "
        "labels (the long-tail section shows the whole curve).",
        wide=True,
    )


def _examined(train: Dataset, features: FeatureIssues, seed: int) -> Note:
    """Which rows and which features the near-duplicates and outliers were looked for in."""
    if features.rows.size < features.n_rows:
        rows = (
            f"{features.rows.size:,} of the {features.n_rows:,} training rows, drawn at random "
            f"(seed {seed}): a pair of near-duplicates is found only when both rows are drawn"
        )
    else:
        rows = f"all {features.n_rows:,} training rows"
    video = [f.name for f in train.layout.features if f.level == "video"]
    groups = (
        f"the video-level features ({', '.join(video)})"
        if video
        else f"the mean of up to {FRAMES} evenly spaced frames"
    )
    return Note(
        f"Near-duplicates and outliers were looked for in {rows}; each row is {groups}, scaled "
        f"to unit length (cosine geometry) and projected onto {DIMS} random directions when "
        f"wider, then compared with its {features.k} nearest rows."
    )


def _pairs(train: Dataset, features: FeatureIssues) -> Table | Note:
    """The closest near-duplicate pairs, each once, with both rows' labels."""
    near = np.flatnonzero(features.near_duplicate)
    if near.size == 0:
        return Note("No near-duplicates among the rows examined.")
    order = near[np.argsort(features.nearest_distance[near], kind="stable")]
    ids, names = train.ids, np.asarray(train.class_names, dtype=object)
    labels = train.labels
    seen: set[tuple[int, int]] = set()
    rows = []
    for at in order:
        row, other = int(features.rows[at]), int(features.nearest[at])
        pair = (min(row, other), max(row, other))
        if pair in seen:
            continue
        seen.add(pair)
        mine, theirs = labels[row].indices, labels[other].indices
        rows.append(
            (
                str(ids[row]),
                str(ids[other]),
                f"{features.nearest_distance[at]:.4f}",
                label_list(names[mine]),
                label_list(names[theirs]),
                "yes" if set(mine) == set(theirs) else "no",
            )
        )
        if len(rows) == LISTED:
            break
    columns = ("id", "near-duplicate of", "distance", "labels", "its labels", "same labels")
    return Table(
        "Closest near-duplicates",
        columns,
        rows,
        frozenset({"distance"}),
        f"{near.size:,} rows flagged; the {len(rows)} closest pairs. Near-copies with different "
        "labels are label noise, or classes the features cannot tell apart; near-copies "
        "across the folds inflate the out-of-fold figures.",
        wide=True,
    )


def _outliers(train: Dataset, features: FeatureIssues) -> Table | Note:
    """The rows farthest from their neighbours, with their labels (and text)."""
    far = np.flatnonzero(features.outlier)
    if far.size == 0:
        return Note("No outliers among the rows examined.")
    order = far[np.argsort(-features.mean_distance[far], kind="stable")][:LISTED]
    names = np.asarray(train.class_names, dtype=object)
    texts, ids, labels = train.texts, train.ids, train.labels
    columns = ("id", *(("text",) if texts is not None else ()), "labels", "mean distance")
    rows = []
    for at in order:
        row = int(features.rows[at])
        text = (clip_text(str(texts[row])),) if texts is not None else ()
        rows.append(
            (str(ids[row]), *text, label_list(names[labels[row].indices]),
             f"{features.mean_distance[at]:.4f}")
        )  # fmt: skip
    return Table(
        "Farthest outliers",
        columns,
        rows,
        frozenset({"mean distance"}),
        f"{far.size:,} rows flagged; the {len(rows)} farthest from their {features.k} nearest "
        "rows: mislabelled, corrupt or rare inputs worth a look.",
        wide=True,
    )
