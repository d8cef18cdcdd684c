from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from webly.data import Dataset
from webly.data.builtin import builtin_digits
from webly.data.relabel import class_means, confusable_from_means, margin_difficulty
from webly.errors import ConfigError, DataError


def test_clean_digits_are_real_and_stratified(tmp_path: Path) -> None:
    summary = builtin_digits(tmp_path / "out")
    train, test = Dataset.open(tmp_path / "out" / "train"), Dataset.open(tmp_path / "out" / "test")
    assert (summary.train_rows, summary.test_rows) == (len(train), len(test))
    assert len(train) + len(test) == 1797 and train.n_classes == 10
    assert train.layout.feature("pixels").dim == 64 and not test.layout.has_clean_labels
    assert (train.labels != train.clean_labels).nnz == 0
    digits = load_digits()
    index = np.array([int(i.removeprefix("digit")) for i in test.ids])
    np.testing.assert_array_equal(test.labels.indices, digits.target[index])
    np.testing.assert_allclose(
        test.features(np.arange(len(test)), ("pixels",)), digits.data[index] / 16
    )
    per_class = np.bincount(test.labels.indices) / np.bincount(digits.target)
    assert np.allclose(per_class, 0.25, atol=0.01)
    assert train.class_names == [str(d) for d in range(10)]
    assert train.layout.class_descriptions is not None


@pytest.mark.parametrize("kind", ["symmetric", "pair", "instance"])
def test_noise_rates_and_truth(tmp_path: Path, kind: str) -> None:
    summary = builtin_digits(tmp_path / "out", noise=kind, rate=0.2, seed=1)  # type: ignore[arg-type]
    train = Dataset.open(tmp_path / "out" / "train")
    given, clean = train.labels.indices, train.clean_labels.indices
    changed = given != clean
    # Symmetric and pair noise change exactly round(rate * n) rows; instance noise draws each
    # row (std 1.1 points at 1,347 rows).
    assert changed.mean() == pytest.approx(0.2, abs=0.01 if kind != "instance" else 0.02)
    assert summary.noise["rows_changed"] == pytest.approx(changed.mean())
    assert train.manifest["source"]["realized"] == summary.noise
    x = train.features(np.arange(len(train)), ("pixels",))
    means = class_means([(x, train.clean_labels)], 10)
    if kind != "symmetric":  # replaced by the nearest class mean
        np.testing.assert_array_equal(
            given[changed], confusable_from_means(means)[clean[changed], 0]
        )
    if kind == "instance":  # rows far from their class mean are relabeled more often
        difficulty = margin_difficulty(x, train.clean_labels, means)
        assert difficulty[changed].mean() > 1.05 * difficulty[~changed].mean()
    test = Dataset.open(tmp_path / "out" / "test")
    assert not test.layout.has_clean_labels


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    def digest(out: Path) -> list[str]:
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*.arrow"))]

    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        builtin_digits(tmp_path / name, noise="pair", rate=0.3, seed=seed)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0.2}, "no noise kind is given; pass --noise KIND"),
        ({"noise": "flip", "rate": 0.2}, "noise kind 'flip' is unknown"),
        ({"noise": "missing", "rate": 0.2}, "missing noise does not fit a multiclass dataset"),
        ({"noise": "pair", "rate": 1.0}, r"outside \[0, 1\)"),
        ({"noise": "pair", "rate": -0.5}, r"outside \[0, 1\)"),
        ({"test_fraction": 0.0}, r"test_fraction is 0.0; use a value in \(0, 1\)"),
    ],
)
def test_bad_arguments_write_nothing(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        builtin_digits(tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(DataError, match="already exists"):
        builtin_digits(tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x"]
