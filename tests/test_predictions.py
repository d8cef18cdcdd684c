"""The prediction store: round trips, coverage, atomicity, checksums, merge and union."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from webly.core import TopK
from webly.errors import ConfigError, DataError
from webly.predictions import Predictions, PredictionWriter, merge_topk, union_candidates

MODEL = {"name": "resnet_av", "hidden": 64}


def random_topk(rng: np.random.Generator, n: int, n_classes: int, k: int) -> TopK:
    """Random sparse predictions with distinct ids per row and some padded rows."""
    indices = np.argsort(rng.random((n, n_classes)), axis=1)[:, :k].astype(np.int32)
    scores = rng.random((n, k)).astype(np.float32)
    indices[::7, k // 2 :] = -1
    return TopK(indices, scores)


def float16_close(stored: np.ndarray, written: np.ndarray) -> bool:
    """The float16 rounding bound the module documents: max(|x| * 2**-11, 2**-25)."""
    bound = np.maximum(np.abs(written) * 2.0**-11, 2.0**-25)
    return bool((np.abs(stored - written) <= bound).all())


def write_in_folds(path: Path, scores: np.ndarray, k: int, **kwargs: object) -> Predictions:
    n = scores.shape[0]
    folds = np.random.default_rng(1).integers(0, 3, size=n)
    writer = PredictionWriter(
        path, n_rows={"oof": n}, n_classes=scores.shape[1], model=MODEL, k=k, **kwargs
    )
    for fold in range(3):
        rows = np.flatnonzero(folds == fold)[::-1]
        writer.write("oof", rows, scores[rows])
    return writer.commit({str(f): {"gap": 0.5 + f} for f in range(3)})


def test_dense_round_trip_out_of_order(tmp_path: Path) -> None:
    scores = np.random.default_rng(0).random((500, 12)).astype(np.float32)
    preds = write_in_folds(tmp_path / "p", scores, k=20)
    assert preds.manifest["layout"] == "dense"
    assert not list((tmp_path / "p").glob("*indices*"))
    assert preds.model == MODEL and preds.fold_metrics["2"] == {"gap": 2.5}
    assert preds.n_classes == 12 and preds.k == 12 and len(preds.oof) == 500
    dense = preds.dense("oof")
    assert dense.dtype == np.float32 and float16_close(dense, scores)
    top = preds.topk("oof", [3, 1])
    assert top.k == 12 and np.array_equal(top.indices[:, 0], scores[[3, 1]].argmax(axis=1))


def test_sparse_round_trip_from_dense_and_topk(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((400, 50)).astype(np.float32)
    preds = write_in_folds(tmp_path / "p", scores, k=5)
    top = preds.oof.topk()
    expected = np.sort(scores, axis=1)[:, ::-1][:, :5]
    assert float16_close(top.scores, expected)
    picked = np.take_along_axis(scores, top.indices, axis=1)  # the 5 best, in float16 order:
    assert np.array_equal(np.sort(picked, axis=1)[:, ::-1], expected)
    tied = top.scores[:, 1:] == top.scores[:, :-1]  # ties in float16 go by ascending class
    assert (top.scores[:, 1:] <= top.scores[:, :-1]).all()
    assert (top.indices[:, 1:][tied] > top.indices[:, :-1][tied]).all() and tied.any()
    dense = Predictions.open(tmp_path / "p", verify=True).dense("oof", np.arange(10))
    assert (dense > 0).sum(axis=1).tolist() == [5] * 10

    topk = random_topk(rng, 300, 50, 8)
    writer = PredictionWriter(tmp_path / "q", n_rows={"test": 300}, n_classes=50, model=MODEL, k=10)
    order = rng.permutation(300)
    for block in np.array_split(order, 4):
        writer.write("test", block, TopK(topk.indices[block], topk.scores[block]))
    back = writer.commit().test.topk()
    assert back.k == 10 and (back.indices[:, 8:] == -1).all()
    for row in (0, 1, 7):
        keep = topk.indices[row] >= 0
        assert dict(zip(back.indices[row], back.scores[row], strict=True)).keys() >= set(
            topk.indices[row][keep]
        )
        assert float16_close(
            np.sort(back.scores[row][back.indices[row] >= 0]), np.sort(topk.scores[row][keep])
        )
    blocks = list(Predictions.open(tmp_path / "q").test.blocks(128))
    assert [start for start, _ in blocks] == [0, 128, 256]
    assert np.array_equal(np.concatenate([b.indices for _, b in blocks]), back.indices)


@pytest.mark.parametrize("problem", ["missing", "twice"])
def test_oof_coverage_is_exact(tmp_path: Path, problem: str) -> None:
    scores = np.random.default_rng(0).random((20, 4)).astype(np.float32)
    writer = PredictionWriter(tmp_path / "p", n_rows={"oof": 20}, n_classes=4, model=MODEL)
    rows = np.arange(20)
    writer.write(
        "oof",
        rows[1:] if problem == "missing" else rows,
        scores[1:] if problem == "missing" else scores,
    )
    if problem == "twice":
        writer.write("oof", [5], scores[[5]])
    message = "never written (first: row 0)" if problem == "missing" else "written twice"
    with pytest.raises(DataError, match=r"1 of 20 oof rows were " + message.split(" (")[0]):
        writer.commit()
    assert not (tmp_path / "p").exists() and not list(tmp_path.iterdir())


def test_a_rerun_removes_a_killed_writers_temporary(tmp_path: Path) -> None:
    from webly._fs import HOST

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    )
    stale = tmp_path / f".predictions.tmp-{HOST}-{int(dead.stdout)}-0123456789ab"
    stale.mkdir()  # what a run killed while writing zoo/<member>/predictions left
    (stale / "oof.scores.npy").write_bytes(b"half")
    scores = np.random.default_rng(0).random((10, 3)).astype(np.float32)
    write_in_folds(tmp_path / "predictions", scores, k=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions"]
    assert float16_close(Predictions.open(tmp_path / "predictions").dense("oof"), scores)


def test_overwrite_rules(tmp_path: Path) -> None:
    scores = np.random.default_rng(0).random((10, 3)).astype(np.float32)
    write_in_folds(tmp_path / "p", scores, k=5)
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        PredictionWriter(tmp_path / "p", n_rows={"oof": 10}, n_classes=3, model=MODEL)
    with PredictionWriter(
        tmp_path / "p", n_rows={"oof": 10}, n_classes=3, model=MODEL, overwrite=True
    ) as writer:
        writer.write("oof", np.arange(10), scores)
    assert Predictions.open(tmp_path / "p").model == MODEL  # left without commit: old store kept
    write_in_folds(tmp_path / "p", 1 - scores, k=5, overwrite=True)
    assert float16_close(Predictions.open(tmp_path / "p").dense("oof"), 1 - scores)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_rows takes 'oof' and/or 'test'"):
        PredictionWriter(tmp_path / "p", n_rows={"train": 3}, n_classes=3, model=MODEL)
    with pytest.raises(ConfigError, match="not JSON-serialisable"):
        PredictionWriter(tmp_path / "p", n_rows={"oof": 3}, n_classes=3, model={"f": object()})
    writer = PredictionWriter(tmp_path / "p", n_rows={"oof": 3}, n_classes=3, model=MODEL)
    with pytest.raises(DataError, match=r"oof rows range over 0..3 but the split has 3 rows"):
        writer.write("oof", [0, 3], np.zeros((2, 3)))
    with pytest.raises(DataError, match=r"pass real \(B, n_classes\) = \(1, 3\)"):
        writer.write("oof", [0], np.zeros((1, 4)))
    with pytest.raises(DataError, match="split 'test' was not declared"):
        writer.write("test", [0], np.zeros((1, 3)))
    with pytest.raises(DataError, match="overflows float16"):
        writer.write("oof", [0], np.full((1, 3), 1e6))
    writer.abort()
    with pytest.raises(DataError, match=r"no manifest.json \(it does not exist"):
        Predictions.open(tmp_path / "p")


def test_killed_before_commit_leaves_nothing_that_opens(tmp_path: Path) -> None:
    script = (
        "import os, signal, numpy as np\n"
        "from webly.predictions import PredictionWriter\n"
        f"w = PredictionWriter({str(tmp_path / 'p')!r}, n_rows={{'oof': 100}}, n_classes=300,"
        " model={}, k=10)\n"
        "w.write('oof', np.arange(100), np.random.default_rng(0).random((100, 300)))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == -9
    assert not (tmp_path / "p").exists()
    with pytest.raises(DataError, match=r"no manifest\.json"):
        Predictions.open(tmp_path / "p")


def test_checksum_detects_a_flipped_byte(tmp_path: Path) -> None:
    scores = np.random.default_rng(0).random((100, 40)).astype(np.float32)
    write_in_folds(tmp_path / "p", scores, k=5)
    file = tmp_path / "p" / "oof.indices.npy"
    data = bytearray(file.read_bytes())
    data[-7] ^= 0x10
    file.write_bytes(bytes(data))
    Predictions.open(tmp_path / "p")  # sizes still match: only verify notices
    with pytest.raises(DataError, match=r"oof\.indices\.npy: checksum mismatch"):
        Predictions.open(tmp_path / "p", verify=True)
    file.write_bytes(bytes(data[:-6]))
    with pytest.raises(DataError, match=r"expected \d+ bytes, found"):
        Predictions.open(tmp_path / "p")


def naive_merge(preds: list[TopK], weights: list[float], row: int) -> dict[int, float]:
    total: dict[int, float] = {}
    for p, w in zip(preds, weights, strict=True):
        for c, s in zip(p.indices[row], p.scores[row], strict=True):
            if c >= 0:
                total[int(c)] = total.get(int(c), 0.0) + w * float(s) / sum(weights)
    return total


def test_merge_topk_matches_a_naive_reference() -> None:
    rng = np.random.default_rng(0)
    preds = [random_topk(rng, 200, 30, 6), random_topk(rng, 200, 30, 4)]
    merged = merge_topk(preds, [2.0, 1.0], k=5)
    assert merged.indices.shape == (200, 5)
    for row in range(200):
        reference = naive_merge(preds, [2.0, 1.0], row)
        best = sorted(reference.values(), reverse=True)[:5]
        got = merged.scores[row][merged.indices[row] >= 0]
        np.testing.assert_allclose(got, best, rtol=1e-5)
        for c, s in zip(merged.indices[row], merged.scores[row], strict=True):
            if c >= 0:
                assert reference[int(c)] == pytest.approx(s, rel=1e-5)
    everything = merge_topk(preds, k=10)
    assert (everything.indices >= 0).sum() == sum(
        len(naive_merge(preds, [1, 1], r)) for r in range(200)
    )
    with pytest.raises(ConfigError, match="one finite weight >= 0 per prediction"):
        merge_topk(preds, [1.0])


def test_union_candidates_matches_python_sets() -> None:
    rng = np.random.default_rng(0)
    preds = [random_topk(rng, 300, 40, 8) for _ in range(4)]
    union = union_candidates(preds, k=3)
    for row in range(300):
        expected: set[int] = set()
        for p in preds:
            order = np.argsort(-p.scores[row], kind="stable")[:3]
            expected |= {int(c) for c in p.indices[row][order] if c >= 0}
        got = union[row][union[row] >= 0]
        assert got.tolist() == sorted(expected)
        assert (union[row][got.size :] == -1).all()
    assert union.shape[1] == max(len(set(r[r >= 0])) for r in union)


@pytest.mark.slow
def test_streaming_write_holds_one_block(tmp_path: Path) -> None:
    n, k, n_classes, block = 200_000, 100, 1000, 2_000
    rng = np.random.default_rng(0)
    indices = np.tile(np.arange(k, dtype=np.int32), (block, 1))
    topk = TopK(indices, rng.random((block, k)).astype(np.float32))
    writer = PredictionWriter(tmp_path / "p", n_rows={"oof": n}, n_classes=n_classes, model=MODEL)
    tracemalloc.start()
    for start in range(0, n, block):
        writer.write("oof", np.arange(start, start + block), topk)
    preds = writer.commit()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    on_disk = n * k * (4 + 2)
    assert peak < on_disk / 10, f"peak {peak / 1e6:.1f} MB for {on_disk / 1e6:.0f} MB of rows"
    assert np.array_equal(np.sort(preds.topk("oof", [n - 1]).indices[0]), np.arange(k))
