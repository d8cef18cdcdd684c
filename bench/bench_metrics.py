"""Time GAP@k on sparse top-k predictions against the obvious scikit-learn computation.

Both run in this process on the same synthetic predictions: n rows of top-k (class, score)
pairs and CSR labels with about 3 positives a row, most of them among the row's top-k. The peer
looks the pool's labels up with scipy fancy indexing and scores the flattened pool with
``sklearn.metrics.average_precision_score``, rescaled from pool positives to all positives.

    .venv/bin/python bench/bench_metrics.py --rows 1000000 --classes 3862 --k 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import average_precision_score

from webly.core import TopK
from webly.metrics import gap_at_k


def synthetic(
    rng: np.random.Generator, n_rows: int, n_classes: int, k: int
) -> tuple[TopK, sp.csr_matrix]:
    """Top-k predictions (n_rows, k) and labels (n_rows, n_classes) with ~3 positives a row."""
    steps = rng.integers(1, n_classes // k + 1, size=(n_rows, k))  # strictly increasing offsets
    start = rng.integers(0, n_classes, size=(n_rows, 1))
    indices = ((start + np.cumsum(steps, axis=1)) % n_classes).astype(np.int32)
    scores = rng.random((n_rows, k), dtype=np.float32)
    n_labels = np.minimum(1 + rng.poisson(2.0, n_rows), k)
    slot = np.arange(k)
    in_topk = (slot < n_labels[:, None]) & (rng.random((n_rows, k)) < 0.7)
    scores[in_topk] = np.sqrt(scores[in_topk])  # positives tend to score higher
    elsewhere = rng.integers(0, n_classes, size=(n_rows, k))
    chosen = np.where(in_topk, indices, elsewhere)[slot < n_labels[:, None]]
    rows = np.repeat(np.arange(n_rows), n_labels)
    labels = sp.csr_matrix((np.ones(rows.size, np.int8), (rows, chosen)), shape=(n_rows, n_classes))
    labels.data[:] = 1  # repeated classes were summed
    return TopK(indices, scores), labels


def peer_gap(topk: TopK, labels: sp.csr_matrix) -> float:
    """GAP the obvious way: label lookup per pooled prediction, then sklearn AP on the pool."""
    rows = np.repeat(np.arange(topk.n_samples), topk.k)
    hits = np.asarray(labels[rows, topk.indices.ravel()]).ravel() > 0
    if not hits.any():
        return 0.0
    pool_ap = average_precision_score(hits, topk.scores.ravel())
    return float(pool_ap) * hits.sum() / labels.nnz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=3862)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="webly runs; the best is kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    topk, labels = synthetic(np.random.default_rng(args.seed), args.rows, args.classes, args.k)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        gap = gap_at_k(topk, labels, k=args.k)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    expected = peer_gap(topk, labels)
    peer_s = time.perf_counter() - start
    webly_s = min(times)
    print(f"GAP@{args.k} webly={gap:.6f} sklearn={expected:.6f} |diff|={abs(gap - expected):.1e}")
    print("| rows | classes | k | webly gap_at_k (s) | sklearn peer (s) | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.rows:,} | {args.classes:,} | {args.k} | {webly_s:.2f} | {peer_s:.2f} "
        f"| {peer_s / webly_s:.1f}x |"
    )


if __name__ == "__main__":
    main()
