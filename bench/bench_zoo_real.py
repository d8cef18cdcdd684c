"""Video-level zoo members on the real YouTube-8M sample, mixup and EMA each on and off.

Imports ``../shared/data/yt8m-2018-validate`` (absent: nothing to measure; ``--data`` points
elsewhere): files 0000-0019 are the training split, 0020-0029 the test split, both with the
real machine-generated labels. Each configuration is trained with `webly.train.fit` (seed 0)
at its learning rate and number of epochs and scored with GAP@20 on the test split.

``--tune`` first chooses each configuration's learning rate and epochs without looking at the
test split: it trains on files 0000-0015 for ``--epochs`` epochs at every rate of ``--lrs``,
validating on files 0016-0019 after every epoch, and keeps the best (rate, epoch); the model
is then trained on all of 0000-0019 with them. Without ``--tune`` the rates and epochs in
``CONFIGS`` are used (they are what ``--tune`` chose; see bench/RESULTS.md), with the
trainer's settings of that time (a cosine to 0 over the epochs, no held-out rows).

``--defaults`` trains each configuration at `TrainConfig`'s defaults instead (its extras, such
as mixup, kept): no rate, no epochs; `fit` holds 10% of the training rows out to choose its rate
and epoch. The table puts the hand-tuned test GAP@20 recorded in bench/RESULTS.md beside it.
Run:

    .venv/bin/python bench/bench_zoo_real.py [--tune [--epochs 30] [--lrs 0.001,0.003,...]]
    .venv/bin/python bench/bench_zoo_real.py --defaults [--only logistic,mlp,resnet_av]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from webly.data import Dataset
from webly.data.yt8m import VIDEO_GROUPS, import_yt8m
from webly.models import create_model
from webly.train import TrainConfig, fit
from webly.train.loop import evaluate

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "yt8m-2018-validate"
GROUPS = VIDEO_GROUPS  # mean_rgb, mean_audio
RESNET = {"blocks": 1, "inner": 1024, "dropout": 0.3}


@dataclass(frozen=True)
class Config:
    """One model: its hyper-parameters, training extras, and the (lr, epochs) it trains at."""

    label: str
    name: str
    hparams: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    epochs: int = 10
    tuned: float | None = None  # the test GAP@20 at (lr, epochs), bench/RESULTS.md (2026-11-22)


CONFIGS = [  # lr and epochs: what --tune chose (bench/RESULTS.md)
    Config("logistic", "logistic", lr=0.03, epochs=27, tuned=0.4999),
    Config("mlp", "mlp", {"hidden": (1024,), "dropout": 0.3}, lr=0.003, epochs=30, tuned=0.6045),
    Config("moe", "moe", {"experts": 2}, lr=0.003, epochs=2, tuned=0.3821),
    Config("resnet_av", "resnet_av", RESNET, lr=0.001, epochs=42, tuned=0.6222),
    Config("resnet_av + mixup", "resnet_av", RESNET, {"mixup_alpha": 0.4}, lr=0.001, epochs=54,
           tuned=0.6195),
    Config("resnet_av + EMA", "resnet_av", RESNET, {"ema_decay": 0.99}, lr=0.001, epochs=55,
           tuned=0.6259),
    Config("resnet_av + mixup + EMA", "resnet_av", RESNET,
           {"mixup_alpha": 0.4, "ema_decay": 0.99}, lr=0.002, epochs=41, tuned=0.6182),
]  # fmt: skip
HAND_SET = {"schedule": "cosine", "patience": None, "valid_fraction": 0.0, "output_bias": "init"}
"""The trainer's behaviour when the rates and epochs above were tuned."""


def train_and_score(
    config: Config,
    train: Dataset,
    valid: Dataset | None,
    lr: float | None,
    epochs: int | None,
    work: Path,
) -> tuple[Any, Any, float]:
    """(the trained model, its `FitResult`, train seconds); ``lr`` None: `fit`'s defaults."""
    dims = {g: train.layout.feature(g).dim for g in GROUPS}
    model = create_model(config.name, train.n_classes, dims, **config.hparams)
    if lr is None or epochs is None:
        settings = TrainConfig(batch_size=256, seed=0, **config.extra)
    else:
        settings = TrainConfig(
            epochs=epochs, batch_size=256, lr=lr, seed=0, **HAND_SET, **config.extra
        )
    begin = time.perf_counter()
    result = fit(model, train, valid, settings, GROUPS, work)
    return model, result, time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REAL, help="folder of validate00NN files")
    parser.add_argument("--tune", action="store_true", help="choose lr and epochs on 0016-0019")
    parser.add_argument("--epochs", type=int, default=30, help="most epochs --tune tries")
    parser.add_argument("--lrs", default="0.001,0.003,0.01,0.03", help="rates --tune tries")
    parser.add_argument("--only", help="comma-separated labels to run")
    parser.add_argument("--defaults", action="store_true", help="train at fit's defaults")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"{args.data} is absent; nothing to measure")
        return
    print(f"`{shlex.join(['.venv/bin/python', *sys.argv])}`\n")
    configs = [c for c in CONFIGS if not args.only or c.label in args.only.split(",")]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        splits = {
            name: Dataset.open(import_yt8m(str(args.data / pattern), tmp / name, "video").out)
            for name, pattern in (
                ("train", "validate00[01]?.tfrecord"),
                ("test", "validate002?.tfrecord"),
                ("valid", "validate001[6-9].tfrecord"),
            )
        }
        train, test = splits["train"], splits["test"]
        fit_rows = np.flatnonzero(~np.isin(train.ids, splits["valid"].ids))
        print(
            f"real YouTube-8M: {len(train):,} train videos (files 0000-0019; for --tune "
            f"{fit_rows.size:,} in 0000-0015 + {len(splits['valid']):,} in 0016-0019), "
            f"{len(test):,} test videos (0020-0029), {train.n_classes:,} classes\n"
        )
        if args.tune:
            configs = [tune(c, train.subset(fit_rows), splits["valid"], args, tmp) for c in configs]
        if args.defaults:
            print("| model | hand-tuned GAP@20 | defaults GAP@20 | defaults - tuned | lr chosen "
                  "| epochs (best) | train seconds |")  # fmt: skip
            print("|---|---:|---:|---:|---:|---:|---:|")
        else:
            print("| model | lr | epochs | GAP@20 test | train seconds |")
            print("|---|---:|---:|---:|---:|")
        for c in configs:
            work = tmp / "runs" / c.label.replace(" ", "")
            if args.defaults:
                model, result, seconds = train_and_score(c, train, None, None, None, work)
                gap, tuned = evaluate(model, test, GROUPS), c.tuned or float("nan")
                print(
                    f"| {c.label} | {tuned:.4f} | {gap:.4f} | {gap - tuned:+.4f} | "
                    f"{result.lr:g} | {len(result.history)} ({result.best_epoch}) | "
                    f"{seconds:.0f} |",
                    flush=True,
                )
                continue
            model, _, seconds = train_and_score(c, train, None, c.lr, c.epochs, work)
            print(
                f"| {c.label} | {c.lr:g} | {c.epochs} | {evaluate(model, test, GROUPS):.4f} | "
                f"{seconds:.0f} |",
                flush=True,
            )


def tune(config: Config, fit_split: Dataset, valid: Dataset, args: Any, tmp: Path) -> Config:
    """``config`` with the (lr, epochs) of the best validation GAP@20 over ``args.lrs``."""
    best = (-1.0, config.lr, config.epochs)
    for lr in [float(v) for v in args.lrs.split(",")]:
        work = tmp / "tune" / f"{config.label.replace(' ', '')}-{lr:g}"
        _, result, seconds = train_and_score(config, fit_split, valid, lr, args.epochs, work)
        print(
            f"tune {config.label}: lr {lr:g} -> best valid GAP@20 {result.best_metric:.4f} at "
            f"epoch {result.best_epoch} ({seconds:.0f} s)",
            flush=True,
        )
        best = max(best, (result.best_metric, lr, result.best_epoch))
    return Config(config.label, config.name, config.hparams, config.extra, best[1], best[2])


if __name__ == "__main__":
    main()
