"""What the report tells someone deciding whether to trust the data and the model (issue 22,
item 5): the noise found against the truth, the test confusion matrix and per-class precision
and recall, validation and latency beside each model's test figure, class names on the
long-tail axis, the CSV of every flagged row, and Datalab's near_duplicate, outlier and
class_imbalance issues. Each figure is checked against one computed here another way."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape
from sklearn.metrics import precision_recall_fscore_support

from webly.core import select_top_k
from webly.data import Batch, Dataset, DatasetWriter, FeatureSpec, Layout
from webly.errors import ConfigError
from webly.metrics.evaluate import format_cell
from webly.report import build_report
from webly.report.blocks import Chart, Note, Table
from webly.report.data_issues import (
    class_imbalance,
    feature_issues,
    find_data_issues,
    find_feature_issues,
)
from webly.report.data_section import data_section
from webly.report.latency import member_latencies
from webly.report.long_tail import long_tail_section
from webly.report.noise_truth import NoiseShare, noise_against_truth
from webly.report.per_class import (
    OTHER,
    confusion_counts,
    per_class_section,
    shown_confusions,
)
from webly.report.results import results_section
from webly.report.run_files import RunFiles


def block(blocks: list, kind: type, title: str):  # type: ignore[no-untyped-def]
    (found,) = (b for b in blocks if isinstance(b, kind) and b.title == title)
    return found


def manifest(run: Path, stage: str) -> dict:
    loaded: dict = json.loads((run / stage / "manifest.json").read_text())
    return loaded


# --------------------------------------------------------------------------- noise vs truth


def test_the_noise_found_is_set_against_the_truth(full_run: Path) -> None:
    files = RunFiles.open(full_run)
    report, train = files.noise_report, files.train
    assert report is not None and train is not None and train.clean_labels is not None
    judged, clean = report.labels, train.clean_labels
    given = [set(judged[r].indices) for r in range(report.n_samples)]
    true = [set(clean[r].indices) for r in range(report.n_samples)]
    wrong_rows = np.mean([g != t for g, t in zip(given, true, strict=True)])
    labelled = sorted({c for g in given for c in g})
    class_rates = [
        sum(c in g and c not in t for g, t in zip(given, true, strict=True))
        / sum(c in g for g in given)
        for c in labelled
    ]
    truth = noise_against_truth(report, clean)
    rows, classes = truth.shares  # multi-class data: two measures
    assert rows.true == pytest.approx(wrong_rows) and rows.found == report.is_noisy.mean()
    assert classes.true == pytest.approx(np.mean(class_rates))
    summary = manifest(full_run, "clean")["summary"]
    judged_round = summary["rounds"][max(summary["best"] - 1, 0)]
    assert classes.found == pytest.approx(judged_round["noise_estimate"])  # the run's estimate
    assert truth.detection.n_true == sum(g != t for g, t in zip(given, true, strict=True))
    html = (full_run / "report" / "report.html").read_text()
    assert "Noise found against the truth" in html
    assert f">{rows.true:.1%}<" in html and f">{classes.found:.1%}<" in html
    far = [s for s in truth.shares if s.far]
    assert ("Check before trusting the figures" in html) is bool(far)
    for share in far:
        text = f"{share.measure}: found {share.found:.1%}, true {share.true:.1%}"
        assert str(escape(text)) in html


@pytest.mark.parametrize(
    ("found", "true", "far"),
    [(0.073, 0.675, True), (0.30, 0.40, False), (0.5, 0.2, True), (0.004, 0.009, False)],
)
def test_an_estimate_far_from_the_truth_is_flagged(found: float, true: float, far: bool) -> None:
    assert NoiseShare("rows", found, true).far is far


# --------------------------------------------------------------------------- errors by class


def test_the_confusion_matrix_counts_every_test_row(full_run: Path) -> None:
    files = RunFiles.open(full_run)
    scored, train, results = files.scored, files.train, files.results
    assert scored is not None and train is not None and results is not None
    assert scored.split == "test"
    name, recorded = files.shown_model("test") or ("", "")
    assert name == "re-balanced final model mlp"  # results.json's "longtail: mlp"
    true = scored.labels.argmax(axis=1).A.ravel()
    top1 = select_top_k(files.store(recorded).topk("test"), 1, sort=True)[0][:, 0]
    counts = confusion_counts(true, top1, train.n_classes)
    assert counts.sum() == scored.labels.shape[0] == results["rows_scored"]
    accuracy = {r["model"]: r["accuracy"] for r in results["rows"]}["longtail: mlp"]
    assert counts.diagonal().sum() / counts.sum() == pytest.approx(accuracy)
    shown, names = shown_confusions(counts, train.class_names)
    assert shown.sum() == counts.sum()
    chart = block(per_class_section(files).blocks, Chart, "Confusion matrix")
    assert f"{counts.sum():,} rows" in chart.caption
    assert all(f">{n}<" in chart.svg for n in names)
    assert f">{int(np.diag(shown).max())}<" in chart.svg


def test_other_sums_the_classes_left_out() -> None:
    rng = np.random.default_rng(0)
    true = rng.integers(0, 30, size=500)
    predicted = np.where(rng.random(500) < 0.6, true, rng.integers(-1, 30, size=500))
    counts = confusion_counts(true, predicted, 30)
    dense = np.zeros((30, 31), dtype=int)
    np.add.at(dense, (true, np.where(predicted < 0, 30, predicted)), 1)
    assert (counts.toarray() == dense).all()
    shown, names = shown_confusions(counts, [f"c{i}" for i in range(30)])
    assert shown.shape == (13, 13) and names[-1] == OTHER and shown.sum() == 500
    kept = [int(n[1:]) for n in names[:-1]]
    assert (shown[:-1, :-1] == dense[np.ix_(kept, kept)]).all()
    assert (shown[:-1, -1] == dense[kept].sum(axis=1) - dense[np.ix_(kept, kept)].sum(axis=1)).all()


def test_per_class_precision_and_recall_match_scikit_learn(full_run: Path) -> None:
    files = RunFiles.open(full_run)
    scored, train = files.scored, files.train
    assert scored is not None and train is not None
    _, recorded = files.shown_model("test") or ("", "")
    true = scored.labels.argmax(axis=1).A.ravel()
    top1 = select_top_k(files.store(recorded).topk("test"), 1, sort=True)[0][:, 0]
    precision, recall, f1, support = precision_recall_fscore_support(
        true, top1, labels=np.arange(train.n_classes), zero_division=np.nan
    )
    table = block(per_class_section(files).blocks, Table, "The 12 classes of lowest F1")
    assert table.columns == ("class", "rows", "predicted", "precision", "recall", "F1")
    names = train.class_names
    for cells in table.rows:
        c = names.index(cells[0])
        assert cells[1] == f"{support[c]:,}"
        for cell, value in zip(cells[3:], (precision[c], recall[c], f1[c]), strict=True):
            assert cell == ("n/a" if np.isnan(value) else f"{value:.3f}")
    shown = [float(row[5]) for row in table.rows]
    assert shown == sorted(shown)  # lowest F1 first


def test_a_multilabel_run_has_no_matrix_but_per_class_figures(zoo_run: Path) -> None:
    section = per_class_section(RunFiles.open(zoo_run))
    assert not [b for b in section.blocks if isinstance(b, Chart)]
    (note,) = (b for b in section.blocks if isinstance(b, Note))
    assert "no confusion matrix" in note.text and not note.missing
    (table,) = (b for b in section.blocks if isinstance(b, Table))
    assert table.columns[-3:] == ("precision", "recall", "F1")


# --------------------------------------------------------------------------- results table


def test_each_model_shows_validation_and_latency_beside_its_test_figure(full_run: Path) -> None:
    files = RunFiles.open(full_run)
    table = block(results_section(files).blocks, Table, "Every model")
    columns = table.columns
    assert columns[2:4] == ("validation", "test") and "ms/row" in columns
    cells = {row[0]: dict(zip(columns, row, strict=True)) for row in table.rows}
    frontier = json.loads((full_run / "compress" / "choice" / "frontier.json").read_text())
    timed = {c["name"]: c["latency_ms"] for c in frontier["candidates"]}
    for member in ("logistic", "mlp"):
        store = files.store(full_run / manifest(full_run, "zoo")["outputs"]["members"][member])
        assert cells[member]["validation"] == format_cell(
            "accuracy", store.fold_metrics["oof"]["metric"]
        )
        assert cells[member]["ms/row"] == f"{timed[f'member {member}']:.3g}"
    entries = manifest(full_run, "ensemble")["summary"]["entries"]
    assert cells["stacker"]["validation"] == format_cell(
        "accuracy", entries["stacker"]["oof_metric"]
    )
    assert cells["stacker"]["ms/row"] == f"{timed['stacker']:.3g}"
    assert cells["blend: greedy"]["ms/row"] == f"{timed['blend greedy']:.3g}"
    assert cells["student: mlp_student"]["ms/row"] == "—"  # never a compress candidate
    assert "—: not a model the compress stage timed" in table.caption


def test_without_a_compress_stage_the_latency_says_how_to_get_it(zoo_run: Path) -> None:
    table = block(results_section(RunFiles.open(zoo_run)).blocks, Table, "Every model")
    assert {row[table.columns.index("ms/row")] for row in table.rows} == {"—"}
    assert "add compress: {max_size: 1GB}" in table.caption


def test_member_latencies_are_solved_from_the_timed_sums() -> None:
    def candidate(members: list[str], ms: float | None, compression: str | None = None) -> dict:
        return {"kind": "ensemble", "members": members, "latency_ms": ms,
                "compression": compression}  # fmt: skip

    found = member_latencies(
        [
            candidate(["a"], 1.0),
            candidate(["a", "b"], 3.0),
            candidate(["c", "d"], 5.0),  # c and d only ever timed together
            candidate(["a"], 0.2, "int8_partial"),  # compressed: another model
            candidate(["e"], None),  # not timed
        ]
    )
    assert found == pytest.approx({"a": 1.0, "b": 2.0})


# --------------------------------------------------------------------------- long tail


def test_the_long_tail_axis_names_the_classes(full_run: Path) -> None:
    files = RunFiles.open(full_run)
    chart = block(long_tail_section(files).blocks, Chart, "Class frequency and per-class figure")
    assert files.train is not None
    assert all(f">{name}<" in chart.svg for name in files.train.class_names)


# --------------------------------------------------------------------------- flagged rows


@pytest.mark.slow  # builds a whole report
def test_the_csv_lists_every_flagged_row(full_run: Path, tmp_path: Path) -> None:
    page = build_report(full_run, tmp_path / "page.html")
    rows_csv = tmp_path / "page.suspicious_rows.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html", rows_csv.name]
    with rows_csv.open(newline="") as handle:
        lines = list(csv.DictReader(handle))
    files = RunFiles.open(full_run)
    report, train = files.noise_report, files.train
    assert report is not None and train is not None
    issues = find_data_issues(train, files.recipe.seed).features
    assert issues is not None
    by_detector: dict[str, list[int]] = {}
    for line in lines:
        by_detector.setdefault(line["detector"], []).append(int(line["row"]))
        assert line["id"] == train.ids[int(line["row"])]
        assert line["text"] == train.texts[int(line["row"])]  # type: ignore[index]
    assert sorted(by_detector["label"]) == list(np.flatnonzero(report.is_noisy))
    assert sorted(by_detector["outlier"]) == list(issues.rows[issues.outlier])
    assert "near_duplicate" not in by_detector and not issues.near_duplicate.any()
    scores = [float(line["score"]) for line in lines if line["detector"] == "label"]
    assert scores == sorted(scores, reverse=True)
    names = train.class_names
    first = next(line for line in lines if line["detector"] == "label")
    row = int(first["row"])
    assert first["given_labels"] == "|".join(names[c] for c in report.labels[row].indices)
    assert first["action"] == report.action_names()[row]
    html = page.read_text()
    assert f'href="{rows_csv.name}" download' in html
    assert f"({len(lines):,} lines, CSV)" in html


def test_a_folder_in_the_csv_s_place_is_refused(full_run: Path, tmp_path: Path) -> None:
    (tmp_path / "page.suspicious_rows.csv").mkdir()
    with pytest.raises(ConfigError, match=r"page\.suspicious_rows\.csv is a folder"):
        build_report(full_run, tmp_path / "page.html")
    assert not (tmp_path / "page.html").exists()


# --------------------------------------------------------------------------- data issues


def store_with_a_copy(folder: Path, layout: Layout, rng: np.random.Generator) -> Dataset:
    """200 random rows of ``layout``; row 150 is row 30 again (features and frames), with
    other labels."""
    n = 200
    labels = [[int(c)] for c in rng.integers(0, layout.n_classes, size=n)]
    labels[150] = [(labels[30][0] + 1) % layout.n_classes]
    lengths = rng.integers(4, 9, size=n)  # frames a row, the same in every frame group
    features = {
        s.name: rng.normal(size=(n, s.dim)).astype(np.float32)
        for s in layout.features
        if s.level == "video"
    }
    frames = {
        s.name: [rng.normal(size=(int(t), s.dim)).astype(np.float32) for t in lengths]
        for s in layout.features
        if s.level == "frame"
    }
    for values in (*features.values(), *frames.values()):
        values[150] = values[30]
    with DatasetWriter(folder, layout) as writer:
        writer.write_batch(Batch([f"v{i}" for i in range(n)], labels, features, frames))
    return Dataset.open(folder)


@pytest.mark.parametrize("level", ["video", "frame"])
def test_a_planted_copy_is_a_near_duplicate(tmp_path: Path, level: str) -> None:
    layout = Layout(
        features=(FeatureSpec("rgb", 96, level=level), FeatureSpec("audio", 8, level=level)),
        n_classes=5,
    )
    store = store_with_a_copy(tmp_path / "store", layout, np.random.default_rng(0))
    found = find_feature_issues(store, seed=0)
    assert found.rows.size == 200 and found.k == 10
    assert list(found.rows[found.near_duplicate]) == [30, 150]
    assert found.nearest[30] == 150 and found.nearest[150] == 30
    assert found.nearest_distance[30] < 1e-3
    sampled = find_feature_issues(store, seed=0, max_rows=50)
    assert sampled.rows.size == 50 and sampled.n_rows == 200
    issues = find_data_issues(store, seed=0)
    section = data_section(store, issues, 0, None)
    pairs = block(section.blocks, Table, "Closest near-duplicates")
    assert pairs.rows[0][:2] in (("v30", "v150"), ("v150", "v30"))
    assert pairs.rows[0][-1] == "no"  # a copy with other labels
    summary = block(section.blocks, Table, "Issues found")
    assert [row[0] for row in summary.rows] == ["near_duplicate", "outlier", "class_imbalance"]
    assert summary.rows[0][1:3] == ("2 rows", "1.00% of 200 examined")
    note = next(b for b in section.blocks if isinstance(b, Note))
    assert "all 200 training rows" in note.text
    sampled_note = data_section(store, find_data_issues(store, 0, max_rows=50), 0, None)
    assert any("50 of the 200 training rows" in getattr(b, "text", "") for b in
               sampled_note.blocks)  # fmt: skip


def test_a_row_unlike_the_rest_is_an_outlier() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(16)[:3]
    x = centres[rng.integers(0, 3, size=300)] + 0.05 * rng.normal(size=(300, 16))
    x[7] = np.eye(16)[9]  # alone, in another direction
    found = feature_issues(x / np.linalg.norm(x, axis=1, keepdims=True))
    assert list(np.flatnonzero(found.outlier)) == [7]
    assert found.mean_distance[7] > found.outlier_above
    assert not found.near_duplicate.any()


def test_class_imbalance_follows_datalab() -> None:
    skewed = class_imbalance(np.array([100, 100, 1]))
    assert skewed.flagged and skewed.rarest == 2 and skewed.n_under == 1
    assert skewed.share == pytest.approx(1 / 201) and skewed.below == pytest.approx(0.1 / 3)
    even = class_imbalance(np.array([10, 10, 9]))
    assert not even.flagged and even.rarest == 2 and even.n_under == 0
