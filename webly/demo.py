"""What ``make demo`` runs: a generated YouTube-8M-like benchmark (frame level, noisy tags) ->
its statistics -> a small zoo of both levels trained K-fold on the noisy train split -> a
results table like the seeds' on the clean test split, with the zoo's plain average and, for
contrast, logistic regression trained on the true labels."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from webly.baselines import fit_logistic, predict_logistic
from webly.data import Dataset
from webly.data.stats import dataset_stats
from webly.data.synth import YT8MLikeConfig, synth_yt8m_like
from webly.metrics import gap_at_k
from webly.metrics.evaluate import format_cell
from webly.predictions import Predictions
from webly.train.oof import fit_oof
from webly.train.zoo import parse_zoo

VIDEO_GROUPS = ("mean_rgb", "mean_audio")

FRAMES = {"max_frames": 30}
DEMO_ZOO: dict[str, Any] = {
    "folds": 3,
    "seed": 0,
    "train": {"epochs": 6, "batch_size": 128, "lr": 0.002},
    "members": [
        {"name": "logistic"},
        {"name": "mlp", "hparams": {"hidden": [512], "dropout": 0.2}},
        {
            "name": "resnet_av",
            "hparams": {"blocks": 1, "inner": 512},
            "train": {"mixup_alpha": 0.4, "ema_decay": 0.99},
        },
        {
            "name": "mlp",
            "id": "mlp_audio",
            "hparams": {"hidden": [256]},
            "options": {"groups": ["mean_audio"]},
        },
        # Training samples 30 frames a video (the videos have 10-30), not the default 300.
        {"name": "dbof", "hparams": {"cluster_size": 256, "hidden": 256}, "train": FRAMES},
        {"name": "netvlad", "hparams": {"clusters": 16, "hidden": 256}, "train": FRAMES},
    ],
}
"""The demo's zoo (as `webly train` reads it from YAML): four video-level members, one of them
audio-only, and two frame-level ones, 3 folds."""


def run_demo(
    out: Path,
    seed: int = 0,
    console: Console | None = None,
    n_videos: int = 3000,
    n_classes: int = 100,
    max_frames: int = 30,
    epochs: int = 6,
) -> dict[str, dict[str, Any]]:
    """Generate the benchmark into ``out / "yt8m-like"`` (replacing it), train the demo zoo into
    ``out / "zoo"`` (resuming what is finished) and print the tables.

    Returns ``{model: {"frame-level", "GAP@20", "BCE", "seconds"}}`` on the clean test split,
    with rows ``zoo average`` and ``logistic regression on true labels`` after the members.
    """
    console = console or Console()
    started = time.perf_counter()
    config = YT8MLikeConfig(
        videos=n_videos, classes=n_classes, max_frames=max_frames, unlabeled_videos=0, seed=seed
    )
    summary = synth_yt8m_like(Path(out) / "yt8m-like", config, overwrite=True)
    console.print(str(summary))
    train = Dataset.open(summary.out / "train")
    test = Dataset.open(summary.out / "test")
    stats = Table(title="train split", show_header=False, title_justify="left")
    for name, value in dataset_stats(train).lines():
        stats.add_row(name, value)
    console.print(stats)

    zoo = parse_zoo({**DEMO_ZOO, "seed": seed, "train": {**DEMO_ZOO["train"], "epochs": epochs}})
    result = fit_oof(zoo, train, test, Path(out) / "zoo")
    truth = test.clean_labels
    assert truth is not None  # the generator stores the truth of every split
    rows: dict[str, dict[str, Any]] = {}
    average = np.zeros(truth.shape, dtype=np.float32)
    for member in result.members:
        rows[member.id] = {
            "frame-level": member.level == "frame",
            "GAP@20": member.test_metric,
            "BCE": member.test_loss,
            "seconds": member.seconds,
        }
        if member.error is None:
            store = Predictions.open(Path(out) / "zoo" / member.id / "predictions")
            average += store.dense("test") / len(result.members)
    rows["zoo average"] = {"GAP@20": gap_at_k(average, truth, k=20)}
    begin = time.perf_counter()
    x_train = train.features(np.arange(len(train)), groups=VIDEO_GROUPS)
    clean_train = train.clean_labels
    assert clean_train is not None
    weight, bias = fit_logistic(x_train, clean_train)
    scores = predict_logistic(
        test.features(np.arange(len(test)), groups=VIDEO_GROUPS), weight, bias
    )
    rows["logistic regression on true labels"] = {
        "GAP@20": gap_at_k(scores, truth, k=20),
        "seconds": time.perf_counter() - begin,
    }

    table = Table(
        title=f"trained on {len(train):,} noisy train videos ({zoo.folds} folds), scored on the "
        f"{len(test):,} clean test videos",
        title_justify="left",
    )
    columns = ("frame-level", "GAP@20", "BCE", "seconds")
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for model, row in rows.items():
        table.add_row(model, *(format_cell(column, row.get(column)) for column in columns))
    console.print(table)
    for member in result.failed:
        console.print(f"member {member.id} failed: {member.error}")
    console.print(
        "Members and their average train on the given (noisy) labels; the last row trains on "
        f"the generator's true labels. Demo finished in {time.perf_counter() - started:.1f} s."
    )
    return rows
