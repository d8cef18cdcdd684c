"""The report of a run: built by the pipeline's last stage and by ``webly report``, every section
filled from the run's manifests and artifacts, or saying what the run lacks; offline; errors."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.report.conftest import FULL_RECIPE
from webly.clean.report import NoiseReport
from webly.cli import main
from webly.config import ReportConfig, parse_recipe
from webly.errors import ConfigError, DataError
from webly.pipeline import STAGES
from webly.report import build_report
from webly.report.blocks import Chart, Note, Table
from webly.report.long_tail import long_tail_section
from webly.report.noise import noise_section
from webly.report.results import gain_steps, model_sizes
from webly.report.run_files import RunFiles

SECTIONS = ("summary", "results", "classes", "noise", "data", "longtail", "compression", "run")


def manifest(run: Path, stage: str) -> dict:
    loaded: dict = json.loads((run / stage / "manifest.json").read_text())
    return loaded


@pytest.mark.slow
def test_the_pipeline_writes_the_report_last(full_run: Path) -> None:
    assert STAGES[-1].name == "report"
    assert set(STAGES[-1].reads) == {s.name for s in STAGES[:-1]}
    stage = manifest(full_run, "report")
    assert stage["state"] == "done" and stage["outputs"] == {"report": "report/report.html"}
    assert stage["key"].startswith("report/report.html: ")
    assert (full_run / "report" / "report.suspicious_rows.csv").is_file()  # beside the page
    html = (full_run / "report" / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert "Not in this run" not in html and "note missing" not in html  # every stage ran
    # waterfall; confusion matrix; 4 noise charts (with found against the truth); 2 long
    # tail; frontier; times
    assert html.count("<svg") == 10
    results = json.loads((full_run / "evaluate" / "results.json").read_text())
    for row in results["rows"]:
        assert f"<td>{row['model']}</td>" in html


def test_the_page_fetches_nothing(full_run: Path) -> None:
    html = (full_run / "report" / "report.html").read_text()
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert "@import" not in html and " src=" not in html
    assert not re.findall(r"url\((?!#)", html)  # clip paths refer to ids in the page
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html
    hrefs = re.findall(r'href="([^"]*)"', html)
    # in-page anchors, the heatmaps' cells and colour bars inline as data: URIs, and the CSV
    # of the flagged rows beside the page (a download, not fetched to show the page)
    beside = {h for h in hrefs if not h.startswith(("#", "data:image/png;base64,"))}
    assert hrefs and beside == {"report.suspicious_rows.csv"}
    assert (full_run / "report" / "report.suspicious_rows.csv").is_file()


def test_gains_follow_the_results(full_run: Path) -> None:
    files = RunFiles.open(full_run)
    assert files.results is not None
    rows = {r["model"]: r["accuracy"] for r in files.results["rows"]}
    steps = gain_steps(files, files.results)
    teacher = manifest(full_run, "ensemble")["outputs"]["teacher"]
    best = max(("logistic", "mlp"), key=lambda m: rows[m])
    frontier = json.loads((full_run / "compress" / "choice" / "frontier.json").read_text())
    chosen = next(c for c in frontier["candidates"] if c["name"] == frontier["chosen"])
    deployed = (
        f"compressed: {chosen['method']}" if chosen["kind"] == "final"
        else f"deployed: {chosen['name']}"
    )  # fmt: skip
    assert [s.label for s in steps][:4] == [
        f"best member: {best}", f"ensemble: {teacher}", "distilled: mlp", "long tail: tau_norm",
    ]  # fmt: skip
    assert steps[0].value == rows[best]
    assert steps[1].value == rows[teacher if teacher == "stacker" else f"blend: {teacher}"]
    assert (steps[2].value, steps[3].value) == (rows["final: mlp"], rows["longtail: mlp"])
    if chosen["method"] != "fp32":  # a final network as it is adds no step
        assert steps[4].label == deployed and steps[4].value == chosen["test_metric"]


def test_sizes_are_the_files_that_load_each_model(full_run: Path) -> None:
    files = RunFiles.open(full_run)
    assert files.results is not None
    sizes = model_sizes(files, files.results["rows"])

    def tree(folder: Path) -> int:
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    members = {m: sum(tree(f) for f in (full_run / "zoo" / m).glob("fold-*/model"))
               for m in ("logistic", "mlp")}  # fmt: skip
    assert sizes["logistic"] == members["logistic"] > 0
    assert sizes["zoo average"] == sum(members.values())
    assert sizes["final: mlp"] == tree(full_run / "distill" / "final" / "mlp" / "full" / "model")
    assert sizes["longtail: mlp"] == tree(full_run / "longtail" / "final" / "model")
    last_round = full_run / "clean" / "round-1" / "zoo"  # what the blends and the stacker use
    cleaned = {m: sum(tree(f) for f in (last_round / m).glob("fold-*/model"))
               for m in ("logistic", "mlp")}  # fmt: skip
    assert sizes["stacker"] > sizes["blend: mean"] == sum(cleaned.values())


def test_noise_section_lists_the_most_suspicious_rows(full_run: Path) -> None:
    files = RunFiles.open(full_run)
    section = noise_section(files, ReportConfig(suspicious_rows=5))
    charts = [b.title for b in section.blocks if isinstance(b, Chart)]
    assert charts == [
        "Confidence where the label agrees and where it disagrees",
        "Noise found against the truth",  # the generated data keeps its true labels
        "Estimated noise per class",
        "Most confused class pairs",
    ]
    rounds, suspicious = (b for b in section.blocks if isinstance(b, Table))
    assert [row[0] for row in rounds.rows] == ["0", "1"]
    report = NoiseReport.load(full_run / manifest(full_run, "clean")["outputs"]["report"])
    order = np.argsort(-report.row_score, kind="stable")[:5]
    assert files.train is not None and files.train.texts is not None
    assert suspicious.columns[:3] == ("#", "id", "text")
    assert [row[1] for row in suspicious.rows] == list(files.train.ids[order])
    assert [row[2] for row in suspicious.rows] == list(files.train.texts[order])
    actions = report.action_names()[order]
    assert [row[6] for row in suspicious.rows] == [a.replace("_", " ") for a in actions]
    names = files.train.class_names
    assert [row[3] for row in suspicious.rows] == [
        names[report.labels[r].indices[0]] for r in order
    ]


def test_long_tail_shows_the_bands_before_and_after(full_run: Path) -> None:
    section = long_tail_section(RunFiles.open(full_run))
    (bands,) = (b for b in section.blocks if isinstance(b, Table))
    assert bands.columns[-2:] == ("before", "after")
    recorded = manifest(full_run, "longtail")["summary"]["bands"]
    for row, band in zip(bands.rows, ("head", "medium", "tail"), strict=True):
        for cell, when in zip(row[-2:], ("before", "after"), strict=True):
            value = recorded[when]["values"][band]
            assert cell == ("n/a" if value is None else f"{value:.4f}")
    assert not section.missing


@pytest.mark.slow
def test_a_zoo_only_run_says_what_is_missing(zoo_run: Path, tmp_path: Path) -> None:
    path = build_report(zoo_run, tmp_path / "report.html")
    html = path.read_text()
    for needle in (
        "No gains to show: the recipe has no ensemble or distill stage",
        "No clean stage in this recipe",
        "No longtail stage in this recipe",
        "No compress stage in this recipe",
    ):
        assert needle in html
    assert "the out-of-fold predictions of" in html  # the histogram, from the best member
    assert "average precision" in html  # multi-label: the per-class figure
    assert html.count("<svg") == 4  # histogram, frequency curve, bands, stage times


def test_an_unfinished_run_builds_with_what_is_there(full_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(full_run, run, symlinks=True)
    evaluate = manifest(run, "evaluate")
    evaluate = {k: v for k, v in evaluate.items() if k not in ("outputs", "summary", "finished")}
    (run / "evaluate" / "manifest.json").write_text(json.dumps({**evaluate, "state": "running"}))
    shutil.rmtree(run / "compress")
    path = build_report(run)
    assert path == run / "report" / "report.html"
    html = path.read_text()
    assert "No results yet: the evaluate stage has not finished" in html
    assert "The compress stage has not finished" in html
    assert "<td>evaluate</td><td>unfinished</td>" in html
    assert "<td>compress</td><td>not run</td>" in html


def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """``webly ARGS`` in this process (the import is the slow part of a subprocess): exit
    status, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["webly", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_webly_report_writes_out_and_refuses_what_is_not_a_run(
    full_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "pages" / "run.html"
    status, printed, _ = cli(monkeypatch, capsys, "report", str(full_run), "--out", str(out))
    assert status == 0 and str(out) in printed.replace("\n", "")
    assert "<svg" in out.read_text()
    nowhere = tmp_path / "other.html"
    status, _, err = cli(monkeypatch, capsys, "report", str(tmp_path), "--out", str(nowhere))
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: ") and "not a run directory" in err
    assert not nowhere.exists()


def test_library_errors(full_run: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a run directory"):
        build_report(tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="is a folder"):
        build_report(full_run, tmp_path)
    with pytest.raises(ConfigError, match=r"report\.suspicious_rows"):
        parse_recipe({**FULL_RECIPE, "report": {"suspicious_rows": -1}})
    with pytest.raises(ConfigError, match=r"report\.rows: unknown key"):
        parse_recipe({**FULL_RECIPE, "report": {"rows": 3}})


def test_missing_notes_are_notes(zoo_run: Path) -> None:
    section = noise_section(RunFiles.open(zoo_run), ReportConfig())
    notes = [b for b in section.blocks if isinstance(b, Note)]
    assert [n.missing for n in notes] == [True] and section.missing == [notes[0].text]
