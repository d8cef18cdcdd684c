"""The label-noise section: how confident the predictions are where the given label agrees and
where it disagrees (AliProducts' Fig. 1), the noise found against the truth when the data keeps
its true labels (`webly.report.noise_truth`), the cleaning rounds, the estimated noise per
class, the most confused class pairs and the most suspicious rows with what was done to them.

With a clean stage everything comes from its `NoiseReport` (the verdict on the zoo's
out-of-fold predictions that made the last round's labels); without one, the histogram comes
from the best out-of-fold entry of the run (the ensemble's teacher, else the best member) and
the rest says what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from webly.clean.report import NoiseReport
from webly.config import ReportConfig
from webly.data.store import Dataset
from webly.report.blocks import Chart, Link, Note, Section, Table
from webly.report.noise_truth import true_class_noise, truth_blocks
from webly.report.plots import class_bars, confidence_histogram, heatmap
from webly.report.run_files import RunFiles
from webly.rundir import CleanRecord, EnsembleRecord

NOISIEST_CLASSES = 20  # classes in the per-class noise chart
HEATMAP_CLASSES = 16  # classes on each axis of the confused-pairs heatmap at most
BINS = 20  # confidence histogram bins over [0, 1]
TEXT_CHARS = 140  # characters of a row's text shown
LABELS_SHOWN = 4  # labels of a row listed before "+N more"
_ROUND_COLUMNS = {
    "round": "round",
    "rows_trained": "rows",
    "dropped": "dropped",
    "relabelled": "relabelled",
    "noise_estimate": "noise est. (class mean)",
    "true_noise": "true noisy rows",
    "precision": "precision",
    "recall": "recall",
    "valid_metric": "valid {metric}",
    "test_metric": "test {metric}",
}
_RATES = ("noise_estimate", "true_noise", "precision", "recall")  # shown as percentages


def noise_section(files: RunFiles, config: ReportConfig, rows_file: Link | None = None) -> Section:
    """The label-noise section of the run in ``files``; ``rows_file`` links the file of every
    flagged row, listed after the most suspicious ones."""
    section = Section(
        "noise",
        "Label noise",
        "Where the models disagree with the given labels, and what cleaning did about it.",
    )
    train = files.train
    if train is None:
        section.blocks.append(Note("No data yet: the data stage has not finished.", missing=True))
        return section
    report = files.noise_report
    section.blocks.append(_histogram(files, train, report))
    if report is None:
        if files.recipe.clean is None:
            text = (
                "No clean stage in this recipe: the estimated noise per class, the confused "
                "class pairs and the suspicious rows come from it (add clean: {rounds: 1})."
            )
        else:
            text = "The clean stage has not finished: its verdict is not there yet."
        section.blocks.append(Note(text, missing=True))
        return section
    clean = train.clean_labels
    if clean is not None:
        section.blocks.extend(truth_blocks(report, clean))
    section.blocks.extend(
        [
            _class_noise(report, train, clean),
            _confusions(report, train, config.confused_pairs),
            _rounds(files),
            _suspicious(report, train, config.suspicious_rows),
        ]
    )
    if rows_file is not None:
        section.blocks.append(rows_file)
    return section


def _histogram(files: RunFiles, train: Dataset, report: NoiseReport | None) -> Chart | Note:
    """Confidence of the top prediction, rows whose given label agrees vs disagrees."""
    if report is not None:
        top = iter([(0, report.predicted, report.predicted_prob)])
        source = (
            f"the zoo's out-of-fold predictions, as the clean stage judged them ({report.method})"
        )
    else:
        entry = _best_oof_entry(files)
        if entry is None:
            return Note(
                "No out-of-fold predictions yet: the zoo stage has not finished.", missing=True
            )
        name, recorded = entry
        top = _top1_blocks(files, recorded)
        source = f"the out-of-fold predictions of {name}, the run's best out-of-fold entry"
    edges = np.linspace(0.0, 1.0, BINS + 1)
    agree, disagree = _agreement_counts(train.labels, top, edges)
    return Chart(
        "Confidence where the label agrees and where it disagrees",
        confidence_histogram(edges, agree, disagree, "confidence of the top prediction"),
        f"Training rows by the top prediction's score, from {source}: rows whose given label "
        "disagrees with a confident prediction are the likely noise.",
    )


def _best_oof_entry(files: RunFiles) -> tuple[str, Path] | None:
    """(name, prediction store) of the ensemble's teacher, else the member of best OOF
    figure."""
    ensemble = files.record(EnsembleRecord)
    if ensemble is not None and ensemble.teacher in ensemble.stores:
        return ensemble.teacher, ensemble.stores[ensemble.teacher]
    members = files.member_stores()
    if not members:
        return None
    figures = {m: files.store(p).fold_metrics["oof"]["metric"] for m, p in members.items()}
    best = max(figures, key=lambda m: figures[m])
    return best, members[best]


def _top1_blocks(files: RunFiles, recorded: Path) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first row, (B,) top class, (B,) its score) of a store's out-of-fold split, in blocks."""
    for start, topk in files.store(recorded).oof.blocks():
        yield start, topk.indices[:, 0], topk.scores[:, 0]


def _agreement_counts(
    labels: sp.csr_matrix,
    top: Iterable[tuple[int, np.ndarray, np.ndarray]],
    edges: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms over ``edges`` of the top score of the rows whose labels hold the top class
    (agree) and of the others (disagree; a row with no prediction counts at score 0)."""
    agree = np.zeros(len(edges) - 1, dtype=np.int64)
    disagree = np.zeros_like(agree)
    for start, classes, scores in top:
        rows = np.arange(start, start + len(classes))
        valid = classes >= 0
        hits = np.zeros(len(classes), dtype=bool)
        hits[valid] = np.asarray(labels[rows[valid], classes[valid]]).ravel() > 0
        confidence = np.clip(np.where(valid, scores, 0.0), 0.0, 1.0)
        agree += np.histogram(confidence[hits], edges)[0]
        disagree += np.histogram(confidence[~hits], edges)[0]
    return agree, disagree


def _rounds(files: RunFiles) -> Table:
    """The clean stage's table: a row per round (round 0: the zoo on the given labels)."""
    clean = files.record(CleanRecord)
    metric = clean.metric if clean is not None else "metric"
    rounds = clean.rounds if clean is not None else []
    keys = [k for k in _ROUND_COLUMNS if any(r.get(k) is not None for r in rounds)]
    columns = tuple(_ROUND_COLUMNS[k].format(metric=metric) for k in keys)
    rows = [tuple(_cell(r.get(k), percent=k in _RATES) for k in keys) for r in rounds]
    caption = (
        "Round 0 is the zoo on the given labels; rows: those trained on. Noise est.: the mean "
        "over classes of the estimated share of a class's labels that are wrong; true noisy "
        "rows: the share of rows trained on whose labels differ from the true ones (another "
        "measure: the chart above sets each estimate against its own truth). Precision and "
        "recall of the rows cleaning touched, against the true labels when the data has them; "
        "valid: the out-of-fold predictions against the given labels, the same rows every "
        "round; test: the zoo's average."
    )
    if clean is not None:
        caption += f" Round {clean.best}, the best valid, is the zoo the ensemble uses."
    return Table("Cleaning rounds", columns, rows, frozenset(columns), caption, wide=True)


def _class_noise(report: NoiseReport, train: Dataset, clean: sp.csr_matrix | None) -> Chart:
    """The classes of highest estimated noise rate (of equal rates, those of more labels),
    each with its true rate when the data has ``clean`` labels."""
    rates = report.class_noise_rate
    counts = np.asarray(report.labels.sum(axis=0)).ravel()
    order = np.lexsort((-counts, -rates))[:NOISIEST_CLASSES]  # ties: the class of more rows
    names = [train.class_names[c] for c in order]
    labelled = counts > 0
    mean = float(rates[labelled].mean()) if labelled.any() else 0.0
    return Chart(
        "Estimated noise per class",
        class_bars(
            names,
            rates[order],
            "share of the class's labels that are wrong",
            "class-noise",
            truth=None if clean is None else true_class_noise(report.labels, clean)[order],
        ),
        f"The {len(order)} noisiest of {report.n_classes:,} classes by the estimate; mean over "
        f"the labelled classes {mean:.1%} ({report.method})"
        + ("; the ticks mark each class's true rate." if clean is not None else "."),
    )


def _confusions(report: NoiseReport, train: Dataset, n_pairs: int) -> Chart | Note:
    """A heatmap of the most frequent (given, true) class pairs over the classes they involve
    (the same classes on both axes, at most `HEATMAP_CLASSES`)."""
    pairs: list[tuple[int, int, float]] = []
    classes: dict[int, None] = {}
    for given, true, count in report.confusions:
        if given == true or count <= 0 or len(pairs) == n_pairs:
            continue
        if len({**classes, given: None, true: None}) > HEATMAP_CLASSES:
            break
        pairs.append((given, true, count))
        classes |= {given: None, true: None}
    if not pairs:
        return Note("No confused class pairs: the verdict found none.")
    order = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(order), len(order)))
    for given, true, count in report.confusions:
        if given in order and true in order and given != true:
            matrix[order[given], order[true]] = count
    names = [train.class_names[c] for c in order]
    if report.task.multilabel:
        axes = ("label judged missing", "label judged spurious")
        caption = "Rows where the row's label is judged spurious and the column's missing."
    else:
        axes = ("true class (estimated)", "given label")
        caption = "Estimated rows given the row's label whose true class is the column's."
    return Chart(
        "Most confused class pairs",
        heatmap(matrix, names, names, *axes),
        f"The {len(pairs)} most frequent pairs and every pair among their classes. {caption}",
    )


def _suspicious(report: NoiseReport, train: Dataset, n_rows: int) -> Table | Note:
    """The rows of highest noise score: id, text, labels, prediction, action, label edits."""
    if n_rows == 0:
        return Note("report.suspicious_rows is 0: no rows listed.")
    order = np.argsort(-report.row_score, kind="stable")[:n_rows]
    names = np.asarray(train.class_names, dtype=object)
    ids = train.ids[order]
    texts = train.texts
    actions = report.action_names()
    columns = (
        "#",
        "id",
        *(("text",) if texts is not None else ()),
        "given label(s)",
        "prediction (score)",
        "noise score",
        "action",
        "label changes",
    )
    rows = []
    for rank, (row, row_id) in enumerate(zip(order, ids, strict=True), start=1):
        predicted = report.predicted[row]
        prediction = (
            f"{names[predicted]} ({report.predicted_prob[row]:.2f})" if predicted >= 0 else "none"
        )
        changes = [f"−{names[c]}" for c in report.removed[row].indices]
        changes += [f"+{names[c]}" for c in report.added[row].indices]
        text = (clip_text(str(texts[row])),) if texts is not None else ()
        rows.append(
            (
                str(rank),
                str(row_id),
                *text,
                label_list(names[report.labels[row].indices]),
                prediction,
                f"{report.row_score[row]:.3f}",
                actions[row].replace("_", " "),
                ", ".join(changes) or "none",
            )
        )
    return Table(
        f"The {len(order)} most suspicious training rows",
        columns,
        rows,
        frozenset({"#", "noise score"}),
        "Highest noise score first; the action is what the clean stage did to the row for the "
        "next round (label changes: − removed, + added).",
        wide=True,
    )


def label_list(names: np.ndarray) -> str:
    """Class ``names`` comma-separated, the first `LABELS_SHOWN` and "+N more"."""
    shown = ", ".join(str(n) for n in names[:LABELS_SHOWN])
    more = len(names) - LABELS_SHOWN
    return f"{shown} +{more} more" if more > 0 else shown or "none"


def clip_text(text: str) -> str:
    """``text`` cut to `TEXT_CHARS` characters."""
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def _cell(value: object, percent: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1%}" if percent else f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)
