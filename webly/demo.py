"""What ``make demo`` runs: a generated YouTube-8M-like benchmark -> statistics -> two baselines
trained on the noisy train split and scored on the clean test split (and, for contrast, logistic
regression trained on the true labels)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from rich.console import Console
from rich.table import Table

from webly.baselines import class_prior_scores, fit_logistic, predict_logistic
from webly.data import Dataset
from webly.data.stats import dataset_stats
from webly.data.synth import YT8MLikeConfig, synth_yt8m_like
from webly.metrics import gap_at_k, hit_at_1, mean_average_precision, perr


def run_demo(
    out: Path,
    seed: int = 0,
    console: Console | None = None,
    n_videos: int = 4000,
    n_classes: int = 200,
) -> dict[str, dict[str, float]]:
    """Generate the benchmark into ``out / "yt8m-like"`` (replacing it), print its statistics
    and the baselines' scores; returns ``{model: {metric: value}}``.

    ``n_videos`` train videos (a quarter as many test and unlabeled ones) over ``n_classes``
    classes, video level, default noise (30% of true labels missing, 10% of given labels
    spurious, 5% of videos with an instance-dependent error).
    """
    console = console or Console()
    started = time.perf_counter()
    config = YT8MLikeConfig(videos=n_videos, classes=n_classes, seed=seed)
    summary = synth_yt8m_like(Path(out) / "yt8m-like", config, overwrite=True)
    console.print(str(summary))
    train = Dataset.open(summary.out / "train")
    test = Dataset.open(summary.out / "test")
    stats = Table(title="train split", show_header=False, title_justify="left")
    for name, value in dataset_stats(train).lines():
        stats.add_row(name, value)
    console.print(stats)

    truth, clean_train = test.clean_labels, train.clean_labels
    assert truth is not None and clean_train is not None  # the generator stores both
    x_train = train.features(np.arange(len(train)))
    x_test = test.features(np.arange(len(test)))
    results: dict[str, dict[str, float]] = {}
    begin = time.perf_counter()
    prior = class_prior_scores(train.labels, len(test))
    results["class prior"] = _score(prior, truth, time.perf_counter() - begin)
    for name, labels in (
        ("logistic regression", train.labels),
        ("logistic regression on true labels", clean_train),
    ):
        begin = time.perf_counter()
        weight, bias = fit_logistic(x_train, labels)
        scores = predict_logistic(x_test, weight, bias)
        results[name] = _score(scores, truth, time.perf_counter() - begin)

    table = Table(
        title=f"trained on {len(train):,} train videos, scored on the {len(test):,} clean test "
        "videos",
        title_justify="left",
    )
    for column in ("model", "GAP@20", "hit@1", "PERR", "mAP", "seconds"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model, row in results.items():
        table.add_row(
            model, *(f"{v:.4f}" if name != "seconds" else f"{v:.1f}" for name, v in row.items())
        )
    console.print(table)
    console.print(
        "The first two train on the given (noisy) labels, the last on the generator's true "
        f"labels: the gap is what label noise costs. Demo finished in "
        f"{time.perf_counter() - started:.1f} s."
    )
    return results


def _score(scores: np.ndarray, truth: sp.csr_matrix, seconds: float) -> dict[str, float]:
    return {
        "gap": gap_at_k(scores, truth, k=20),
        "hit1": hit_at_1(scores, truth),
        "perr": perr(scores, truth),
        "map": mean_average_precision(scores, truth),
        "seconds": seconds,
    }
