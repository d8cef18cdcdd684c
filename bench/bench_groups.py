"""Issue 6 (part): group aggregation, test-time augmentation and pseudo-labels on the
products-like benchmark, scored per product on the clean test labels.

One generated catalogue (`synth_products_like`: noisy training labels, clean test split, 1–4
rows a product). An MLP on the ``image`` features is trained on the noisy training rows for a
fixed number of epochs (no validation split, so no early stopping), once per ``--seeds``, and
scores the test rows:

* aggregation: product accuracy of a single instance (the product's first row) against the
  ``mean`` and the ``belief`` aggregation of its rows (`webly.ensemble.aggregate`), on the
  predictions as they are and with ``--outliers`` of the rows of products with 3 or more rows
  replaced by the predictions of a random row of another product (a listing photo of
  something else, which the generator does not make);
* TTA: the same, with the mean of ``--views`` views (`webly.ensemble.tta`), feature dropout at
  ``--dropout`` or Gaussian noise of std ``--noise`` (the features' std is about 0.37);
* pseudo-labels: the same network trained again (same seed) with the confident test
  predictions of the first model as pseudo-labels (`webly.distill.pseudo`: Cdiscount's
  schedule, 0 up to epoch ``--t1``, linear to ``--alpha-f`` at ``--t2``), taken per row (top-1
  probability >= ``--threshold``) or per product (its belief prediction, given to all its rows).
  The pseudo-labels are of the very test rows that are scored (transductive, as Cdiscount
  pseudo-labeled its test set); their labels are never read.

Prints markdown tables (mean and spread over the seeds) and the command. Run:

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_groups.py [--classes 200] [--products 6000]
        [--test-per-class 10] [--epochs 12] [--seeds 3] [--threads 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from webly.core import TopK
from webly.data import Dataset
from webly.data.products import ProductsLikeConfig, synth_products_like
from webly.distill.pseudo import PseudoLabels, select_pseudo_labels
from webly.ensemble.aggregate import aggregate_groups, group_index, group_labels
from webly.ensemble.tta import scores_topk, tta_scores
from webly.metrics.ranking import hit_at_1
from webly.models import create_model
from webly.train import TrainConfig, fit, iter_scores

GROUPS = ("image",)
K = 20
METHODS = ("first", "mean", "belief")


def train_model(
    train: Dataset, seed: int, epochs: int, workdir: Path, pseudo: PseudoLabels | None = None
) -> Any:
    torch.manual_seed(seed)
    model = create_model(
        "mlp", train.n_classes, {"image": train.layout.feature("image").dim},
        hidden=[512], dropout=0.3, batchnorm=True,
    )  # fmt: skip
    config = TrainConfig(epochs=epochs, batch_size=128, lr=2e-3, warmup_epochs=1.0, seed=seed)
    fit(model, train, None, config, GROUPS, workdir, pseudo=pseudo)
    return model


def with_outliers(topk: TopK, groups: np.ndarray, share: float, seed: int) -> TopK:
    """``share`` of the rows of groups of 3+ rows take the predictions of a random row of
    another group."""
    rng = np.random.default_rng(seed)
    _, group_of, counts = np.unique(groups, return_inverse=True, return_counts=True)
    eligible = np.flatnonzero(counts[group_of] >= 3)
    hit = rng.choice(eligible, size=round(share * eligible.size), replace=False)
    donors = rng.integers(0, groups.size, size=hit.size)
    same = group_of[donors] == group_of[hit]
    donors[same] = (donors[same] + counts[group_of[hit[same]]]) % groups.size  # leave the group
    indices, scores = topk.indices.copy(), topk.scores.copy()
    indices[hit], scores[hit] = topk.indices[donors], topk.scores[donors]
    return TopK(indices, scores)


def group_accuracy(topk: TopK, groups: np.ndarray, truth: sp.csr_matrix) -> dict[str, float]:
    return {
        method: hit_at_1(aggregate_groups(topk, groups, method)[1], truth)  # type: ignore[arg-type]
        for method in METHODS
    }


def pseudo_labels(
    topk: TopK, test: Dataset, groups: np.ndarray, how: str, args: argparse.Namespace
) -> PseudoLabels:
    """Confident test predictions as pseudo-labels: per row, or per product (belief)."""
    if how == "row":
        rows, targets = select_pseudo_labels(topk, "multiclass", args.threshold, test.n_classes)
    else:
        _, per_group = aggregate_groups(topk, groups, "belief")
        chosen, group_targets = select_pseudo_labels(
            per_group, "multiclass", args.threshold, test.n_classes
        )
        _, group_of = group_index(groups)
        position = np.full(per_group.n_samples, -1)
        position[chosen] = np.arange(chosen.size)
        rows = np.flatnonzero(position[group_of] >= 0)
        targets = group_targets[position[group_of[rows]]]
    return PseudoLabels(test, rows, targets, args.t1, args.t2, args.alpha_f)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--products", type=int, default=6000)
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--outliers", type=float, default=0.2)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--dropout", type=float, default=0.05)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--t1", type=float, default=4)
    parser.add_argument("--t2", type=float, default=8)
    parser.add_argument("--alpha-f", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    root = args.out or Path(tempfile.mkdtemp(prefix="webly-groups-"))
    config = ProductsLikeConfig(
        n_classes=args.classes,
        n_products=args.products,
        test_products_per_class=args.test_per_class,
    )
    summary = synth_products_like(root / "data", config, overwrite=True)
    train, test = Dataset.open(root / "data" / "train"), Dataset.open(root / "data" / "test")
    groups = test.groups
    assert groups is not None
    truth = group_labels(test.labels, groups, "multiclass")
    n_groups, sizes = truth.shape[0], np.unique(groups, return_counts=True)[1]

    rows: dict[str, list[dict[str, float]]] = {}
    pseudo_rows: dict[str, list[float]] = {}

    def record(name: str, topk: TopK) -> None:
        figures = {"row": hit_at_1(topk, test.labels), **group_accuracy(topk, groups, truth)}
        rows.setdefault(name, []).append(figures)

    for seed in range(args.seeds):
        model = train_model(train, seed, args.epochs, root / f"off-{seed}")
        plain = scores_topk(iter_scores(model, test, GROUPS), K)
        record("as generated", plain)
        record(
            f"{args.outliers:.0%} outlier rows", with_outliers(plain, groups, args.outliers, seed)
        )
        for label, perturb in (
            (f"dropout {args.dropout:g}", {"dropout": args.dropout}),
            (f"noise {args.noise:g}", {"dropout": 0.0, "noise": args.noise}),
        ):
            views = tta_scores(model, test, GROUPS, args.views, seed=seed, **perturb)
            record(f"TTA, {args.views} views, {label}", scores_topk(views, K))
        for how in ("row", "product"):
            pseudo = pseudo_labels(plain, test, groups, how, args)
            correct = (pseudo.targets.multiply(test.labels[pseudo.rows])).sum()
            pseudo_rows.setdefault(f"{how} share", []).append(pseudo.rows.size / len(test))
            pseudo_rows.setdefault(f"{how} precision", []).append(
                float(correct) / max(pseudo.rows.size, 1)
            )
            tuned = train_model(train, seed, args.epochs, root / f"{how}-{seed}", pseudo)
            record(f"pseudo-labels per {how}", scores_topk(iter_scores(tuned, test, GROUPS), K))

    print(f"`{' '.join(['.venv/bin/python', *map(shlex.quote, sys.argv)])}`\n")
    print(
        f"products-like: {summary.train_rows:,} train rows ({summary.train_products:,} products, "
        f"realized noise {summary.noise['products_changed']:.1%} of products), "
        f"{len(test):,} clean test rows in {n_groups:,} products (rows per product: "
        + ", ".join(f"{s}: {c}" for s, c in zip(*np.unique(sizes, return_counts=True), strict=True))
        + f"), {args.classes} classes; mlp [512], {args.epochs} epochs, seeds 0..{args.seeds - 1} "
        "(mean +- std).\n"
    )
    print("| predictions | row accuracy | product: first row | product: mean | product: belief |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in rows.items():
        cells = [_cell([r[key] for r in runs]) for key in ("row", *METHODS)]
        print(f"| {name} | {' | '.join(cells)} |")
    print(
        f"\npseudo-labels (threshold {args.threshold}, alpha 0 to epoch {args.t1:g}, "
        f"{args.alpha_f:g} from epoch {args.t2:g}): "
        + "; ".join(f"{name} {_cell(values)}" for name, values in pseudo_rows.items())
    )
    print(f"\n{time.perf_counter() - started:.0f} s in all, {args.threads} thread(s).")


def _cell(values: list[float]) -> str:
    return f"{np.mean(values):.4f} +- {np.std(values):.4f}"


if __name__ == "__main__":
    main()
