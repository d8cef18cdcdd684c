from __future__ import annotations

import contextlib
import errno
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from tests.conftest import REAL_YT8M
from webly.cli import main, os_error_message
from webly.core import TopK
from webly.data import Dataset
from webly.demo import run_demo
from webly.deploy import load_exported
from webly.io import write_submission
from webly.pipeline import STAGES
from webly.predictions import Predictions


def webly(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``webly ARGS`` in this process through its entry point (`webly.cli.main`, as the
    console script does): exit status, stdout and stderr. A new interpreter a command would
    cost seconds of imports; the tests that need one (``python -m webly``, the shell
    completion, another working folder) start it themselves."""
    stdout, stderr = io.StringIO(), io.StringIO()
    shown = warnings.showwarning
    argv = mock.patch.object(sys, "argv", ["webly", *args])
    with argv, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main()
            status = 0
        except SystemExit as done:
            status = done.code if isinstance(done.code, int) else int(done.code is not None)
        finally:
            warnings.showwarning = shown
    return subprocess.CompletedProcess(args, status, stdout.getvalue(), stderr.getvalue())


def assert_user_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    text = " ".join(lines)
    assert text.startswith("error: ")
    for needle in needles:
        assert needle in text


def test_help_lists_the_command_groups() -> None:
    result = webly("--help")
    assert result.returncode == 0
    for command in ("data", "eval", "demo"):
        assert command in result.stdout
    data = webly("data", "--help")
    for command in ("import-yt8m", "import-table", "import-images", "info"):
        assert command in data.stdout


def test_info_prints_statistics(small_store: Dataset) -> None:
    result = webly("data", "info", str(small_store.path), "--verify")
    assert result.returncode == 0, result.stderr
    assert "200" in result.stdout and "labels per row" in result.stdout
    assert "'rgb'" in result.stdout and "16 x uint8" in result.stdout


def test_info_on_a_missing_store(tmp_path: Path) -> None:
    assert_user_error(webly("data", "info", str(tmp_path / "nope")), "nope", "does not exist")


def test_import_errors_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_user_error(
        webly("data", "import-yt8m", str(tmp_path / "*.tfrecord"), "--out", str(out)),
        "no files match",
    )
    assert not out.exists()


@pytest.mark.slow
def test_eval_scores_a_submission(tmp_path: Path, small_store: Dataset) -> None:
    labels = small_store.labels.toarray()
    scores = labels + np.random.default_rng(0).uniform(0, 0.5, size=labels.shape)
    path = tmp_path / "sub.csv"
    write_submission(path, list(small_store.ids), TopK.from_dense(scores, 20))
    result = webly("eval", str(path), "--labels", str(small_store.path))
    assert result.returncode == 0, result.stderr
    assert "GAP@20" in result.stdout and "1.00000" in result.stdout
    path.write_text("VideoId,LabelConfidencePairs\nv0,3 0.5 7\n")
    assert_user_error(
        webly("eval", str(path), "--labels", str(small_store.path)), "sub.csv:2", "odd count"
    )


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    small = ("data.synth.videos=400", "data.synth.classes=12", "data.synth.max_frames=8",
             "compress.measure_latency=false")  # fmt: skip
    rows = run_demo(tmp_path, seed=0, console=console, overrides=[*small, "zoo.train.epochs=3"])
    text = console.export_text()
    assert "400 train / 100 test rows, 12 classes" in text and "labels per row" in text
    members = ["logistic", "mlp", "resnet_av", "mlp_audio", "dbof", "netvlad"]
    second = ["blend: mean", "blend: weighted", "blend: greedy", "stacker"]
    distilled = ["student: resnet_av_student", "final: resnet_av"]
    assert list(rows) == [
        *members,
        "zoo average",
        *second,
        *distilled,
        "logistic regression on true labels",
    ]
    assert [rows[m]["frame-level"] for m in members] == [False] * 4 + [True] * 2
    for model, row in rows.items():
        assert 0.0 < row["GAP@20"] <= 1.0, model
        assert model in text
    # Training on the true labels does better than on the noisy ones.
    assert rows["logistic regression on true labels"]["GAP@20"] > rows["logistic"]["GAP@20"]
    assert len(Dataset.open(tmp_path / "data" / "test")) == 100
    assert "cleaning the training labels" in text and "precision" in text
    report = tmp_path / "report" / "report.html"
    assert report.is_file() and f"The report, to open in a browser: {report}" in text
    again = Console(record=True, width=120)
    rerun = run_demo(tmp_path, console=again, overrides=[*small, "zoo.train.epochs=3"])
    # a re-run only prints the tables
    # longtail is not in the demo recipe: it prints nothing
    assert again.export_text().count("done, skipped") == len(STAGES) - 1
    exported = load_exported(tmp_path / "export" / "model")  # the demo ends deployable
    assert exported.info["run"]["candidate"] in text
    for model in [*members, "zoo average"]:
        assert rerun[model] == rows[model]


@pytest.mark.slow
def test_import_table_from_csv(tmp_path: Path) -> None:
    csv = tmp_path / "items.csv"
    csv.write_text("id,f0,f1,tags\na,0.5,1.0,cat|dog\nb,-1.0,2.0,dog\n")
    out = tmp_path / "store"
    result = webly(
        "data", "import-table", str(csv), "--out", str(out), "--features", "f*", "--labels", "tags",
        "--label-sep", "|", "--id", "id",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ds = Dataset.open(out)
    assert list(ds.ids) == ["a", "b"] and ds.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(ds.features([1], groups=("x",)), [[-1.0, 2.0]])
    bad = webly(
        "data", "import-table", str(csv), "--out", str(tmp_path / "bad"), "--labels", "nope"
    )
    assert_user_error(bad, "items.csv", "nope")
    assert not (tmp_path / "bad").exists()


def test_import_table_bad_label_names_the_row(tmp_path: Path) -> None:
    csv = tmp_path / "items.csv"
    csv.write_text("f0,labels\n0.5,1\n0.1,7\n")
    result = webly(
        "data", "import-table", str(csv), "--out", str(tmp_path / "s"), "--features", "f0",
        "--num-classes", "5",
    )  # fmt: skip
    assert_user_error(result, "items.csv", "class 7", "5 classes")
    assert not (tmp_path / "s").exists()


def test_import_images_with_a_missing_extractor(tmp_path: Path) -> None:
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "cat" / "a.png")
    result = webly(
        "data", "import-images", str(tmp_path / "imgs"), "--out", str(tmp_path / "s"),
        "--extractor", str(tmp_path / "model.onnx"),
    )  # fmt: skip
    assert_user_error(result, "model.onnx")
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")
def test_import_images_with_views_and_an_unknown_view(tmp_path: Path) -> None:
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    Image.new("RGB", (12, 10), (200, 30, 0)).save(tmp_path / "imgs" / "cat" / "a.png")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 3, 8, 8)), str(tmp_path / "net.pt"))
    command = ["data", "import-images", str(tmp_path / "imgs"), "--out", str(tmp_path / "s"),
               "--extractor", str(tmp_path / "net.pt"), "--image-size", "8"]  # fmt: skip
    bad = webly(*command, "--views", "flip,upside_down")
    assert_user_error(bad, "views: 'upside_down' is unknown; choose from flip, top_left")
    assert not (tmp_path / "s").exists()
    result = webly(*command, "--views", "flip, top_left")
    assert result.returncode == 0, result.stderr
    groups = [f.name for f in Dataset.open(tmp_path / "s").layout.features]
    assert groups == ["image", "image_flip", "image_top_left"]


@pytest.mark.slow
@pytest.mark.skipif(not REAL_YT8M.is_dir(), reason="../shared/data/yt8m-2018-validate is absent")
def test_import_real_youtube8m_and_describe(tmp_path: Path) -> None:
    out = tmp_path / "yt8m"
    result = webly(
        "data", "import-yt8m", str(REAL_YT8M / "validate000*.tfrecord"), "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    info = webly("data", "info", str(out))
    assert info.returncode == 0, info.stderr
    assert "3,862 (multilabel)" in info.stdout
    assert "1024 x float32" in info.stdout and "128 x float32" in info.stdout
    assert "'mean_rgb'" in info.stdout and "'mean_audio'" in info.stdout


@pytest.mark.slow
def test_generators_and_add_noise(tmp_path: Path) -> None:
    digits = webly(
        "data",
        "builtin",
        "digits",
        "--out",
        str(tmp_path / "d"),
        "--noise",
        "pair",
        "--rate",
        "0.2",
    )
    assert digits.returncode == 0, digits.stderr
    assert (
        len(Dataset.open(tmp_path / "d" / "train")) + len(Dataset.open(tmp_path / "d" / "test"))
        == 1797
    )
    noisy = webly(
        "data", "add-noise", str(tmp_path / "d" / "test"), "--out", str(tmp_path / "n"),
        "--kind", "symmetric", "--rate", "0.3",
    )  # fmt: skip
    assert noisy.returncode == 0, noisy.stderr
    assert Dataset.open(tmp_path / "n").clean_labels is not None
    products = webly(
        "data", "synth", "products-like", "--out", str(tmp_path / "p"), "--products", "400",
        "--classes", "50",
    )  # fmt: skip
    assert products.returncode == 0, products.stderr
    assert Dataset.open(tmp_path / "p" / "train").layout.has_group
    videos = webly(
        "data", "synth", "yt8m-like", "--out", str(tmp_path / "v"), "--videos", "200",
        "--classes", "30", "--max-frames", "12",
    )  # fmt: skip
    assert videos.returncode == 0, videos.stderr
    frames, lengths = Dataset.open(tmp_path / "v" / "train").frames([0, 1])
    assert frames.shape[2] == 1152 and lengths.min() >= 4


@pytest.mark.slow
def test_generator_bad_requests_write_nothing(tmp_path: Path) -> None:
    cases = [
        (("data", "builtin", "digits", "--noise", "missing", "--rate", "0.2"), "does not fit"),
        (("data", "builtin", "digits", "--noise", "pair", "--rate", "1.0"), "outside [0, 1)"),
        (("data", "synth", "yt8m-like", "--videos", "0"), "at least 1 video"),
        (("data", "synth", "yt8m-like", "--classes", "2", "--labels-per-video", "3"), "classes"),
        (("data", "synth", "products-like", "--pair", "-0.1"), "pair"),
    ]
    for args, needle in cases:
        out = tmp_path / "out"
        assert_user_error(webly(*args[:3], "--out", str(out), *args[3:]), needle)
        assert not out.exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = webly("data", "synth", "yt8m-like", "--out", str(tmp_path / "full"), "--videos", "10")
    assert_user_error(result, "already exists; pass --overwrite")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    store = tmp_path / "d"
    assert webly("data", "builtin", "digits", "--out", str(store)).returncode == 0
    assert_user_error(
        webly("data", "add-noise", str(store / "train"), "--out", str(tmp_path / "n"),
              "--kind", "missing", "--rate", "0.2"),
        "missing noise does not fit a multiclass dataset",
    )  # fmt: skip
    assert not (tmp_path / "n").exists()


@pytest.mark.slow
def test_overwrite_never_deletes_inputs_or_foreign_folders(tmp_path: Path) -> None:
    folder = tmp_path / "dir"
    folder.mkdir()
    csv = folder / "in.csv"
    csv.write_text("f0,labels\n0.5,1\n0.1,0\n")
    result = webly(
        "data", "import-table", str(csv), "--out", str(folder), "--features", "f0", "--overwrite"
    )
    assert_user_error(result, f"{folder} holds the input {csv}")
    args = ("data", "import-table", "in.csv", "--out", ".", "--features", "f0", "--overwrite")
    here = subprocess.run(
        [sys.executable, "-m", "webly", *args], capture_output=True, text=True, timeout=120,
        cwd=folder,
    )  # fmt: skip
    assert_user_error(here, ". holds the input in.csv")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    result = webly(
        "data", "import-table", str(csv), "--out", str(mine), "--features", "f0", "--overwrite"
    )
    assert_user_error(result, f"{mine} is not a webly dataset", "remove")
    result = webly(
        "data", "synth", "yt8m-like", "--out", str(mine), "--videos", "10", "--overwrite"
    )
    assert_user_error(result, f"{mine} is not a folder of webly datasets")
    assert [p.name for p in folder.iterdir()] == ["in.csv"]
    assert csv.read_text() == "f0,labels\n0.5,1\n0.1,0\n"
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    store = tmp_path / "store"
    assert (
        webly("data", "import-table", str(csv), "--out", str(store), "--features", "f0").returncode
        == 0
    )
    again = webly(
        "data", "import-table", str(csv), "--out", str(store), "--features", "f0", "--overwrite"
    )
    assert again.returncode == 0, again.stderr  # a dataset is replaced by a dataset
    assert len(Dataset.open(store)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "mine", "store"]


@pytest.mark.slow
def test_models_list_shows_the_zoo() -> None:
    result = webly("models", "list")
    assert result.returncode == 0, result.stderr
    for name in ("logistic", "resnet_av", "moe", "netvlad", "lstm", "td_conv", "lgbm"):
        assert name in result.stdout


def small_data(tmp_path: Path) -> Path:
    """A generated yt8m-like dataset of 240 videos, 10 classes (train, test, unlabeled)."""
    data = tmp_path / "d"
    synth = webly(
        "data", "synth", "yt8m-like", "--out", str(data), "--videos", "240", "--classes", "10",
        "--max-frames", "6",
    )  # fmt: skip
    assert synth.returncode == 0, synth.stderr
    return data


@pytest.mark.slow
def test_train_a_zoo_then_ensemble_and_distill(tmp_path: Path) -> None:
    data = small_data(tmp_path)
    zoo = tmp_path / "zoo.yaml"
    trained = (
        "folds: 2\ntrain: {epochs: 1, batch_size: 64, lr: 0.001}\nmembers:\n"
        "  - {name: logistic}\n  - {name: dbof, hparams: {cluster_size: 8, hidden: 8}}\n"
    )
    zoo.write_text(trained)
    args = ("train", str(zoo), "--data", str(data / "train"), "--test", str(data / "test"))
    result = webly(*args, "--out", str(tmp_path / "zoo"))
    assert result.returncode == 0, result.stderr
    assert "logistic" in result.stdout and "dbof" in result.stdout and "test" in result.stdout
    zoo.write_text("members:\n  - {name: resnet}\n")
    bad = webly(*args, "--out", str(tmp_path / "bad"))
    assert_user_error(bad, "unknown model 'resnet'", "known models")
    assert not (tmp_path / "bad").exists()
    zoo.write_text(trained)

    # the second level on that zoo: blends and the stacker, then a recipe's distill section on
    # them (students, a final model on every row), then its longtail section on the final model
    splits = ("--data", str(data / "train"), "--test", str(data / "test"))
    ens = webly("ensemble", str(tmp_path / "zoo"), *splits, "--out", str(tmp_path / "ens"),
                "--set", "blends=[mean, greedy]", "--set", "stacker={rounds: 10}")  # fmt: skip
    assert ens.returncode == 0, ens.stderr
    assert all(word in ens.stdout for word in ("mean", "greedy", "stacker", "test GAP@20"))
    assert (tmp_path / "ens" / "stacker" / "predictions" / "manifest.json").is_file()
    second = (str(zoo), "--zoo-dir", str(tmp_path / "zoo"), "--ensemble", str(tmp_path / "ens"),
              *splits)  # fmt: skip
    section = ("--set", "teacher=stacker", "--set", "lam=0.5", "--set", "students=[{name: mlp}]",
               "--set", "final={name: mlp}")  # fmt: skip
    result = webly("distill", *second, *section, "--out", str(tmp_path / "st"))
    assert result.returncode == 0, result.stderr
    final = tmp_path / "st" / "final" / "mlp"  # one setting: no folder of its own
    assert (final / "full" / "model" / "model.json").is_file() and str(final) in result.stdout
    unlabeled = ("--unlabeled-data", str(data / "unlabeled"))
    result = webly("distill", *second, *section, *unlabeled, "--set", "unlabeled={}",
                   "--set", "students=[]", "--out", str(tmp_path / "st-u"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    taught = Predictions.open(tmp_path / "st-u" / "final" / "mlp" / "predictions")
    assert taught.model["pseudo_rows"] == len(Dataset.open(data / "unlabeled")) == 60
    student = tmp_path / "st" / "students" / "mlp"
    result = webly("longtail", str(zoo), "--final", str(final), "--student", str(student),
                   *splits, "--set", "taus=[0, 1]", "--out", str(tmp_path / "lt"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "out of fold: student(s) mlp" in " ".join(result.stdout.split())
    assert (tmp_path / "lt" / "final" / "model" / "model.json").is_file()
    bad = webly("distill", *second, *section, *unlabeled, "--out", str(tmp_path / "bad"))
    assert_user_error(bad, "distill.unlabeled is not set", "--set 'unlabeled={}'")
    bad = webly("distill", *second, "--set", "lamb=0.5", "--out", str(tmp_path / "bad"))
    assert_user_error(bad, "distill.lamb: unknown key; did you mean 'lam'?")
    bad = webly("distill", *second, *section, "--valid", str(data / "train"),
                "--out", str(tmp_path / "bad"))  # fmt: skip
    assert_user_error(bad, "holds 240 of the training rows", "carved out of training")
    bad = webly("longtail", str(zoo), "--final", str(final), *splits, "--set", "method=tau",
                "--out", str(tmp_path / "bad"))  # fmt: skip
    assert_user_error(bad, "longtail.method")
    bad = webly("ensemble", str(tmp_path / "zoo"), *splits, "--out", str(tmp_path / "bad"),
                "--set", "blends=[median]")  # fmt: skip
    assert_user_error(bad, "ensemble.blends: unknown blend 'median'", "known: mean")
    bad = webly("distill", *second[:3], "--ensemble", str(tmp_path / "zoo"), *splits, *section,
                "--out", str(tmp_path / "bad"))  # fmt: skip
    assert_user_error(bad, "holds no blend or stacker")
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_clean_a_zoo_file_then_bad_methods(tmp_path: Path) -> None:
    """One round of cleaning on a zoo file: its table, then a bad method."""
    data = small_data(tmp_path)
    splits = ("--data", str(data / "train"), "--test", str(data / "test"))
    students = tmp_path / "students.yaml"
    students.write_text(
        "folds: 2\ntrain: {epochs: 1, batch_size: 64, lr: 0.001}\nmembers: [{name: mlp}]\n"
    )
    cleaned = webly("clean", str(students), *splits, "--out", str(tmp_path / "clean"))
    assert cleaned.returncode == 0, cleaned.stderr
    assert "| round |" in cleaned.stdout and "precision" in cleaned.stdout
    assert "| valid gap@20 |" in cleaned.stdout and "best: round " in cleaned.stdout
    assert (tmp_path / "clean" / "round-0" / "report").is_dir()
    bad = webly("clean", str(students), *splits, "--out", str(tmp_path / "bad"),
                "--set", "method=x")  # fmt: skip
    assert_user_error(bad, "clean.method: unknown method 'x'; known: ")
    bad = webly("clean", str(students), *splits, "--out", str(tmp_path / "bad"),
                "--set", "patience=0")  # fmt: skip
    assert_user_error(bad, "clean.patience: Input should be greater than or equal to 1")
    assert not (tmp_path / "bad").exists()


RUN_RECIPE = """
data: {synth: {kind: yt8m-like, videos: 200, classes: 10, max_frames: 6, unlabeled_videos: 0}}
folds: {n: 2}
zoo:
  train: {epochs: 1, batch_size: 64, lr: 0.001}
  members:
    - {name: logistic}
    - {name: logistic, id: wild, train: {lr: 1.0e+30}}
"""


@pytest.mark.slow
def test_run_a_recipe_and_its_status(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RUN_RECIPE)
    run = tmp_path / "run"
    result = webly("run", str(recipe), "--out", str(run), "--set", "folds.n=3")
    assert result.returncode == 1, result.stderr  # a member failed; the others were evaluated
    assert "member wild failed" in result.stderr and "training loss is nan" in result.stderr
    assert "zoo: failed in" in result.stdout and "evaluate: done in" in result.stdout
    assert "zoo average" in result.stdout and "GAP@20" in result.stdout
    assert "scored on 50 test rows, clean labels" in result.stdout
    status = webly("status", str(run))
    assert status.returncode == 0, status.stderr
    cells = [line.split("│") for line in status.stdout.splitlines() if line.startswith("│")]
    states = {row[1].strip(): row[2].strip() for row in cells if row[1].strip()}
    assert states == {stage.name: "failed" if stage.name == "zoo" else "done" for stage in STAGES}
    assert "3 folds of 66-67 rows" in status.stdout


@pytest.mark.slow
def test_bad_recipes_write_nothing(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RUN_RECIPE)
    run = tmp_path / "run"
    cases = [  # the rest of the bad recipes and --set: tests/test_config.py
        (
            str(recipe),
            ("--set", "zoo.kk=1"),
            "zoo.kk: unknown key; did you mean 'k'? zoo accepts: k, train, members",
        ),
        (str(tmp_path / "none.yaml"), (), "none.yaml: cannot be read"),
        (str(recipe), ("--set", "data={store: {train: nope}}"), "nope: no manifest.json"),
    ]
    for path, overrides, needle in cases:
        assert_user_error(webly("run", path, "--out", str(run), *overrides), needle)
        assert not run.exists()
    assert_user_error(webly("status", str(tmp_path)), "not a run directory (no recipe.yaml")


def test_output_to_a_file_or_pipe_is_wide_enough_for_the_tables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from webly.cli import LOG_WIDTH, _console

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert _console().width == LOG_WIDTH  # Rich alone would assume 80
    monkeypatch.setenv("COLUMNS", "90")
    assert _console().width == 90


# --------------------------------------------------------------------------- errors of the machine


def test_os_errors_of_the_machine_are_one_line_naming_the_path() -> None:
    rofs = OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/out")
    assert os_error_message(rofs) == (
        "/mnt/ro/out: Read-only file system (EROFS); the file system is read-only; write the "
        "output to a writable folder"
    )
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as full:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from full
    except RuntimeError as wrapped:
        message = os_error_message(wrapped, "runs/a")
    assert message is not None and message.startswith("runs/a: No space left on device (ENOSPC)")
    arrow = OSError("IOError: [Errno 28] No space left on device. Detail: [errno 28]")
    assert "(ENOSPC); the disk is full" in str(os_error_message(arrow, "x.parquet"))
    assert os_error_message(OSError(errno.ENOENT, "No such file", "a")) is None  # a bug
    assert os_error_message(KeyError("files")) is None


def _in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from tests.deploy.test_commands import webly as run_main

    return run_main(capsys, *args)


def _one_line(result: tuple[int, str, str], *needles: str) -> None:
    status, _, stderr = result
    assert status == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for needle in needles:
        assert needle in lines[0], stderr


def test_read_only_full_disk_and_long_names_exit_2_in_import_synth_run_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_store: Dataset
) -> None:
    table = tmp_path / "in.csv"
    table.write_text("f0,f1,labels\n1,2,0\n3,4,1\n")
    long = tmp_path / ("a" * 300)
    _one_line(
        _in_process(
            capsys, "data", "import-table", str(table), "--out", str(long), "--features", "f*"
        ),
        "a" * 100, "File name too long (ENAMETOOLONG)",
    )  # fmt: skip
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write() raises it: no path
    with mock.patch("webly.data.store.DatasetWriter.write_batch", side_effect=full):
        _one_line(
            _in_process(
                capsys,
                "data",
                "import-table",
                str(table),
                "--out",
                str(tmp_path / "ds"),
                "--features",
                "f*",
            ),
            f"{tmp_path / 'ds'}: No space left on device (ENOSPC); the disk is full",
        )
    with mock.patch("os.fsync", side_effect=full):
        _one_line(
            _in_process(
                capsys, "data", "synth", "yt8m-like", "--out", str(tmp_path / "s"), "--videos", "20"
            ),
            f"{tmp_path / 's'}: No space left on device (ENOSPC)",
        )
    rofs = OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "run"))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "data: {synth: {kind: yt8m-like, videos: 40, classes: 5, max_frames: 4}}\n"
        "zoo: {train: {epochs: 1}, members: [{name: logistic}]}\n"
    )
    with mock.patch("pathlib.Path.mkdir", side_effect=rofs):
        _one_line(
            _in_process(capsys, "run", str(recipe), "--out", str(tmp_path / "run")),
            f"{tmp_path / 'run'}: Read-only file system (EROFS)",
        )
    from tests.deploy.conftest import save_model

    source = save_model(tmp_path / "net", "mlp", small_store.layout, ("rgb", "audio"))
    assert _in_process(capsys, "export", str(source), "--out", str(tmp_path / "e"))[0] == 0
    with mock.patch("os.fsync", side_effect=full):
        _one_line(
            _in_process(
                capsys, "predict", str(tmp_path / "e"), str(small_store.path),
                "--out", str(tmp_path / "p.csv"),
            ),
            f"{tmp_path / 'p.csv'}: No space left on device (ENOSPC)",
        )  # fmt: skip
    written = sorted(p.name for p in tmp_path.iterdir())  # no outputs, no temporaries left
    assert written == ["e", "in.csv", "net", "recipe.yaml", "store"]


# --------------------------------------------------------------------------- one vocabulary

RENAMED = [  # (command, new spelling, old spelling: hidden until webly 0.2)
    (("eval",), "--top-k", "--k"),
]
WRITERS = [  # commands whose output folder was a positional OUT
    ("data", "import-yt8m"), ("data", "import-table"), ("data", "import-images"),
    ("data", "synth", "yt8m-like"), ("data", "synth", "products-like"),
    ("data", "builtin", "digits"), ("data", "add-noise"), ("compress",), ("export",),
]  # fmt: skip


def _commands() -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group of the CLI, with its path."""
    import typer.main

    from webly.cli import app

    found = []

    def walk(path: tuple[str, ...], command: Any) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk((*path, name), sub)

    walk((), typer.main.get_command(app))
    return found


def _help(*path: str) -> str:
    from typer.testing import CliRunner

    from webly.cli import app

    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _shown(command: Any) -> set[str]:
    """The option names a command's help shows."""
    return {
        name
        for param in command.params
        if not getattr(param, "hidden", False)
        for name in (*param.opts, *param.secondary_opts)
    }


def test_version_h_and_shell_completion() -> None:
    from typer.testing import CliRunner

    import webly
    from webly.cli import app

    runner = CliRunner()
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == f"webly {webly.__version__}"
    for path in [(), ("data",), ("data", "import-table"), ("run",), ("data", "synth", "yt8m-like")]:
        assert (
            runner.invoke(app, [*path, "-h"]).output == runner.invoke(app, [*path, "--help"]).output
        )
    root = _help()
    assert "--install-completion" in root and "--show-completion" in root
    # A process of its own, with Typer's switch that takes the shell from the command line
    # rather than from the parent processes (CI runs no shell above pytest).
    typer_test = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    shown = subprocess.run(
        [sys.executable, "-m", "webly", "--show-completion", "bash"],
        capture_output=True, text=True, env={**os.environ, **typer_test},
    )  # fmt: skip
    assert shown.returncode == 0 and "complete -o default" in shown.stdout, shown.stderr


def test_no_help_line_shows_a_bool_metavar_and_every_command_takes_h() -> None:
    for path, _ in _commands():
        text = _help(*path)
        assert "<bool>" not in text, path
        assert "-h" in text, path


def test_run_help_lists_every_stage_of_the_pipeline() -> None:
    text = " ".join(_help("run").split())
    assert "The stages, in order: " + ", ".join(s.name for s in STAGES) + "." in text
    assert "--ray" in text


def test_old_spellings_are_hidden_and_the_new_ones_shown() -> None:
    commands = dict(_commands())
    for path, new, old in RENAMED:
        shown = _shown(commands[path])
        assert new in shown and old not in shown, path
        assert any(old in p.opts and p.hidden for p in commands[path].params), path
    for path in WRITERS:
        command = commands[path]
        assert "--out" in _shown(command), path
        text = _help(*path)
        assert "OUT" not in text.split("Options")[0].replace("[OPTIONS]", ""), path


def _invoke(*args: str) -> Any:
    from typer.testing import CliRunner

    from webly.cli import app

    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_old_spellings_still_work_with_a_warning() -> None:
    from webly.errors import ConfigError

    scores = mock.patch("webly.io.score_submission", return_value={"GAP": 0.5})
    opened = mock.patch("webly.data.Dataset.open")
    with scores as score, opened:
        with pytest.warns(FutureWarning, match="--k is deprecated.*write --top-k"):
            assert _invoke("eval", "p.csv", "--labels", "s", "--k", "5").exit_code == 0
        assert score.call_args.kwargs["k"] == 5
        assert _invoke("eval", "p.csv", "--labels", "s", "--top-k", "7").exit_code == 0
        assert score.call_args.kwargs["k"] == 7
        both = _invoke("eval", "p.csv", "--labels", "s", "--top-k", "7", "--k", "5")
        assert isinstance(both.exception, ConfigError) and "give --top-k only" in str(
            both.exception
        )


def test_quantize_compresses_one_network_and_compress_refuses_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_store: Dataset
) -> None:
    from types import SimpleNamespace

    from tests.deploy.conftest import save_model

    result = SimpleNamespace(tensors=[], file_bytes_before=10, file_bytes_after=5, ratio=0.5)
    with mock.patch("webly.compress.compress_network", return_value=result) as compress:
        done = _invoke("quantize", "net", "--out", str(tmp_path / "c"), "--method", "fp16",
                       "--min-elements", "0")  # fmt: skip
        assert done.exit_code == 0, done.output
        assert compress.call_args.args == (Path("net"), tmp_path / "c", "fp16")
        assert compress.call_args.kwargs["min_elements"] == 0
    source = save_model(tmp_path / "net", "mlp", small_store.layout, ("rgb", "audio"))
    _one_line(
        _in_process(capsys, "compress", str(source), "--out", str(tmp_path / "c")),
        f"error: {source} is not a run directory; compress one network with webly quantize "
        "NETWORK_DIR --out DIR",
    )
    _one_line(
        _in_process(capsys, "compress", str(source), "--set", "max_size=lots"),
        "compress.max_size: ",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net", "store"]


def test_out_replaces_the_positional_out(tmp_path: Path) -> None:
    from webly.errors import ConfigError

    table = mock.patch("webly.data.tables.import_table", return_value=[1, 2])
    with table as run:
        assert _invoke("data", "import-table", "t.csv", "--out", "ds").exit_code == 0
        assert run.call_args.args[1] == Path("ds")
        with pytest.warns(FutureWarning, match=r"positional OUT \(old\) is deprecated.*--out old"):
            assert _invoke("data", "import-table", "t.csv", "old").exit_code == 0
        assert run.call_args.args[1] == Path("old")
        twice = _invoke("data", "import-table", "t.csv", "old", "--out", "ds")
        assert isinstance(twice.exception, ConfigError) and "give --out only" in str(
            twice.exception
        )
        missing = _invoke("data", "import-table", "t.csv")
        assert isinstance(missing.exception, ConfigError)
        assert (
            str(missing.exception)
            == "--out is missing; name the dataset folder to create: --out FOLDER"
        )
    images = mock.patch("webly.data.images.import_images", return_value=[1])
    with images as run:
        done = _invoke("data", "import-images", "src", "--extractor", "m.onnx", "--out", "ds",
                       "--views", "flip,top_left", "--views", "top_right")  # fmt: skip
        assert done.exit_code == 0, done.output
        assert run.call_args.kwargs["views"] == ("flip", "top_left", "top_right")
    with mock.patch("webly.deploy.export_onnx") as export:
        done = _invoke("export", "net", "--out", "e", "--set", "opset=18",
                       "--set", "predict.tta_stored=[flip, top_left, top_right]")  # fmt: skip
        assert done.exit_code == 0, done.output
        assert export.call_args.args[1] == Path("e")
        stored = export.call_args.kwargs["predict_options"].tta_stored
        assert tuple(stored) == ("flip", "top_left", "top_right")
        assert export.call_args.kwargs["opset"] == 18


def test_run_ray_is_the_executor_overrides_that_train_ray_builds(tmp_path: Path) -> None:
    from webly.cli import _ray_config
    from webly.config import load_recipe
    from webly.errors import ConfigError

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "data: {synth: {kind: yt8m-like, videos: 40, classes: 5}}\n"
        "zoo: {members: [{name: logistic}]}\n"
    )
    with mock.patch("webly.pipeline.run_recipe") as run:
        run.return_value.results, run.return_value.errors, run.return_value.failed = None, [], False
        for address in ("10.0.0.1:6379", "auto", "local"):
            done = _invoke("run", str(recipe), "--out", "r", "--set", "seed=3", "--ray", address)
            assert done.exit_code == 0, done.output
            overrides = run.call_args.args[2]
            executor = load_recipe(recipe, overrides).executor
            assert executor == _ray_config(address)  # what train/clean/distill --ray use
            assert executor.kind == "ray" and overrides[0] == "seed=3"
        _invoke("run", str(recipe), "--out", "r", "--ray", "auto", "--cpus-per-task", "2")
        assert load_recipe(recipe, run.call_args.args[2]).executor.cpus_per_task == 2
        bad = _invoke("run", str(recipe), "--out", "r", "--ray", "nowhere")
        assert isinstance(
            bad.exception, ConfigError
        ) and "--ray: 'nowhere' is not HOST:PORT" in str(bad.exception)


def test_a_missing_ray_or_onnx_is_one_line_naming_the_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text("members: [{name: logistic}]\n")
    with mock.patch.dict(sys.modules, {"ray": None}):
        _one_line(
            _in_process(capsys, "train", str(zoo), "--data", "d", "--out", "o", "--ray", "local"),
            "--ray needs the ray package, which is not installed; pip install 'webly[ray]', "
            "or leave --ray out",
        )
    with mock.patch.dict(sys.modules, {"onnx": None}):
        _one_line(
            _in_process(capsys, "export", str(tmp_path / "net"), "--out", str(tmp_path / "e")),
            "ONNX export needs the onnx package, which is not installed; pip install onnx",
        )
