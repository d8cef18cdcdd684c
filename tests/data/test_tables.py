"""Tests of `webly.data.tables.import_table`: round trips through Parquet, CSV and .npz, and one
test per kind of bad input (message content, and nothing left at ``out``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webly.data.tables import import_table
from webly.errors import DataError


def _rows(ds_labels: object) -> list[list[int]]:
    matrix = ds_labels.tocsr()  # type: ignore[attr-defined]
    return [
        sorted(matrix.indices[a:b].tolist())
        for a, b in zip(matrix.indptr[:-1], matrix.indptr[1:], strict=True)
    ]


def _fails(path: Path, out: Path, *needles: str, **options: object) -> None:
    with pytest.raises(DataError) as info:
        import_table(path, out, **options)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp")]


# --------------------------------------------------------------------------- round trips


def test_parquet_list_column_int_labels_ids_groups_texts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 5)).astype(np.float32)
    labels = [[1, 4], [0], [], [2], [4, 1, 3], [0], [2], [3], [1], [0]]
    table = pa.table(
        {
            "vid": [f"v{i:03d}" for i in range(10)],
            "emb": pa.array(list(x), pa.list_(pa.float32())),
            "tags": pa.array(labels, pa.list_(pa.int64())),
            "product": [f"p{i // 3}" for i in range(10)],
            "title": [f"title {i}" if i % 4 else None for i in range(10)],
        }
    )
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=4)
    ds = import_table(
        tmp_path / "in.parquet",
        tmp_path / "ds",
        features="emb",
        labels="tags",
        id_column="vid",
        group_column="product",
        text_column="title",
        batch_rows=3,
    )
    assert len(ds) == 10 and ds.n_classes == 5 and ds.task == "multilabel"
    np.testing.assert_array_equal(ds.features(np.arange(10), ("x",)), x)
    assert _rows(ds.labels) == [sorted(r) for r in labels]
    assert list(ds.ids) == [f"v{i:03d}" for i in range(10)]
    assert ds.groups is not None and list(ds.groups) == [f"p{i // 3}" for i in range(10)]
    assert ds.texts is not None and ds.texts[0] == "" and ds.texts[1] == "title 1"


def test_parquet_glob_columns_and_delimited_names(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    table = pa.table(
        {
            "f0": x[:, 0],
            "label": ["dog|cat", "cat", " bird | dog", "cat|"],
            "f1": x[:, 1].astype(np.int32),
            "f2": x[:, 2],
        }
    )
    pq.write_table(table, tmp_path / "in.pq")
    ds = import_table(
        tmp_path / "in.pq",
        tmp_path / "ds",
        features="f*",
        labels="label",
        label_sep="|",
        dtype="float16",
        group_name="tab",
    )
    assert ds.class_names == ["bird", "cat", "dog"]
    assert _rows(ds.labels) == [[1, 2], [1], [0, 2], [1]]
    assert list(ds.ids) == ["0", "1", "2", "3"]
    assert ds.layout.feature("tab").dtype == "float16"
    np.testing.assert_array_equal(ds.features(np.arange(4), ("tab",)), x)
    assert ds.manifest["source"]["features"] == ["f0", "f1", "f2"]
    two = import_table(tmp_path / "in.pq", tmp_path / "two", features="f0, f2", labels="label")
    np.testing.assert_array_equal(two.features(np.arange(4), ("x",)), x[:, [0, 2]])


def test_csv_vector_strings_int_tokens_and_text_ids(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        'id,vec,labels,g\n007,"[0.5, -1, 2e-1]",3 17 42,a\n008,1 2 3,0,a\n009,"4,5,6",,b\n'
    )
    ds = import_table(
        path, tmp_path / "ds", features="vec", id_column="id", group_column="g", label_sep=" "
    )
    assert list(ds.ids) == ["007", "008", "009"]
    assert ds.n_classes == 43 and ds.class_names[42] == "42"
    assert _rows(ds.labels) == [[3, 17, 42], [0], []]
    np.testing.assert_allclose(
        ds.features([0, 1, 2], ("x",)), [[0.5, -1, 0.2], [1, 2, 3], [4, 5, 6]], rtol=1e-7
    )
    assert ds.groups is not None and list(ds.groups) == ["a", "a", "b"]


def test_csv_scalar_columns_multiclass_with_classes_file(tmp_path: Path) -> None:
    path = tmp_path / "in.tsv"
    path.write_text("a\tb\ty\n1\t2\tzebra\n3\t4.5\tant\n")
    classes = tmp_path / "classes.txt"
    classes.write_text("zebra\nant\nyak\n")
    ds = import_table(
        path, tmp_path / "ds", features=["a", "b"], labels="y", classes=classes, task="multiclass"
    )
    assert ds.class_names == ["zebra", "ant", "yak"] and ds.task == "multiclass"
    assert _rows(ds.labels) == [[0], [1]]
    np.testing.assert_array_equal(ds.features([0, 1], ("x",)), [[1, 2], [3, 4.5]])


def test_npz_with_ids_groups_texts_in_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 4)).astype(np.float32)
    np.savez_compressed(
        tmp_path / "in.npz",
        features=x,
        labels=np.array([0, 2, 1, 2, 0, 1, 5]),
        ids=np.array([f"s{i}" for i in range(7)]),
        groups=np.array([b"g0", b"g0", b"g1", b"g1", b"g2", b"g2", b"g2"]),
        texts=np.array(["t"] * 7),
    )
    ds = import_table(tmp_path / "in.npz", tmp_path / "ds", batch_rows=3, task="multiclass")
    np.testing.assert_array_equal(ds.features(np.arange(7), ("x",)), x)
    assert ds.n_classes == 6 and _rows(ds.labels) == [[0], [2], [1], [2], [0], [1], [5]]
    assert list(ds.ids) == [f"s{i}" for i in range(7)]
    assert ds.groups is not None and list(ds.groups)[-1] == "g2"
    assert ds.texts is not None and set(ds.texts) == {"t"}


def test_npz_multi_hot_labels_and_uint8(tmp_path: Path) -> None:
    hot = np.zeros((3, 6), np.uint8)
    hot[0, [1, 3]] = 1
    hot[2, 0] = 1
    x = np.array([[-2.0, 0.0], [2.0, 1.0], [0.5, -0.5]], np.float32)
    np.savez(tmp_path / "in.npz", emb=x, y=hot)
    ds = import_table(
        tmp_path / "in.npz", tmp_path / "ds", features="emb", labels="y", dtype="uint8"
    )
    assert ds.n_classes == 6 and _rows(ds.labels) == [[1, 3], [], [0]]
    assert list(ds.ids) == ["0", "1", "2"]
    np.testing.assert_allclose(ds.features([0, 1, 2], ("x",)), x, atol=4 / 255)


# --------------------------------------------------------------------------- bad input


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_text(text)
    return path


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    _fails(tmp_path / "nope.parquet", out, "nope.parquet", "does not exist")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    _fails(tmp_path / "bad.parquet", out, "bad.parquet", "unreadable")
    (tmp_path / "bad.npz").write_bytes(b"PK nonsense")
    _fails(tmp_path / "bad.npz", out, "bad.npz", "unreadable")
    np.save(tmp_path / "x.npy", np.zeros((2, 2)))
    _fails(tmp_path / "x.npy", out, "x.npy", "np.savez")
    (tmp_path / "x.json").write_text("{}")
    _fails(tmp_path / "x.json", out, "x.json", ".parquet, .csv")


def test_unknown_columns_list_the_available_ones(tmp_path: Path) -> None:
    path = _csv(tmp_path, "f0,f1,y\n1,2,3\n")
    out = tmp_path / "ds"
    _fails(
        path,
        out,
        "in.csv",
        "no label column 'lab'",
        "available: f0, f1, y",
        labels="lab",
        features="f*",
    )
    _fails(path, out, "no feature column 'emb'", "available: f0, f1, y", features="emb", labels="y")
    _fails(path, out, "no feature column matches 'g*'", features="g*", labels="y")
    _fails(path, out, "no id column 'vid'", features="f*", labels="y", id_column="vid")


def test_ragged_feature_dimension_names_the_row(tmp_path: Path) -> None:
    table = pa.table({"id": ["a", "b", "c"], "x": [[1.0, 2.0], [3.0, 4.0], [5.0]], "y": [0, 1, 0]})
    pq.write_table(table, tmp_path / "in.parquet")
    _fails(
        tmp_path / "in.parquet",
        tmp_path / "ds",
        "in.parquet",
        "row 'c'",
        "'x'",
        "1 values",
        "has 2",
        features="x",
        labels="y",
        id_column="id",
    )


def test_label_out_of_range_names_the_row(tmp_path: Path) -> None:
    path = _csv(tmp_path, "id,v,y\nr1,0.1,1\nr2,0.2,5\n")
    _fails(
        path,
        tmp_path / "ds",
        "in.csv",
        "row 'r2'",
        "class 5",
        "3 classes",
        "--num-classes",
        features="v",
        labels="y",
        id_column="id",
        n_classes=3,
    )


def test_non_integer_label_token_names_the_row(tmp_path: Path) -> None:
    path = _csv(tmp_path, "v,y\n0.1,1 2\n0.2,3 x 4\n")
    _fails(
        path,
        tmp_path / "ds",
        "in.csv",
        "row '1'",
        "'x'",
        "not an integer",
        "--label-type",
        features="v",
        labels="y",
        label_sep=" ",
    )
    _fails(
        path,
        tmp_path / "ds",
        "row '1'",
        "'x'",
        features="v",
        labels="y",
        label_sep=" ",
        n_classes=10,
    )


def test_nan_features_name_the_row(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "in.npz",
        features=np.array([[0.0, 1.0], [np.nan, 1.0]]),
        labels=np.array([0, 1]),
        ids=np.array(["ok", "bad"]),
    )
    _fails(tmp_path / "in.npz", tmp_path / "ds", "in.npz", "row 'bad'", "NaN")


def test_empty_inputs(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    _fails(_csv(tmp_path, ""), out, "in.csv", "unreadable", features="v", labels="y")
    _fails(_csv(tmp_path, "v,y\n"), out, "in.csv", "no rows", features="v", labels="y")
    _fails(_csv(tmp_path, "v,y\n"), out, "no rows", features="v", labels="y", n_classes=3)
    np.savez(tmp_path / "e.npz", features=np.zeros((0, 3)), labels=np.zeros(0, np.int64))
    _fails(tmp_path / "e.npz", out, "e.npz", "no rows")
    np.savez(tmp_path / "n.npz", features=np.zeros((2, 3)), labels=np.array(["", ""]))
    _fails(tmp_path / "n.npz", out, "n.npz", "holds no labels", "--num-classes")


def test_label_not_in_classes_and_multiclass_counts(tmp_path: Path) -> None:
    path = _csv(tmp_path, "v,y\n0.1,cat\n0.2,cat dog\n0.3,emu\n")
    out = tmp_path / "ds"
    _fails(
        path,
        out,
        "row '2'",
        "'emu'",
        "not in the class list",
        features="v",
        labels="y",
        label_sep=" ",
        classes=["cat", "dog"],
    )
    _fails(
        path,
        out,
        "row '1'",
        "2 labels",
        "multiclass",
        features="v",
        labels="y",
        label_sep=" ",
        task="multiclass",
    )
    _fails(
        path,
        out,
        "3 class names but n_classes is 7",
        features="v",
        labels="y",
        label_sep=" ",
        n_classes=7,
    )


def test_bad_npz_arrays(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    np.savez(tmp_path / "a.npz", features=np.zeros((3, 2)), labels=np.array([0, 1]))
    _fails(tmp_path / "a.npz", out, "a.npz", "differ in length", "'features': 3")
    np.savez(tmp_path / "b.npz", features=np.zeros((2, 2)), labels=np.array([[0, 2], [1, 0]]))
    _fails(tmp_path / "b.npz", out, "b.npz", "row 0", "0/1")
    np.savez(
        tmp_path / "c.npz",
        features=np.zeros((2, 2)),
        labels=np.array([0, 1]),
        ids=np.array(["a", None], dtype=object),
    )
    _fails(tmp_path / "c.npz", out, "c.npz", "'ids'", "dtype=str")


def test_text_in_a_glob_of_numeric_columns_names_the_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, "f0,f1,y\n1,2,0\n3,abc,1\n")
    _fails(path, tmp_path / "ds", "in.csv", "'f1'", "string", features="f*", labels="y")
    table = pa.table({"f0": [1.0, 2.0], "f1": ["1", "x"], "y": [0, 1]})
    pq.write_table(table, tmp_path / "in.parquet")
    _fails(tmp_path / "in.parquet", tmp_path / "ds", "'f1'", "string", features="f*", labels="y")


def test_a_csv_nan_cell_is_reported_as_nan_not_empty(tmp_path: Path) -> None:
    path = _csv(tmp_path, "id,f0,f1,y\na,1,2,0\nb,nan,3,1\n")
    _fails(
        path,
        tmp_path / "ds",
        "in.csv",
        "row 'b'",
        "NaN",
        features="f0,f1",
        labels="y",
        id_column="id",
    )
    path = _csv(tmp_path, "id,v,y\na,1 2,0\nb,NaN 3,1\n")
    _fails(path, tmp_path / "ds", "row 'b'", "NaN", features="v", labels="y", id_column="id")
    path = _csv(tmp_path, "id,f0,f1,y\na,1,2,0\nb,,3,1\n")
    _fails(
        path, tmp_path / "ds", "row 'b'", "is empty", features="f0,f1", labels="y", id_column="id"
    )


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_huge_label_id_is_refused_unless_num_classes_says_so(tmp_path: Path, suffix: str) -> None:
    table = pa.table({"id": ["a", "b", "c"], "v": [0.1, 0.2, 0.3], "y": [0, 2**40, 3]})
    path = tmp_path / f"in.{suffix}"
    if suffix == "csv":
        path.write_text(
            "id,v,y\n"
            + "".join(f"{i},{v},{y}\n" for i, v, y in zip(*table.to_pydict().values(), strict=True))
        )
    else:
        pq.write_table(table, path)
    _fails(
        path,
        tmp_path / "ds",
        path.name,
        "row 'b'",
        "1099511627776",
        "--num-classes",
        features="v",
        labels="y",
        id_column="id",
    )
    small = pa.table({"v": [0.1, 0.2], "y": [0, 999_999]})
    pq.write_table(small, tmp_path / "ok.parquet")
    ds = import_table(tmp_path / "ok.parquet", tmp_path / "ok", features="v", labels="y")
    assert ds.n_classes == 1_000_000
