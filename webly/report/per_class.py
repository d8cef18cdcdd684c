"""The errors-by-class section: on the split the run is scored on (the test split with its
clean labels when it has them), the model the report follows (`RunFiles.shown_model`) as a
confusion matrix (multi-class) and as each class's precision and recall.

Multi-class: a row's prediction is its top class; the matrix shows the classes most involved in
errors (all of them when they fit) and sums the rest as "other", so its cells add up to the rows
scored. Multi-label: a class is predicted for a row when it scores at least `THRESHOLD`; there is
no matrix (a row's labels are not one class).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from webly.core import TopK, select_top_k
from webly.report.blocks import NO_PREDICTIONS, Chart, Note, Section, Table
from webly.report.plots import heatmap
from webly.report.run_files import RunFiles

MATRIX_CLASSES = 12  # classes named on each axis of the confusion matrix at most
WORST_CLASSES = 25  # classes listed in the precision / recall table
THRESHOLD = 0.5  # multi-label: the score from which a class counts as predicted
OTHER = "other"


def confusion_counts(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> sp.csr_matrix:
    """(n_classes, n_classes + 1) int64 sparse counts of the rows given true class ``i``
    (``true``: (n,) ids) and predicted ``j`` (``predicted``: (n,) ids, -1 for no prediction:
    the last column); sparse, as 50,000 classes would make a dense matrix of 20 GB."""
    column = np.where(predicted >= 0, predicted, n_classes)
    ones = np.ones(true.size, dtype=np.int64)
    return sp.csr_matrix((ones, (true, column)), shape=(n_classes, n_classes + 1))


def shown_confusions(counts: sp.csr_matrix, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """The part of ``counts`` (`confusion_counts`) to draw: every class when at most
    `MATRIX_CLASSES` (+1) are, else the `MATRIX_CLASSES` most involved in errors (as the true
    class or the predicted one) with the rest summed into an ``other`` row and column (no
    prediction goes to ``other`` too). Returns the (m, m) dense matrix, whose cells sum to
    ``counts``', and the m class names."""
    n_classes = counts.shape[0]
    right = counts.diagonal()
    unpredicted = counts[:, n_classes].toarray().ravel()
    square = counts[:, :n_classes]
    involved = (
        np.asarray(square.sum(axis=0)).ravel() + np.asarray(square.sum(axis=1)).ravel()
        - 2 * right + unpredicted
    )  # fmt: skip
    if n_classes <= MATRIX_CLASSES + 1 and not unpredicted.any():
        return square.toarray(), names
    keep = np.argsort(-involved, kind="stable")[:MATRIX_CLASSES]
    keep = keep[involved[keep] > 0] if (involved[keep] > 0).any() else keep
    kept_rows = counts[keep].toarray()  # (m, n_classes + 1)
    rest_row = np.asarray(counts.sum(axis=0)).ravel() - kept_rows.sum(axis=0)
    rows = np.vstack([kept_rows, rest_row])
    rest = np.ones(n_classes + 1, dtype=bool)
    rest[keep] = False
    shown = np.hstack([rows[:, keep], rows[:, rest].sum(axis=1, keepdims=True)])
    return shown, [names[c] for c in keep] + [OTHER]


def precision_recall(
    hits: np.ndarray, predicted: np.ndarray, positives: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class (each argument (n_classes,) counts: right predictions, predictions, true
    rows): precision, recall and F1, each (n_classes,) float64; precision is NaN for a class
    never predicted, recall and F1 for a class without a true row."""
    precision = np.divide(hits, predicted, out=np.full(hits.shape, np.nan), where=predicted > 0)
    recall = np.divide(hits, positives, out=np.full(hits.shape, np.nan), where=positives > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.full(hits.shape, np.nan), where=total > 0)
    f1[recall == 0] = 0.0  # a class never found right: F1 0, whatever its precision
    return precision, recall, f1


def per_class_section(files: RunFiles) -> Section:
    """The errors-by-class section of the run in ``files``."""
    section = Section(
        "classes",
        "Errors by class",
        "Which classes the model confuses, and how precise and complete each class's "
        "predictions are.",
    )
    shown = files.shown_scored()
    if shown is None:
        section.blocks.append(NO_PREDICTIONS)
        return section
    train, scored, name, recorded = shown
    topk = files.store(recorded).topk(scored.split)
    labels = sp.csr_matrix(scored.labels)
    names = train.class_names
    on = (
        f"{name} on {labels.shape[0]:,} {scored.split} rows ({scored.which} labels)"
        if scored.split != "oof"
        else f"{name} on the training rows out of fold (given labels: no test labels)"
    )
    if not train.task.multilabel:
        hits, predicted, positives = _multiclass(section, topk, labels, names, on)
        rule = "its top class"
    else:
        hits, predicted, positives = _multilabel(topk, labels)
        rule = f"every class it scores {THRESHOLD:g} or more"
        section.blocks.append(
            Note(
                "Multi-label data: no confusion matrix (a row's labels are not one class); "
                f"a class counts as predicted for a row when the model scores it {THRESHOLD:g} "
                "or more."
            )
        )
    section.blocks.append(_worst_classes(hits, predicted, positives, names, on, rule))
    return section


def _multiclass(
    section: Section, topk: TopK, labels: sp.csr_matrix, names: list[str], on: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add the confusion matrix to ``section``; the per-class counts of `precision_recall`."""
    labelled = np.diff(labels.indptr) > 0
    true = labels.indices[labels.indptr[:-1][labelled]]  # each labelled row's (first) class
    top1 = select_top_k(topk, 1, sort=True)[0][labelled, 0]
    n_classes = labels.shape[1]
    counts = confusion_counts(true, top1, n_classes)
    matrix, shown = shown_confusions(counts, names)
    unlabelled = int((~labelled).sum())
    section.blocks.append(
        Chart(
            "Confusion matrix",
            heatmap(matrix, shown, shown, "predicted class", "true class", "rows", "test-matrix"),
            f"Rows by true class (down) and top predicted class (across), {on}; the diagonal "
            f"is right. {int(matrix.sum()):,} rows"
            + (f" ({unlabelled:,} without a label left out)" if unlabelled else "")
            + (
                f"; the {len(shown) - 1} classes most involved in errors are named, the other "
                f"{n_classes - len(shown) + 1:,} (and rows with no prediction) summed as other."
                if shown[-1] == OTHER
                else "."
            ),
            wide=True,
        )
    )
    predicted = np.asarray(counts[:, :n_classes].sum(axis=0)).ravel()
    return counts.diagonal(), predicted, np.asarray(counts.sum(axis=1)).ravel()


def _multilabel(topk: TopK, labels: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: rows where it is predicted and true, predicted, true."""
    n_rows, n_classes = labels.shape
    chosen = (topk.indices >= 0) & (topk.scores >= THRESHOLD)
    rows = np.broadcast_to(np.arange(n_rows)[:, None], topk.indices.shape)[chosen]
    predicted = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows, topk.indices[chosen])),
        shape=(n_rows, n_classes),
    )
    right = predicted.multiply(labels.astype(bool)).tocsr()
    right.eliminate_zeros()

    def per_class(matrix: sp.csr_matrix) -> np.ndarray:
        return np.bincount(matrix.indices, minlength=n_classes)

    return per_class(right), per_class(predicted), per_class(labels)


def _worst_classes(
    hits: np.ndarray,
    predicted: np.ndarray,
    positives: np.ndarray,
    names: list[str],
    on: str,
    rule: str,
) -> Table:
    """The classes of lowest F1 (of equal F1, those of more rows first), with their counts."""
    precision, recall, f1 = precision_recall(hits, predicted, positives)
    present = np.flatnonzero(positives > 0)
    order = present[np.lexsort((-positives[present], np.nan_to_num(f1[present], nan=0.0)))]
    shown = order[:WORST_CLASSES]
    columns = ("class", "rows", "predicted", "precision", "recall", "F1")
    rows = [
        (names[c], f"{positives[c]:,}", f"{predicted[c]:,}", _rate(precision[c]),
         _rate(recall[c]), _rate(f1[c]))
        for c in shown
    ]  # fmt: skip
    never = int(((predicted == 0) & (positives > 0)).sum())
    caption = (
        f"{on}; a row's prediction: {rule}. Means over the {present.size:,} classes with a "
        f"row: precision {_rate(_mean(precision[present]))} (leaving out the {never:,} never "
        f"predicted), recall {_rate(_mean(recall[present]))}, F1 {_rate(_mean(f1[present]))}."
    )
    return Table(
        f"The {len(shown)} classes of lowest F1",
        columns,
        rows,
        frozenset(columns[1:]),
        caption,
        wide=True,
    )


def _mean(values: np.ndarray) -> float:
    """Mean of the defined (not NaN) ``values``; NaN without any."""
    known = values[~np.isnan(values)]
    return float(known.mean()) if known.size else float("nan")


def _rate(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"
