"""``Dataset.from_arrays`` / ``from_pandas``: every label form and the task it implies, frames
given padded with their lengths, unlabeled rows, and the one-line errors that write nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from webly.data import Dataset
from webly.data.arrays import infer_task
from webly.errors import ConfigError, DataError

X = np.arange(12, dtype=np.float32).reshape(6, 2) / 12


def test_integer_labels_are_multiclass(tmp_path: Path) -> None:
    ds = Dataset.from_arrays(X, np.array([0, 1, 2, 0, 1, 2]), path=tmp_path / "s")
    assert ds.task == "multiclass" and ds.n_classes == 3 and len(ds) == 6
    assert ds.labels.toarray().argmax(axis=1).tolist() == [0, 1, 2, 0, 1, 2]
    np.testing.assert_allclose(ds.features(np.arange(6), ("x",)), X)
    assert list(ds.ids) == [f"row{i}" for i in range(6)]


def test_class_names_become_sorted_classes(tmp_path: Path) -> None:
    labels = ["dog", "cat", "cat", "bird", "dog", "cat"]
    ds = Dataset.from_arrays({"pix": X}, labels, ids=list("abcdef"), path=tmp_path / "s")
    assert ds.class_names == ["bird", "cat", "dog"] and ds.task == "multiclass"
    assert ds.labels.toarray().argmax(axis=1).tolist() == [2, 1, 1, 0, 2, 1]
    assert list(ds.ids) == list("abcdef")


@pytest.mark.parametrize(
    "labels",
    [
        np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1], [0, 0, 1], [1, 0, 0]]),
        [[0, 2], [1], [], [0, 1, 2], [2], [0]],
    ],
    ids=["multi-hot", "lists"],
)
def test_multi_hot_and_label_lists_are_multilabel(labels: object, tmp_path: Path) -> None:
    ds = Dataset.from_arrays(X, labels, path=tmp_path / "s")
    assert ds.task == "multilabel" and ds.n_classes == 3
    assert ds.labels.toarray().tolist() == [
        [1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1], [0, 0, 1], [1, 0, 0]
    ]  # fmt: skip


def test_padded_frames_keep_each_rows_length(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    padded = rng.uniform(-1, 1, (4, 5, 3)).astype(np.float32)
    lengths = np.array([5, 1, 3, 2])
    ds = Dataset.from_arrays(
        None, [0, 1, 1, 0], frames={"rgb": (padded, lengths)}, path=tmp_path / "s"
    )
    frames, got = ds.frames(np.arange(4), ("rgb",))
    assert got.tolist() == lengths.tolist()
    for i, t in enumerate(lengths):
        np.testing.assert_allclose(frames[i, :t], padded[i, :t], atol=1e-6)


def test_unlabeled_rows_need_the_class_count(tmp_path: Path) -> None:
    ds = Dataset.from_arrays(X, None, n_classes=4, path=tmp_path / "s")
    assert ds.labels.nnz == 0 and ds.n_classes == 4
    with pytest.raises(ConfigError, match="pass n_classes= or class_names="):
        Dataset.from_arrays(X, None, path=tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_without_a_path_the_store_is_temporary() -> None:
    ds = Dataset.from_arrays(X, [0, 1, 0, 1, 0, 1])
    assert ds.path.name == "store" and ds.path.parent.name.startswith("webly-dataset-")


def test_from_pandas_takes_numeric_columns_and_label_lists(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"a": X[:, 0], "b": X[:, 1], "name": list("uvwxyz"), "label": [[0], [1, 2]] * 3}
    )
    ds = Dataset.from_pandas(frame, id_column="name", path=tmp_path / "s")
    assert ds.task == "multilabel" and list(ds.ids) == list("uvwxyz")
    np.testing.assert_allclose(ds.features(np.arange(6), ("x",)), X)
    with pytest.raises(DataError, match="column 'target' is not in the DataFrame"):
        Dataset.from_pandas(frame, "target", path=tmp_path / "t")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: Dataset.from_arrays(X, [0, 1], path=p), r"labels have shape \(2,\) for 6"),
        (lambda p: Dataset.from_arrays(X[0], [0], path=p), r"pass \(n_samples, dim\)"),
        (lambda p: Dataset.from_arrays(None, [0] * 6, path=p), "no features given"),
        (lambda p: Dataset.from_arrays(X * np.nan, [0] * 6, path=p), "non-finite"),
        (
            lambda p: Dataset.from_arrays(X, [[0, 1]] * 6, task="multiclass", path=p),
            "several labels",
        ),
        (lambda p: Dataset.from_arrays(X, [0, -1, 0, 0, 0, 0], path=p), "ids must be >= 0"),
        (lambda p: Dataset.from_arrays({"a": X, "b": X[:3]}, [0] * 6, path=p), "row counts"),
    ],
    ids=["rows", "rank", "none", "nan", "multiclass", "negative", "counts"],
)
def test_bad_arrays_are_one_line_and_write_nothing(
    call: object, message: str, tmp_path: Path
) -> None:
    with pytest.raises((DataError, ConfigError), match=message) as caught:
        call(tmp_path / "s")  # type: ignore[operator]
    assert "\n" not in str(caught.value) and not (tmp_path / "s").exists()


def test_infer_task() -> None:
    assert infer_task(np.array([1, 2])) == "multiclass"
    assert infer_task(["a", "b"]) == "multiclass"
    assert infer_task(sp.csr_matrix(np.eye(2))) == "multilabel"
    assert infer_task([[1], []]) == "multilabel"
