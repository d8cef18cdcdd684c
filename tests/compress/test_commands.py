"""``webly compress``, ``webly export`` and ``webly predict``: output, and user errors that exit
with status 2, one line and no output file."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

import pytest

from tests.compress.conftest import save_model
from webly.cli import main
from webly.data import Dataset
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


def test_compress_prints_the_tensor_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_store: Dataset
) -> None:
    layout = small_store.layout
    source = save_model(tmp_path / "net", "resnet_av", layout, ("rgb", "audio"), inner=256)
    status, out, err = webly(capsys, "compress", str(source), str(tmp_path / "small"))
    assert status == 0, err
    assert "backbone.stems.0.0.weight" in out and "int8" in out and "rel. RMS error" in out
    assert "total" in out and "of the size) in" in out
    status, out, _ = webly(
        capsys, "compress", str(source), str(tmp_path / "half"), "--method", "fp16",
        "--min-elements", "0",
    )  # fmt: skip
    assert status == 0 and "fp16" in out and "fp32" not in out


def test_export_then_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_store: Dataset
) -> None:
    source = save_model(tmp_path / "net", "mlp", small_store.layout, ("rgb", "audio"))
    status, out, err = webly(
        capsys, "export", str(source), str(tmp_path / "export"), "--data", str(small_store.path),
        "--metric", "gap@20=0.75",
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


def test_user_errors_exit_2_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_store: Dataset, frame_store: Dataset
) -> None:
    source = save_model(tmp_path / "net", "mlp", small_store.layout, ("rgb", "audio"))
    out = tmp_path / "out"
    out.mkdir()
    assert_user_error(
        webly(capsys, "compress", str(source), str(out / "c"), "--method", "int4"),
        "compression method 'int4' is unknown",
    )
    assert_user_error(
        webly(capsys, "compress", str(tmp_path / "nope"), str(out / "c")), "not a saved webly model"
    )
    assert_user_error(
        webly(capsys, "export", str(source), str(out / "e"), "--data", str(frame_store.path)),
        "feature group 'rgb': the model reads 16 video-level values",
    )
    assert_user_error(
        webly(capsys, "export", str(source), str(out / "e"), "--metric", "gap"), "NAME=NUMBER"
    )
    export = tmp_path / "export"
    status, _, _ = webly(
        capsys, "export", str(source), str(export), "--data", str(small_store.path)
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


def test_the_console_script_exits_2_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "webly", "predict", str(tmp_path / "none"), "x.tfrecord",
         "--out", str(tmp_path / "p.csv")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "no model.json" in result.stderr
    assert list(tmp_path.iterdir()) == []
