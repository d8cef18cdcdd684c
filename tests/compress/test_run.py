"""Compress and export from a run directory: the final network exported with the run's figures
and training store, predicting what the run predicted; ``webly quantize RUN``; ``webly compress
RUN`` and ``webly export RUN`` running the recipe's compress and export sections as the stages
do; a run without a final model is one line and exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.compress.conftest import RUN_RECIPE
from tests.deploy.test_commands import assert_user_error, webly
from webly.compress.run import export_run, run_final
from webly.data import Dataset
from webly.deploy import load_exported
from webly.deploy.predict import predict
from webly.errors import ConfigError
from webly.models.quantized import open_network
from webly.pipeline import run_recipe
from webly.predictions import Predictions


def test_export_run_records_the_runs_figures_and_store(tiny_run: Path, tmp_path: Path) -> None:
    exported = export_run(tiny_run, tmp_path / "export")
    info = exported.info
    results = json.loads((tiny_run / "evaluate" / "results.json").read_text())
    row = next(r for r in results["rows"] if r["model"] == "final: logistic")
    assert info["metrics"] == {"GAP@20": row["GAP@20"], "BCE": row["BCE"]}
    train = Dataset.open(tiny_run / "data" / "train")
    assert info["run"] == {
        "folder": str(tiny_run.resolve()),
        "final": "logistic",
        "model_folder": str((tiny_run / "distill/final/logistic/full/model").resolve()),
        "training_store": str((tiny_run / "data" / "train").resolve()),
        "metrics_on": "test split, clean labels, 50 rows",
    }
    assert [f.name for f in exported.features] == ["mean_rgb", "mean_audio"]
    assert [f.dtype for f in exported.features] == [
        train.layout.feature(f.name).dtype for f in exported.features
    ]
    # it predicts the test split as the run's final model did (stored in float16)
    test = tiny_run / "data" / "test"
    predict(exported, test, tmp_path / "top.jsonl", top_k=5, fmt="jsonl")
    lines = [json.loads(line) for line in (tmp_path / "top.jsonl").read_text().splitlines()]
    stored = Predictions.open(tiny_run / "distill/final/logistic/predictions").test.topk()
    np.testing.assert_allclose([line["scores"] for line in lines], stored.scores[:, :5], atol=2e-3)
    assert run_final(tiny_run).folder == tiny_run / "distill/final/logistic/full/model"


def without_final(run: Path, dest: Path) -> Path:
    """A copy of ``run`` as if its recipe had no distill.final."""
    shutil.copytree(run, dest)
    manifest = dest / "distill" / "manifest.json"
    recorded = json.loads(manifest.read_text())
    recorded["outputs"] |= {"final": {}, "model": None}
    manifest.write_text(json.dumps(recorded))
    return dest


def test_a_run_without_a_final_model_is_one_line(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = without_final(tiny_run, tmp_path / "run")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError, match=r"made no final model.*add distill\.final to the recipe"):
        export_run(run, out / "export")
    assert_user_error(
        webly(capsys, "export", str(run), "--final", "--out", str(out / "export")),
        "has no final model", "add distill.final to the recipe",
    )  # fmt: skip
    assert_user_error(
        webly(capsys, "quantize", str(run), "--out", str(out / "small")), "add distill.final"
    )
    shutil.rmtree(run / "distill")
    assert_user_error(
        webly(capsys, "export", str(run), "--final", "--out", str(out / "e")),
        "distill stage never ran",
    )
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_cli_on_a_run(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, printed, err = webly(
        capsys, "export", str(tiny_run), "--final", "--out", str(tmp_path / "export")
    )
    assert status == 0, err
    assert "inputs mean_rgb float32 x1024, mean_audio float32 x128 -> probabilities x10" in printed
    assert "metrics GAP@20 0." in printed
    status, printed, err = webly(capsys, "quantize", str(tiny_run), "--out",
                                 str(tmp_path / "small"), "--method", "fp16",
                                 "--min-elements", "0")  # fmt: skip
    assert status == 0, err
    assert "fp16 compression of" in printed and "distill/final/logistic/full/model" in printed
    assert open_network(tmp_path / "small").config["name"] == "logistic"
    status, printed, err = webly(capsys, "compress", str(tiny_run),
                                 "--out", str(tmp_path / "chosen"))  # fmt: skip
    assert status == 0, err
    words = " ".join(printed.split())  # the title wraps
    assert "accuracy/size/latency frontier of" in words
    assert "(GAP@20 chosen on validation rows (held out of the final network's" in words
    assert "final logistic" in words and "on the frontier" in words and "<-" in words
    frontier = json.loads((tmp_path / "chosen" / "frontier.json").read_text())
    assert frontier["max_bytes"] == 10**9  # the compress section's default budget
    status, printed, err = webly(capsys, "compress", str(tiny_run), "--set",
                                 "measure_latency=false")  # fmt: skip
    assert status == 0 and "nothing written (no --out given)" in printed
    out = tmp_path / "out"
    out.mkdir()
    assert_user_error(
        webly(capsys, "compress", str(tiny_run), "--set", "max_size=2KB", "--out", str(out / "c")),
        "max size 2 KB (2,000 bytes) is below every candidate; the smallest is",
        "raise max_size",
    )
    assert_user_error(
        webly(capsys, "compress", str(tiny_run / "zoo"), "--out", str(out / "c")),
        f"{tiny_run / 'zoo'} is not a run directory; compress one network with webly quantize",
    )
    assert_user_error(
        webly(capsys, "compress", str(tiny_run), "--set", "max_sise=1GB", "--out", str(out / "c")),
        "compress.max_sise: unknown key; did you mean 'max_size'?",
    )
    assert list(out.iterdir()) == []


COMPRESS = {
    "max_size": "40KB", "measure_latency": False, "methods": ["int8_partial"], "min_elements": 0,
}  # fmt: skip
"""A compress section whose choice (the final network in 8 bits, all that fits) is not what an
export without one ships (the final network in float32, the most accurate within 1 GB)."""


@pytest.fixture(scope="module")
def compressed_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny run with its compress (`COMPRESS`) and export stages run."""
    folder = tmp_path_factory.mktemp("compressed")
    shutil.copytree(tiny_run, folder / "run")
    recipe = {**RUN_RECIPE, "compress": COMPRESS, "export": {}}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = run_recipe(folder / "recipe.yaml", folder / "run", [])
    assert not result.failed, result.errors
    return folder / "run"


@pytest.mark.slow
def test_webly_compress_runs_the_recipes_section_as_the_stage_does(
    compressed_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    section = tmp_path / "compress.yaml"
    section.write_text(yaml.safe_dump(COMPRESS))
    status, printed, err = webly(capsys, "compress", str(compressed_run), "--config",
                                 str(section), "--out", str(tmp_path / "choice"))  # fmt: skip
    assert status == 0, err
    stage = compressed_run / "compress" / "choice"
    for name in ("frontier.json", "choice.json"):
        assert json.loads((tmp_path / "choice" / name).read_text()) == json.loads(
            (stage / name).read_text()
        ), name
    assert "chose final logistic int8_partial (final)" in " ".join(printed.split())


@pytest.mark.slow
def test_webly_export_ships_what_the_runs_compress_stage_chose(
    compressed_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, printed, err = webly(
        capsys, "export", str(compressed_run), "--out", str(tmp_path / "deploy")
    )
    assert status == 0, err
    choice = compressed_run / "compress" / "choice"
    chosen = json.loads((choice / "choice.json").read_text())["name"]
    assert chosen == "final logistic int8_partial"  # not the best within 1 GB: fp32
    assert f"shipped {chosen}: the compress stage's choice ({choice})" in printed
    shipped = load_exported(tmp_path / "deploy").info
    staged = load_exported(compressed_run / "export" / "model").info
    assert shipped["run"] == staged["run"] and shipped["run"]["candidate"] == chosen
    assert shipped["metrics"] == staged["metrics"] and shipped["predict"] == staged["predict"]
    out = tmp_path / "out"
    out.mkdir()
    assert_user_error(
        webly(capsys, "export", str(compressed_run), "--out", str(out / "e"), "--set",
              "predict.tta_views=4"),
        "tta_views 4: test-time views take frame-level models",
    )  # fmt: skip
    assert_user_error(
        webly(capsys, "export", str(compressed_run), "--out", str(out / "e"), "--set",
              "predict.tta_view=4"),
        "export.predict: unknown predict option 'tta_view'",
    )  # fmt: skip
    assert list(out.iterdir()) == []
