"""Prediction store throughput, and `union_candidates` against a per-row Python set union.

Writes ``--rows`` rows x k=100 top-k predictions (3,862 classes) in blocks of 65,536 rows with
`PredictionWriter`, streams them back with `SplitView.blocks`, then builds the union of 10
models' top-20 candidates per row, against Python sets on a subset of rows. Run:

    .venv/bin/python bench/bench_predictions.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from webly.core import TopK
from webly.predictions import Predictions, PredictionWriter, union_candidates

N_CLASSES, K, BLOCK = 3862, 100, 1 << 16


def random_block(rng: np.random.Generator, n: int, n_classes: int, k: int) -> TopK:
    """``n`` rows of ``k`` distinct random classes (a random offset and stride per row)."""
    start = rng.integers(0, n_classes, size=(n, 1))
    stride = rng.choice([1, 3, 7, 11], size=(n, 1))
    indices = ((start + stride * np.arange(k)) % n_classes).astype(np.int32)
    return TopK(indices, rng.random((n, k), dtype=np.float32))


def bench_store(folder: Path, n_rows: int) -> list[str]:
    rng = np.random.default_rng(0)
    block = random_block(rng, BLOCK, N_CLASSES, K)
    writer = PredictionWriter(
        folder / "p", n_rows={"oof": n_rows}, n_classes=N_CLASSES, model={"name": "bench"}
    )
    tic = time.perf_counter()
    for start in range(0, n_rows, BLOCK):
        rows = np.arange(start, min(start + BLOCK, n_rows))
        writer.write("oof", rows, TopK(block.indices[: rows.size], block.scores[: rows.size]))
    writer.commit()
    write_s = time.perf_counter() - tic
    size_mb = sum(f.stat().st_size for f in (folder / "p").iterdir()) / 1e6
    tic = time.perf_counter()
    checksum = 0.0
    for _, topk in Predictions.open(folder / "p").oof.blocks(BLOCK):
        checksum += float(topk.scores[:, 0].sum())
    read_s = time.perf_counter() - tic
    tic = time.perf_counter()
    Predictions.open(folder / "p", verify=True)
    verify_s = time.perf_counter() - tic
    return [
        f"| write (incl. fsync + CRC32C) | {write_s:.2f} s | {n_rows / write_s:,.0f} rows/s |",
        f"| stream read (TopK blocks) | {read_s:.2f} s | {n_rows / read_s:,.0f} rows/s |",
        f"| open with verify=True | {verify_s:.2f} s | {size_mb / verify_s:,.0f} MB/s |",
        f"| on disk | {size_mb:,.0f} MB | {size_mb * 1e6 / n_rows:.0f} bytes/row |",
    ]


def naive_union(models: list[TopK], rows: np.ndarray, k: int) -> list[list[int]]:
    out = []
    for row in rows:
        seen: set[int] = set()
        for model in models:
            best = np.argsort(-model.scores[row])[:k]
            seen.update(int(c) for c in model.indices[row][best] if c >= 0)
        out.append(sorted(seen))
    return out


def bench_union(n_rows: int, n_models: int = 10, k: int = 20, n_naive: int = 20_000) -> list[str]:
    rng = np.random.default_rng(1)
    models = [random_block(rng, n_rows, N_CLASSES, k) for _ in range(n_models)]
    tic = time.perf_counter()
    union = union_candidates(models, k)
    fast_s = time.perf_counter() - tic
    subset = np.arange(min(n_naive, n_rows))
    tic = time.perf_counter()
    reference = naive_union(models, subset, k)
    naive_s = time.perf_counter() - tic
    for row in subset[:1000]:
        assert union[row][union[row] >= 0].tolist() == reference[row]
    fast_rate, naive_rate = n_rows / fast_s, subset.size / naive_s
    return [
        f"| union_candidates ({n_models} x {n_rows:,} x top-{k}) | {fast_s:.2f} s "
        f"| {fast_rate:,.0f} rows/s |",
        f"| Python set union ({subset.size:,} rows) | {naive_s:.2f} s | {naive_rate:,.0f} rows/s |",
        f"| ratio | {fast_rate / naive_rate:.0f}x | union width {union.shape[1]} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = bench_store(Path(tmp), args.rows)
    print(f"## Prediction store: {args.rows:,} rows x k={K}, {N_CLASSES} classes\n")
    print("| step | time | rate |\n|---|---|---|")
    print("\n".join(store))
    print("\n## Top-k candidate union\n")
    print("| method | time | rate |\n|---|---|---|")
    print("\n".join(bench_union(args.rows)))


if __name__ == "__main__":
    main()
