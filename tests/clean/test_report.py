"""Actions, sample weights, cleaned labels and the report's save / load round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tests.clean.conftest import Planted
from webly.clean import ACTIONS, ActionRules, NoiseReport, find_noisy_labels
from webly.errors import ConfigError, DataError

# 10 rows: row 1 confidently another class, rows 2 and 3 doubtful, the rest clean
GIVEN = np.array([0, 0, 1, 2, 0, 1, 2, 0, 1, 2])
PROBS = np.array(
    [[0.9, 0.05, 0.05], [0.02, 0.95, 0.03], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1]]
    + [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]] * 2
)


def test_multiclass_actions_weights_and_cleaned_labels() -> None:
    report = NoiseReport.from_verdict(find_noisy_labels(GIVEN, PROBS, "self_confidence"))
    names = ["keep", "relabel", "down_weight", "drop"] + ["keep"] * 6
    assert report.action_names().tolist() == names
    assert report.counts() == {
        "keep": 7, "drop": 1, "down_weight": 1, "relabel": 1, "add_missing": 0
    }  # fmt: skip
    weights = report.sample_weights()
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, [1, 1, 0.5, 0, 1, 1, 1, 1, 1, 1])
    cleaned = report.cleaned_labels()
    assert cleaned.dtype == np.float32 and cleaned.shape == (10, 3)
    expected = np.eye(3)[GIVEN]
    expected[1], expected[3] = [0, 1, 0], 0
    np.testing.assert_array_equal(cleaned.toarray(), expected)
    np.testing.assert_array_equal(report.kept_rows(), [0, 1, 2, 4, 5, 6, 7, 8, 9])

    gentle = ActionRules(drop_fraction=0.0, relabel_threshold=1.0, down_weight=0.2)
    report = NoiseReport.from_verdict(find_noisy_labels(GIVEN, PROBS, "self_confidence"), gentle)
    np.testing.assert_allclose(report.sample_weights()[:4], [1, 0.2, 0.2, 0.2])
    assert (report.cleaned_labels() != sp.csr_matrix(np.eye(3)[GIVEN])).nnz == 0


def test_multilabel_actions_add_and_remove_labels() -> None:
    labels = sp.csr_matrix(
        np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 0]]),
        dtype=np.float32,
    )
    probs = np.array(
        [
            [0.95, 0.05, 0.92, 0.1],  # label 1 spurious (removed), label 2 missing (added)
            [0.9, 0.1, 0.95, 0.2],  # label 2 missing (added)
            [0.1, 0.1, 0.1, 0.02],  # its only label spurious: nothing left, dropped
            [0.1, 0.3, 0.1, 0.1],  # spurious but not confidently: down-weighted
            [0.9, 0.1, 0.1, 0.1],
        ]
    )
    verdict = find_noisy_labels(labels, probs, "self_confidence", task="multilabel")
    report = NoiseReport.from_verdict(verdict)
    assert report.action_names().tolist() == [
        "relabel", "add_missing", "drop", "down_weight", "keep"
    ]  # fmt: skip
    np.testing.assert_array_equal(
        report.cleaned_labels().toarray(),
        [[1, 0, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]],
    )
    np.testing.assert_array_equal(report.sample_weights(), [1, 1, 0, 0.5, 1])

    adding = NoiseReport.from_verdict(verdict, ActionRules(remove_spurious=False))
    assert adding.action_names().tolist() == [
        "add_missing", "add_missing", "down_weight", "down_weight", "keep"
    ]  # fmt: skip
    np.testing.assert_array_equal(
        adding.cleaned_labels().toarray(),
        [[1, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 0]],
    )


def test_drop_fraction_caps_the_drops(multiclass: Planted) -> None:
    verdict = find_noisy_labels(multiclass.given, multiclass.probs)
    report = NoiseReport.from_verdict(verdict, ActionRules(drop_fraction=0.05))
    counts = report.counts()
    assert counts["drop"] == 100  # 5% of 2,000 rows
    assert counts["drop"] + counts["down_weight"] + counts["relabel"] == verdict.n_noisy
    dropped = report.action == ACTIONS.index("drop")
    lighter = report.action == ACTIONS.index("down_weight")
    assert report.row_score[dropped].min() >= report.row_score[lighter].max()
    relabelled = report.action == ACTIONS.index("relabel")
    assert (report.predicted_prob[relabelled] >= 0.9).all()
    # most relabels restore the true class
    cleaned = report.cleaned_labels()[relabelled].indices
    assert np.mean(cleaned == multiclass.true[relabelled]) > 0.95


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_save_and_load_round_trip(
    tmp_path: Path, multiclass: Planted, multilabel: Planted, task: str
) -> None:
    planted = multiclass if task == "multiclass" else multilabel
    report = NoiseReport.from_verdict(find_noisy_labels(planted.given, planted.probs))
    path = report.save(tmp_path / "noise")
    assert sorted(p.name for p in path.iterdir()) == [
        "classes.parquet", "confusions.parquet", "manifest.json", "rows.parquet",
        "transition.parquet",
    ]  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["noise"]  # no temporary folder left
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["counts"] == report.counts() and manifest["task"] == task

    loaded = NoiseReport.load(path)
    for name in ("row_score", "is_noisy", "action", "predicted", "predicted_prob"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(report, name))
    for name in ("class_noise_rate", "class_thresholds", "transition"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(report, name))
    for name in ("labels", "removed", "added", "suspect_spurious", "suspect_missing"):
        a, b = getattr(loaded, name), getattr(report, name)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.shape == b.shape and (a != b).nnz == 0
    assert loaded.confusions == report.confusions
    assert (loaded.method, loaded.task, loaded.params) == (report.method, task, report.params)
    assert loaded.rules == report.rules
    np.testing.assert_array_equal(loaded.sample_weights(), report.sample_weights())
    assert (loaded.cleaned_labels() != report.cleaned_labels()).nnz == 0


def test_save_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    report = NoiseReport.from_verdict(find_noisy_labels(GIVEN, PROBS, "margin"))
    report.save(tmp_path / "noise")
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        report.save(tmp_path / "noise")
    report.save(tmp_path / "noise", overwrite=True)
    assert NoiseReport.load(tmp_path / "noise").method == "margin"


def test_load_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no manifest.json \(it does not exist\)"):
        NoiseReport.load(tmp_path / "missing")
    path = NoiseReport.from_verdict(find_noisy_labels(GIVEN, PROBS, "margin")).save(
        tmp_path / "noise"
    )
    (path / "rows.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="unreadable noise report") as caught:
        NoiseReport.load(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        ({"drop_fraction": 1.5}, r"drop_fraction is 1.5; pass a number in \[0.0, 1\]"),
        ({"relabel_threshold": 0.3}, r"relabel_threshold is 0.3; pass a number in \[0.5, 1\]"),
        ({"down_weight": -1}, r"down_weight is -1"),
        ({"remove_spurious": 1}, r"remove_spurious is 1; pass true or false"),
    ],
)
def test_bad_rules(rules: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ActionRules(**rules)
