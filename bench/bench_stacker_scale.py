"""The LightGBM stacker at scale: 10 members' prediction stores, 30 candidates a row.

Writes ``--members`` synthetic prediction stores (``--classes`` classes, top ``--k``) for
``--rows`` training rows (out-of-fold) and ``--test-rows`` test rows with `PredictionWriter`,
then runs `fit_stacker` over the mean blend's top-30 candidates (``top_n=0, blend_top=30``):
exactly 30 (row, candidate) pairs a row, 3 folds, ``--rounds`` boosting rounds per fold, and
times one more pass of feature building alone (`Stacker.features` over every training row).

Planted signal: each row has 1-4 labels drawn from a long-tailed class prior and 40 shared
confusing classes; member m scores every one of them with ``sigmoid(a * (2y - 1) + e + e_m - 1)``
where ``a`` is 2.0 on the half of the classes member m is good at and 0.3 on the rest, ``e``
noise shared by the members (sd 1.5) and ``e_m`` member m's own (sd 1), so a stacker that
learns which member to trust for which class beats the mean blend.

Reports seconds per phase, the float32 feature matrix the stacker never holds, peak RSS
(``ru_maxrss``, which also counts the memory-mapped stores' file pages) and the peak of
anonymous memory (``RssAnon`` sampled every 0.1 s: what the stacker itself holds). Run:

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_stacker_scale.py --rows 1000000 --threads 1
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from webly.core import TopK
from webly.ensemble.members import Members, open_members
from webly.ensemble.stack import StackerConfig, fit_stacker
from webly.metrics.evaluate import task_metric
from webly.predictions import PredictionWriter, merge_topk

BLOCK, MAX_LABELS, CONFUSERS = 1 << 16, 4, 40
STRONG, WEAK, SHARED_NOISE, OWN_NOISE = 2.0, 0.3, 1.5, 1.0  # the planted signal (logit scale)


class AnonPeak:
    """Samples this process's anonymous resident memory (``RssAnon``) in a thread."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))

    def stop(self) -> float:
        """Peak RssAnon in GB."""
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 1e6


def distinct(classes: np.ndarray) -> np.ndarray:
    """(B, w) class ids with repeats within a row replaced by -1."""
    order = np.argsort(classes, axis=1, kind="stable")
    ordered = np.take_along_axis(classes, order, axis=1)
    repeat = np.zeros(classes.shape, dtype=bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    out = np.empty_like(classes)
    np.put_along_axis(out, order, np.where(repeat, -1, ordered), axis=1)
    return out


def block_rows(
    rng: np.random.Generator, n: int, prior: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (n, 4) and the entries members score (n, 44), class ids with -1 padding, and
    (n, 44) bool: which entries are labels."""
    n_classes = prior.size
    labels = rng.choice(n_classes, size=(n, MAX_LABELS), p=prior).astype(np.int32)
    labels[np.arange(MAX_LABELS) >= rng.integers(1, MAX_LABELS + 1, size=(n, 1))] = -1
    labels = distinct(labels)
    confusers = rng.choice(n_classes, size=(n, CONFUSERS), p=prior).astype(np.int32)
    entries = distinct(np.concatenate([labels, confusers], axis=1))
    truth = (entries[:, :, None] == labels[:, None, :]).any(axis=2) & (entries >= 0)
    return labels, entries, truth


def make_zoo(
    folder: Path, args: argparse.Namespace
) -> tuple[Members, sp.csr_matrix, sp.csr_matrix]:
    """Write the member stores; returns the members and the train and test labels."""
    rng = np.random.default_rng(0)
    prior = 1.0 / (np.arange(args.classes) + 10.0)
    prior /= prior.sum()
    good = rng.random((args.members, args.classes)) < 0.5  # (M, C) classes a member knows
    n_rows = {"oof": args.rows, "test": args.test_rows}
    writers = [
        PredictionWriter(
            folder / f"m{m}",
            n_rows=n_rows,
            n_classes=args.classes,
            model={"name": f"m{m}"},
            k=args.k,
        )
        for m in range(args.members)
    ]
    labels = {}
    for split, n in n_rows.items():
        rows, cols = [], []
        for start in range(0, n, BLOCK):
            block = np.arange(start, min(start + BLOCK, n))
            lab, entries, truth = block_rows(rng, block.size, prior)
            shared = rng.normal(0, SHARED_NOISE, entries.shape)  # what no blend averages away
            r, c = np.nonzero(lab >= 0)
            rows.append(block[r])
            cols.append(lab[r, c])
            for m, writer in enumerate(writers):
                strength = np.where(good[m][np.maximum(entries, 0)], STRONG, WEAK)
                noise = shared + rng.normal(0, OWN_NOISE, entries.shape)
                logit = strength * (2 * truth - 1) + noise - 1
                scores = (1 / (1 + np.exp(-logit))).astype(np.float32)
                writer.write(split, block, TopK(entries, scores))
        r, c = np.concatenate(rows), np.concatenate(cols)
        labels[split] = sp.csr_matrix(
            (np.ones(r.size, np.float32), (r, c)), shape=(n, args.classes)
        )
    for writer in writers:
        writer.commit()
    paths = {f"m{m}": folder / f"m{m}" for m in range(args.members)}
    return open_members(paths, ("oof", "test")), labels["oof"], labels["test"]


def blend_gap(members: Members, split: str, labels: sp.csr_matrix) -> float:
    """GAP@20 of the members' mean blend, merged a block of rows at a time."""
    n = members.n_rows(split)
    parts = [merge_topk(members.topk(split, slice(s, s + BLOCK)), k=20) for s in range(0, n, BLOCK)]
    merged = TopK(
        np.concatenate([p.indices for p in parts]), np.concatenate([p.scores for p in parts])
    )
    return task_metric(merged, labels, "multilabel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--test-rows", type=int, default=None, help="default: rows / 10")
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: temp)")
    args = parser.parse_args()
    args.test_rows = args.test_rows or max(args.rows // 10, 1)
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        folder = Path(scratch)
        tic = time.perf_counter()
        members, labels, test_labels = make_zoo(folder, args)
        print(
            f"wrote {args.members} stores of {args.rows:,} oof + {args.test_rows:,} test rows, "
            f"{args.classes} classes, k={args.k}: {time.perf_counter() - tic:.1f} s"
        )
        config = StackerConfig(
            top_n=0, blend_top=30, keep=30, rounds=args.rounds, threads=args.threads
        )
        folds = np.random.default_rng(1).integers(0, 3, size=args.rows)
        anon = AnonPeak()
        tic = time.perf_counter()
        result = fit_stacker(
            members, labels, folds, "multilabel", config, out_dir=folder / "stacker"
        )
        fit_s = time.perf_counter() - tic
        tic = time.perf_counter()
        n_pairs = 0
        for start in range(0, args.rows, config.block_rows):
            block = slice(start, min(start + config.block_rows, args.rows))
            n_pairs += result.stacker.features(members.topk("oof", block))[1].shape[0]
        features_s = time.perf_counter() - tic
        anon_gb = anon.stop()
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        n_features = len(result.feature_names)
        assert result.test is not None
        blend_oof = blend_gap(members, "oof", labels)
        blend_test = blend_gap(members, "test", test_labels)
        seconds = result.seconds
        print(
            f"pairs: {n_pairs:,} ({n_pairs / args.rows:.1f} a row), {n_features} features; "
            f"float32 feature matrix (never held): {n_pairs * n_features * 4 / 1e9:.2f} GB "
            f"({n_features * 4} bytes a pair)"
        )
        print(
            f"fit_stacker total: {fit_s:.1f} s ({args.threads} LightGBM thread(s), "
            f"3 folds x {args.rounds} rounds, num_leaves {config.num_leaves})"
        )
        for name, what in (
            ("pairs", "candidate scan (candidates + targets of every row)"),
            ("prepare", "bin sample + one feature pass pushed into LightGBM's binned dataset"),
            ("train", f"3 fold boosters x {args.rounds} rounds"),
            ("oof", "one feature pass + each row predicted by its fold booster"),
            ("test", f"feature pass + 3 boosters on {args.test_rows:,} test rows"),
        ):
            print(f"  {name:8s} {seconds[name]:8.1f} s  {what}")
        print(
            f"feature building alone, every training row: {features_s:.1f} s "
            f"({args.rows / features_s:,.0f} rows/s, {n_pairs / features_s:,.0f} pairs/s)"
        )
        print(
            f"peak RSS (ru_maxrss, incl. mapped store pages): {peak_gb:.2f} GB; "
            f"peak RssAnon: {anon_gb:.2f} GB"
        )
        print(
            f"GAP@20 oof: stacker {result.metric:.4f} vs mean blend {blend_oof:.4f}; "
            f"test: stacker {task_metric(result.test, test_labels, 'multilabel'):.4f} "
            f"vs mean blend {blend_test:.4f}"
        )


if __name__ == "__main__":
    main()
