"""``webly quantize``, ``webly export`` and ``webly predict``: output, and user errors that exit
with status 2, one line and no output file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from tests.deploy.conftest import save_model
from webly.cli import main
from webly.data import Dataset, FeatureSpec, Layout
from webly.data import tfrecord as tr
from webly.io import read_submission


def webly(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``webly ARGS`` in this process through the entry point (as the console script does):
    exit status, stdout, stderr."""
    shown = warnings.showwarning
    wide = mock.patch.dict("os.environ", {"COLUMNS": "200"})  # whole tensor names in tables
    with wide, mock.patch.object(sys, "argv", ["webly", *args]):
        try:
            main()
            status = 0
        except SystemExit as done:
            status = int(done.code or 0)
        finally:
            warnings.showwarning = shown
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_user_error(result: tuple[int, str, str], *needles: str) -> None:
    status, _, err = result
    assert status == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines[0].startswith("error: ")
    for needle in needles:
        assert needle in " ".join(lines)


@pytest.mark.slow
def test_compress_prints_the_tensor_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_store: Dataset
) -> None:
    layout = small_store.layout
    source = save_model(tmp_path / "net", "resnet_av", layout, ("rgb", "audio"), inner=256)
    status, out, err = webly(capsys, "quantize", str(source), "--out", str(tmp_path / "small"))
    assert status == 0, err
    assert "backbone.stems.0.0.weight" in out and "int8" in out and "rel. RMS error" in out
    assert "total" in out and "of the size) in" in out
    status, out, _ = webly(
        capsys, "quantize", str(source), "--out", str(tmp_path / "half"), "--method", "fp16",
        "--min-elements", "0",
    )  # fmt: skip
    assert status == 0 and "fp16" in out and "fp32" not in out


@pytest.mark.slow
def test_export_then_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_store: Dataset
) -> None:
    source = save_model(tmp_path / "net", "mlp", small_store.layout, ("rgb", "audio"))
    status, out, err = webly(
        capsys, "export", str(source), "--out", str(tmp_path / "export"),
        "--data", str(small_store.path), "--metric", "gap@20=0.75",
    )  # fmt: skip
    assert status == 0, err
    assert "inputs rgb uint8 x16, audio float32 x4 -> probabilities x20" in out
    sub = tmp_path / "sub.csv"
    status, out, err = webly(
        capsys, "predict", str(tmp_path / "export"), str(small_store.path), "--out", str(sub),
        "--top-k", "3", "--batch-size", "50",
    )  # fmt: skip
    assert status == 0, err
    assert "wrote the top 3 classes of 200 rows" in out
    ids, top = read_submission(sub, None, 20)
    assert len(ids) == 200 and top.k == 3


@pytest.mark.slow
def test_user_errors_exit_2_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_store: Dataset, frame_store: Dataset
) -> None:
    source = save_model(tmp_path / "net", "mlp", small_store.layout, ("rgb", "audio"))
    out = tmp_path / "out"
    out.mkdir()
    assert_user_error(
        webly(capsys, "quantize", str(source), "--out", str(out / "c"), "--method", "int4"),
        "compression method 'int4' is unknown",
    )
    assert_user_error(
        webly(capsys, "quantize", str(tmp_path / "nope"), "--out", str(out / "c")),
        "not a saved webly model",
    )
    assert_user_error(
        webly(
            capsys, "export", str(source), "--out", str(out / "e"), "--data", str(frame_store.path)
        ),
        "feature group 'rgb': the model reads 16 video-level values",
    )
    assert_user_error(
        webly(capsys, "export", str(source), "--out", str(out / "e"), "--metric", "gap"),
        "NAME=NUMBER",
    )
    export = tmp_path / "export"
    status, _, _ = webly(
        capsys, "export", str(source), "--out", str(export), "--data", str(small_store.path)
    )
    assert status == 0
    assert_user_error(
        webly(capsys, "predict", str(export), str(frame_store.path), "--out", str(out / "p.csv")),
        "feature group 'rgb' is frame-level but the model reads it video-level",
    )
    assert_user_error(
        webly(capsys, "predict", str(export), str(small_store.path), "--out", str(out / "p.csv"),
              "--format", "xml"),
        "output format 'xml' is unknown",
    )  # fmt: skip
    (export / "model.onnx").write_bytes(b"\x08")
    assert_user_error(
        webly(capsys, "predict", str(export), str(small_store.path), "--out", str(out / "p.csv")),
        "model.onnx: 1 bytes, model.json records",
    )
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_the_console_script_exits_2_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "webly", "predict", str(tmp_path / "none"), "x.tfrecord",
         "--out", str(tmp_path / "p.csv")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "no model.json" in result.stderr
    assert list(tmp_path.iterdir()) == []


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _exported_mlp(tmp_path: Path, capsys: pytest.CaptureFixture[str], store: Dataset) -> Path:
    """An mlp on ``store``'s layout exported by the CLI to ``tmp_path/export``."""
    source = save_model(tmp_path / "net", "mlp", store.layout, ("rgb", "audio"))
    export = tmp_path / "export"
    assert (
        webly(capsys, "export", str(source), "--out", str(export), "--data", str(store.path))[0]
        == 0
    )
    return export


@pytest.mark.slow
def test_predict_never_writes_over_its_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_store: Dataset
) -> None:
    from tests.data.test_yt8m import make_video_files

    export = _exported_mlp(tmp_path, capsys, small_store)
    make_video_files(tmp_path / "files", n_files=2)
    store, files = small_store.path, tmp_path / "files"
    before = {folder: _files(folder) for folder in (store, export, files)}
    cases = [
        (str(store), store / "manifest.json", "is inside the input"),
        (str(store), store, "is the input"),
        (str(store), export / "model.json", "is inside the input"),
        (str(files / "*.tfrecord"), files / "v0.tfrecord", "is the input"),
        (str(files / "v1.tfrecord"), files / "v1.tfrecord", "is the input"),
    ]
    for data, out, needle in cases:
        result = webly(capsys, "predict", str(export), data, "--out", str(out))
        assert_user_error(result, f"{out} {needle}", "choose")
    assert {folder: _files(folder) for folder in (store, export, files)} == before


def test_predict_output_follows_the_umask(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_store: Dataset
) -> None:
    export = _exported_mlp(tmp_path, capsys, small_store)
    previous = os.umask(0o022)
    try:
        for fmt in ("csv", "parquet", "jsonl"):
            out = tmp_path / f"p.{fmt}"
            status, _, err = webly(
                capsys, "predict", str(export), str(small_store.path), "--out", str(out),
                "--format", fmt,
            )  # fmt: skip
            assert status == 0, err
            assert out.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(previous)


@pytest.mark.slow
def test_export_and_quantize_overwrite_only_their_own_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_store: Dataset
) -> None:
    source = save_model(tmp_path / "net", "mlp", small_store.layout, ("rgb", "audio"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    before = _files(source)
    cases = [
        (("export", str(source), "--out", str(source)), f"{source} is the input"),
        (
            ("export", str(source), "--out", str(source / "e")),
            f"{source / 'e'} is inside the input",
        ),
        (("export", str(source), "--out", str(tmp_path)), f"{tmp_path} holds the input"),
        (("export", str(source), "--out", str(mine)), f"{mine} is not a webly export"),
        (("quantize", str(source), "--out", str(source)), f"{source} is the input"),
        (
            ("quantize", str(source), "--out", str(mine)),
            f"{mine} is not a compressed webly network",
        ),
    ]
    for args, needle in cases:
        assert_user_error(webly(capsys, *args, "--overwrite"), needle)
    assert _files(source) == before and _files(mine) == {"notes.txt": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "net", "store"]
    export, small = tmp_path / "export", tmp_path / "small"
    for args in (
        ("export", str(source), "--out", str(export)),
        ("quantize", str(source), "--out", str(small)),
    ):
        assert webly(capsys, *args)[0] == 0
        status, _, err = webly(capsys, *args, "--overwrite")  # its own kind: replaced
        assert status == 0, err
    assert_user_error(webly(capsys, "quantize", str(source), "--out", str(export), "--overwrite"),
                      f"{export} is not a compressed webly network")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "mine", "net", "small", "store"]


def test_predict_refuses_nan_features_and_tampered_model_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = Layout(
        features=(FeatureSpec("mean_rgb", 8), FeatureSpec("mean_audio", 4)), n_classes=5
    )
    source = save_model(tmp_path / "net", "logistic", layout, ("mean_rgb", "mean_audio"))
    export = tmp_path / "export"
    assert webly(capsys, "export", str(source), "--out", str(export))[0] == 0
    files = tmp_path / "files"
    files.mkdir()
    rows = [
        tr.encode_example(
            {
                "id": [vid],
                "mean_rgb": np.full(8, x, np.float32),
                "mean_audio": np.zeros(4, np.float32),
            }
        )
        for vid, x in ((b"ok", 0.5), (b"bad", np.nan))
    ]
    tr.write_records(files / "in.tfrecord", rows)
    out = tmp_path / "out"
    out.mkdir()
    predict = ["predict", str(export), str(files / "in.tfrecord"), "--out", str(out / "p.jsonl")]
    assert_user_error(
        webly(capsys, *predict), "in.tfrecord: record at byte", "(id 'bad')", "'mean_rgb' holds NaN"
    )
    info = json.loads((export / "model.json").read_text())
    tr.write_records(files / "in.tfrecord", rows[:1])
    for changed, needle in (
        ({"class_names": ["a", "b"]}, "class_names lists 2 names for 5 classes"),
        ({"files": {}}, "'files' does not list model.onnx"),
        ({"format_version": "1"}, "format_version is '1' (str); it must be the integer 1"),
    ):
        (export / "model.json").write_text(json.dumps(info | changed))
        assert_user_error(webly(capsys, *predict, "--format", "jsonl"), "model.json", needle)
    (export / "model.json").write_text(json.dumps({k: v for k, v in info.items() if k != "files"}))
    assert_user_error(webly(capsys, *predict), "model.json: no 'files' key")
    assert list(out.iterdir()) == []
    (export / "model.json").write_text(json.dumps(info))
    assert webly(capsys, *predict, "--format", "jsonl")[0] == 0
