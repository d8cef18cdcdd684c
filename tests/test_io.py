"""Tests of webly.io: Kaggle submission files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from webly.core import TopK
from webly.errors import DataError, WeblyWarning
from webly.io import align_submission, read_submission, write_submission
from webly.metrics import gap_at_k


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    topk = TopK(
        np.array([[2, 0, -1], [1, 3, 0]]), np.array([[0.25, 0.75, 0.0], [0.5, 0.1234567, 0.9]])
    )
    path = tmp_path / "sub.csv"
    write_submission(path, ["a", "b"], topk)
    assert path.read_text().splitlines() == [
        "VideoId,LabelConfidencePairs",
        "a,0 0.750000 2 0.250000",
        "b,0 0.900000 1 0.500000 3 0.123457",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]  # no temp file left
    ids, back = read_submission(path, None, n_classes=4)
    assert ids == ["a", "b"]
    np.testing.assert_array_equal(back.indices, [[0, 2, -1], [0, 1, 3]])
    np.testing.assert_allclose(back.scores, [[0.75, 0.25, -np.inf], [0.9, 0.5, 0.123457]])


def test_write_uses_class_names_and_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "sub.csv"
    path.write_text("old")
    topk = TopK(np.array([[1, 0]]), np.array([[0.5, 0.25]]))
    write_submission(path, ["v"], topk, class_ids=[17, "x"])
    assert path.read_text().splitlines()[1] == "v,x 0.500000 17 0.250000"
    with pytest.raises(DataError, match="holds a comma"):
        write_submission(path, ["a,b"], topk)
    assert path.read_text().splitlines()[1] == "v,x 0.500000 17 0.250000"  # untouched
    assert sorted(os.listdir(tmp_path)) == ["sub.csv"]


@pytest.mark.parametrize(
    ("ids", "class_ids", "where", "message"),
    [
        (["a", "b"], None, "sub.csv", "2 ids for 1 rows"),
        (["a"], ["only"], "sub.csv", "class 1 but class_ids name only 1"),
        (["a"], None, "missing/sub.csv", "does not exist"),
    ],
)
def test_write_errors(
    tmp_path: Path, ids: list[str], class_ids: list[str] | None, where: str, message: str
) -> None:
    topk = TopK(np.array([[1, 0]]), np.array([[0.5, 0.25]]))
    with pytest.raises(DataError, match=message):
        write_submission(tmp_path / where, ids, topk, class_ids=class_ids)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("Id,Labels\n", r"sub.csv:1: header is 'Id,Labels'"),
        ("", "header is ''"),
        ("VideoId,LabelConfidencePairs\na,1 0.5\nb,1 0.5 2\n", r"sub.csv:3: 3 tokens .* odd"),
        ("VideoId,LabelConfidencePairs\na,x 0.5\n", r"sub.csv:2: pair 'x' '0.5' is not"),
        ("VideoId,LabelConfidencePairs\na,1 high\n", r"sub.csv:2: pair '1' 'high'"),
        ("VideoId,LabelConfidencePairs\na,1 nan\n", r"sub.csv:2: score 'nan' is not a finite"),
        ("VideoId,LabelConfidencePairs\na,4 0.5\n", r"sub.csv:2: class 4 is outside 0..3"),
        ("VideoId,LabelConfidencePairs\na,-1 0.5\n", r"sub.csv:2: class -1 is outside"),
        ("VideoId,LabelConfidencePairs\na,1 0.5 1 0.2\n", r"sub.csv:2: class 1 appears twice"),
        ("VideoId,LabelConfidencePairs\nno comma\n", r"sub.csv:2: expected 'id,cls score"),
        ("VideoId,LabelConfidencePairs\n,1 0.5\n", r"sub.csv:2: expected"),
        ("VideoId,LabelConfidencePairs\nzz,1 0.5\n", r"sub.csv:2: id 'zz' is not in the"),
    ],
)
def test_read_errors_name_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "sub.csv"
    path.write_text(body)
    with pytest.raises(DataError, match=message):
        read_submission(path, {"a": 0, "b": 1}, n_classes=4)


def test_read_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such submission file"):
        read_submission(tmp_path / "nope.csv", None, 4)
    with pytest.raises(DataError, match="cannot read the submission"):
        read_submission(tmp_path, None, 4)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"VideoId,LabelConfidencePairs\n\xff\xfe,1 0.5\n")
    with pytest.raises(DataError, match=r"bin.csv: cannot read .* UTF-8"):
        read_submission(binary, None, 4)


def test_read_warns_on_duplicates_and_keeps_the_first(tmp_path: Path) -> None:
    path = tmp_path / "sub.csv"
    path.write_text("VideoId,LabelConfidencePairs\na,1 0.5\n\nb,\na,2 0.9\n")
    with pytest.warns(WeblyWarning, match=r"1 repeated ids, first 'a' on line 5 .*line 2"):
        ids, topk = read_submission(path, None, n_classes=4)
    assert ids == ["a", "b"]
    np.testing.assert_array_equal(topk.indices, [[1], [-1]])


def test_align_to_store_and_gap_counts_missing_rows(tmp_path: Path) -> None:
    path = tmp_path / "sub.csv"
    path.write_text("VideoId,LabelConfidencePairs\nc,0 0.9 1 0.4\na,1 0.8\n")
    ids, topk = read_submission(path, None, n_classes=3)
    store = ["a", "b", "c"]
    aligned = align_submission(ids, topk, store)
    np.testing.assert_array_equal(aligned.indices, [[1, -1], [-1, -1], [0, 1]])
    labels = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [1, 0, 0]]))
    # pool: 0.9 H (c,0), 0.8 H (a,1), 0.4 M (c,1); 4 positives (b's two count):
    assert gap_at_k(aligned, labels) == pytest.approx((1 + 1) / 4)


def test_align_errors() -> None:
    topk = TopK(np.array([[0], [1]]), np.array([[0.5], [0.5]]))
    with pytest.raises(DataError, match="2 submission ids are not in the store, first 'x'"):
        align_submission(["x", "y"], topk, ["a"])
    with pytest.raises(DataError, match="submission ids repeat"):
        align_submission(["a", "a"], topk, ["a"])
    with pytest.raises(DataError, match="store ids repeat"):
        align_submission(["a", "b"], topk, ["a", "b", "a"])
    with pytest.raises(DataError, match="1 submission ids for 2 rows"):
        align_submission(["a"], topk, ["a"])


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_submission_follows_the_umask(tmp_path: Path, umask: int) -> None:
    topk = TopK(np.array([[1, 0]]), np.array([[0.5, 0.25]]))
    previous = os.umask(umask)
    try:
        write_submission(tmp_path / "sub.csv", ["a"], topk)
    finally:
        os.umask(previous)
    assert (tmp_path / "sub.csv").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_rewrite_removes_a_killed_writers_temporary(tmp_path: Path) -> None:
    import subprocess
    import sys

    from webly._fs import HOST

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    )
    stale = tmp_path / f".sub.csv.tmp-{HOST}-{int(dead.stdout)}-0123456789ab"
    stale.write_text("VideoId,LabelConfidencePairs\na,0 0.5")  # killed half-way
    write_submission(tmp_path / "sub.csv", ["a"], TopK(np.array([[1]]), np.array([[0.5]])))
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]
    assert read_submission(tmp_path / "sub.csv", None, 2)[0] == ["a"]
