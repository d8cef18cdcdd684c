"""What ``make demo`` runs: generated YouTube-8M-like TFRecord files -> import -> statistics ->
two baselines scored on a held-out fold, against the given (noisy) and the true labels."""

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
from webly.data.synth import yt8m_like_videos
from webly.data.tfrecord import encode_example, write_records
from webly.data.yt8m import import_yt8m
from webly.metrics import gap_at_k, hit_at_1, mean_average_precision, perr

N_FILES = 4


def write_demo_tfrecords(folder: Path, n_videos: int, n_classes: int, seed: int) -> sp.csr_matrix:
    """Write generated videos as YouTube-8M video-level TFRecord files into ``folder``.

    Returns the true labels, ``(n_videos, n_classes)`` CSR in file order.
    """
    videos = yt8m_like_videos(n_videos, n_classes, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for part, rows in enumerate(np.array_split(np.arange(n_videos), N_FILES)):
        records = (
            encode_example(
                {
                    "id": [videos.ids[i].encode()],
                    "labels": videos.labels[i],
                    "mean_rgb": videos.rgb[i],
                    "mean_audio": videos.audio[i],
                }
            )
            for i in rows
        )
        write_records(folder / f"train{part:04d}.tfrecord", records)
    lengths = [c.size for c in videos.clean_labels]
    indices = np.concatenate(videos.clean_labels)
    return sp.csr_matrix(
        (np.ones(indices.size, np.float32), indices, np.concatenate([[0], np.cumsum(lengths)])),
        shape=(n_videos, n_classes),
    )


def run_demo(
    out: Path,
    seed: int = 0,
    console: Console | None = None,
    n_videos: int = 4000,
    n_classes: int = 200,
) -> dict[str, dict[str, float]]:
    """Run the demo in ``out``; returns ``{model: {metric: value}}`` and prints the tables."""
    console = console or Console()
    started = time.perf_counter()
    clean = write_demo_tfrecords(out / "tfrecords", n_videos, n_classes, seed)
    summary = import_yt8m(
        str(out / "tfrecords" / "*.tfrecord"),
        out / "store",
        level="video",
        n_classes=n_classes,
        overwrite=True,
    )
    console.print(
        f"generated and imported {summary.rows:,} videos from {summary.files} TFRecord files "
        f"in {summary.seconds:.1f} s -> {summary.out}"
    )
    ds = Dataset.open(out / "store")
    stats = Table(title="dataset", show_header=False, title_justify="left")
    for name, value in dataset_stats(ds).lines():
        stats.add_row(name, value)
    console.print(stats)

    folds = ds.folds(n_folds=5, seed=seed)
    train, valid = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
    labels = ds.labels
    x_train, x_valid = ds.features(train), ds.features(valid)
    results: dict[str, dict[str, float]] = {}
    begin = time.perf_counter()
    prior = class_prior_scores(labels[train], valid.size)
    results["class prior"] = _score(prior, labels[valid], clean[valid], time.perf_counter() - begin)
    begin = time.perf_counter()
    weight, bias = fit_logistic(x_train, labels[train])
    logistic = predict_logistic(x_valid, weight, bias)
    results["logistic regression"] = _score(
        logistic, labels[valid], clean[valid], time.perf_counter() - begin
    )

    table = Table(title=f"baselines on fold 0 of 5 ({valid.size:,} videos)", title_justify="left")
    for column in (
        "model",
        "GAP@20 given",
        "GAP@20 true",
        "hit@1 true",
        "PERR true",
        "mAP true",
        "seconds",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model, row in results.items():
        table.add_row(
            model, *(f"{v:.4f}" if name != "seconds" else f"{v:.1f}" for name, v in row.items())
        )
    console.print(table)
    console.print(
        "'given' scores against the imported (noisy) labels, 'true' against the generator's "
        f"clean labels. Demo finished in {time.perf_counter() - started:.1f} s."
    )
    return results


def _score(
    scores: np.ndarray, given: sp.csr_matrix, true: sp.csr_matrix, seconds: float
) -> dict[str, float]:
    return {
        "gap_given": gap_at_k(scores, given, k=20),
        "gap_true": gap_at_k(scores, true, k=20),
        "hit1_true": hit_at_1(scores, true),
        "perr_true": perr(scores, true),
        "map_true": mean_average_precision(scores, true),
        "seconds": seconds,
    }
