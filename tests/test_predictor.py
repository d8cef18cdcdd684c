"""``webly.Predictor``: the README's five lines on real digits with injected noise (the stacker
beats the best member out of fold, `label_issues` finds the flips, `predict` uses
the deployed choice, a re-fit resumes, `load` gives the same predictions), the recipe it
writes, and the one-line errors that leave a foreign folder alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import webly
from webly import Dataset, Predictor
from webly.data.builtin import load_noisy_digits
from webly.errors import ConfigError


def digits() -> tuple[np.ndarray, ...]:
    """scikit-learn's digits, 20% of the training labels flipped to another class (uniformly):
    ``X, y_noisy, X_test, y_test, flipped``."""
    data = load_noisy_digits("symmetric", 0.2)
    flipped = data.y_train != data.y_true
    return data.x_train, data.y_train, data.x_test, data.y_test, flipped


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Predictor, tuple[np.ndarray, ...]]:
    data = digits()
    x, y, x_test, y_test, _ = data
    path = tmp_path_factory.mktemp("predictor") / "digits"
    # the README's lines, with the smallest K and no progress for the test's output
    predictor = Predictor(path=path, folds=2, progress=False)
    predictor.fit((x, y), test=(x_test, y_test))
    return predictor, data


@pytest.mark.slow
def test_the_readme_example_on_noisy_digits(
    fitted: tuple[Predictor, tuple[np.ndarray, ...]],
) -> None:
    predictor, (x, y, x_test, y_test, flipped) = fitted
    board = predictor.leaderboard()
    assert list(board.columns) == [
        "model", "kind", "compression", "score_val", "score_test", "fit_time",
        "pred_time_per_row", "size", "deployed",
    ]  # fmt: skip
    assert board["score_val"].is_monotonic_decreasing and board["deployed"].sum() == 1
    members = board[board["model"].str.match(r"member [a-z_]+$")]
    assert sorted(members["model"]) == ["member lgbm", "member logistic", "member mlp"]
    assert (board[board["model"].str.startswith("member ")]["kind"] == "member").all()
    # 8 bits leave LightGBM's trees as they are: lgbm is listed once, not once more "in 8 bits"
    assert "member lgbm int8_partial" not in set(board["model"])
    assert "member mlp int8_partial" in set(board["model"])
    assert {"stacker", "blend greedy", "blend weighted"} <= set(board["model"])
    assert (members["fit_time"] > 0).all() and (board["pred_time_per_row"] > 0).all()
    # the stacker beats the best member on the rows choices are made on (out of fold: 0.7602
    # against lgbm's 0.7550); on the clean test split 2 folds leave it 1 row behind lgbm
    # (bench/RESULTS.md), so the test split is not asserted on
    stacker = board[board["model"] == "stacker"].iloc[0]
    assert stacker["score_val"] > members["score_val"].max()
    # what predict uses is the best on validation rows, so at least the best member there
    deployed = board[board["deployed"]].iloc[0]
    assert deployed["score_val"] == board["score_val"].max() >= members["score_val"].max()
    # label issues against the flips the test injected
    issues = predictor.label_issues()
    assert issues["label_quality"].is_monotonic_increasing and len(issues) == len(y)
    flagged = issues.index[issues["is_label_issue"]]
    rows = np.array([int(i.removeprefix("row")) for i in flagged])
    assert flipped[rows].mean() >= 0.85 and flipped[rows].sum() >= 0.7 * flipped.sum()
    assert (issues.loc[flagged, "given_label"].astype(int) == y[rows]).all()
    # predictions by the deployed model: its test figure, classes as the labels were given
    predicted = predictor.predict(x_test)
    assert predicted.dtype.kind == "i"
    assert (predicted == y_test).mean() == pytest.approx(deployed["score_test"], abs=1e-9)
    frame = pd.DataFrame(x_test).assign(label=y_test)  # a label column is not a feature
    assert (predictor.predict(frame) == predicted).all()
    proba = predictor.predict_proba(x_test[:5])
    assert proba.shape == (5, 10) and list(proba.columns) == [str(c) for c in range(10)]
    # loaded from its folder, it predicts the same; fitted again on the same data, it resumes
    again = Predictor.load(predictor.path)
    assert again.task == "multiclass" and (again.predict(x_test) == predicted).all()
    runs = json.loads((predictor.run / "zoo" / "manifest.json").read_text())["finished"]
    again.fit((x, y), test=(x_test, y_test))
    assert json.loads((predictor.run / "zoo" / "manifest.json").read_text())["finished"] == runs


@pytest.mark.slow
def test_refitting_other_data_needs_overwrite(
    fitted: tuple[Predictor, tuple[np.ndarray, ...]],
) -> None:
    predictor, (x, y, *_) = fitted
    before = (predictor.path / "predictor.json").read_text()
    with pytest.raises(ConfigError, match="fitted on other data; pass overwrite=True") as caught:
        Predictor(path=predictor.path, progress=False).fit((x[:-1], y[:-1]))
    assert "\n" not in str(caught.value)
    assert (predictor.path / "predictor.json").read_text() == before
    assert len(Dataset.open(predictor.path / "inputs" / "train")) == len(y)


def test_the_recipe_it_runs(tmp_path: Path) -> None:
    train = Dataset.from_arrays(np.eye(4, dtype=np.float32), [0, 1, 2, 3], path=tmp_path / "s")
    predictor = Predictor(path=tmp_path / "p", time_limit=60, max_size="5MB", folds=4)
    predictor.inputs = {"train": str(train.path)}
    recipe = predictor.recipe(train)
    assert recipe["zoo"]["time_limit"] == 60 and recipe["folds"] == {"n": 4}
    assert [m["name"] for m in recipe["zoo"]["members"]] == ["logistic", "mlp", "lgbm"]
    assert recipe["compress"] == {"max_size": "5MB"} and recipe["export"] == {}
    assert recipe["clean"] == {"rules": {"down_weight": 0.0}} and recipe["ensemble"] == {}
    assert "distill" not in recipe and recipe["data"] == {"store": {"train": str(train.path)}}
    fast = Predictor(path=tmp_path / "q", zoo="fast", clean=None, ensemble=None)
    fast.inputs = predictor.inputs
    assert [m["name"] for m in fast.recipe(train)["zoo"]["members"]] == ["logistic", "mlp"]
    many = Dataset.from_arrays(np.eye(60, dtype=np.float32), np.arange(60), path=tmp_path / "m")
    assert [m.get("id") for m in predictor.recipe(many)["zoo"]["members"]][-1] == "mlp_wide"
    assert "clean" not in fast.recipe(train) and "ensemble" not in fast.recipe(train)
    carved = Predictor(path=tmp_path / "v", valid_fraction=0.2)
    carved.inputs = predictor.inputs
    assert carved.recipe(train)["data"] == {"store": {"train": str(train.path)},
                                            "valid_fraction": 0.2}  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: Predictor(task="binary", path=p), "task is 'binary'"),
        (lambda p: Predictor(zoo="huge", path=p), "zoo is 'huge'"),
        (lambda p: Predictor(path=p).fit([1, 2, 3]), "data is a list; pass a Dataset"),
        (lambda p: Predictor(path=p).label_issues(), "no finished clean stage"),
        (lambda p: Predictor(path=p).leaderboard(), "no finished compress stage"),
        (lambda p: Predictor.load(p), "predictor.json is missing"),
    ],
    ids=["task", "zoo", "data", "issues", "leaderboard", "load"],
)
def test_misuse_is_one_line(make: object, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        make(tmp_path / "p")  # type: ignore[operator]
    assert "\n" not in str(caught.value)


def test_a_folder_of_other_files_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds files but no predictor\.json"):
        Predictor(path=tmp_path).fit((np.eye(2, dtype=np.float32), [0, 1]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_public_names_import_lazily() -> None:
    assert {"Predictor", "Dataset", "find_noisy_labels", "gap_at_k"} <= set(webly.__all__)
    code = (
        "import sys, webly; assert 'torch' not in sys.modules and 'pandas' not in sys.modules; "
        "from webly import gap_at_k; print(gap_at_k.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "webly.metrics.ranking"
    from webly import find_noisy_labels, fit_stacker

    assert (Predictor.__module__, fit_stacker.__module__, find_noisy_labels.__module__) == (
        "webly.predictor", "webly.ensemble.stack", "webly.clean.detect"
    )  # fmt: skip
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        webly.nope  # noqa: B018
