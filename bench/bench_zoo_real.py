"""Video-level zoo members on the real YouTube-8M sample, mixup and EMA each on and off.

Imports ``../shared/data/yt8m-2018-validate`` (absent: nothing to measure): files 0000-0019 are
the training split, 0020-0029 the test split, both with the real machine-generated labels.
Each configuration is trained with `webly.train.fit` (same seed, same epochs) and scored with
GAP@20 on the test split. Run:

    .venv/bin/python bench/bench_zoo_real.py [--epochs 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from webly.data import Dataset
from webly.data.yt8m import import_yt8m
from webly.models import create_model
from webly.train import TrainConfig, fit
from webly.train.loop import evaluate

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "yt8m-2018-validate"
GROUPS = ("rgb", "audio")
CONFIGS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("logistic", "logistic", {}, {}),
    ("mlp", "mlp", {"hidden": (1024,), "dropout": 0.3}, {}),
    ("moe", "moe", {"experts": 2}, {}),
    ("resnet_av", "resnet_av", {"blocks": 1, "inner": 1024, "dropout": 0.3}, {}),
    ("resnet_av + mixup", "resnet_av", {"blocks": 1, "inner": 1024, "dropout": 0.3},
     {"mixup_alpha": 0.4}),
    ("resnet_av + EMA", "resnet_av", {"blocks": 1, "inner": 1024, "dropout": 0.3},
     {"ema_decay": 0.99}),
    ("resnet_av + mixup + EMA", "resnet_av", {"blocks": 1, "inner": 1024, "dropout": 0.3},
     {"mixup_alpha": 0.4, "ema_decay": 0.99}),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    if not REAL.is_dir():
        print(f"{REAL} is absent; nothing to measure")
        return
    with tempfile.TemporaryDirectory() as tmp:
        train_split = import_yt8m(str(REAL / "validate00[01]?.tfrecord"), Path(tmp) / "tr", "video")
        test_split = import_yt8m(str(REAL / "validate002?.tfrecord"), Path(tmp) / "te", "video")
        train, test = Dataset.open(train_split.out), Dataset.open(test_split.out)
        print(
            f"real YouTube-8M: {len(train):,} train videos (files 0000-0019), {len(test):,} "
            f"test videos (0020-0029), {train.n_classes:,} classes, {args.epochs} epochs\n"
        )
        print("| model | GAP@20 test | train seconds |")
        print("|---|---:|---:|")
        dims = {g: train.layout.feature(g).dim for g in GROUPS}
        for label, name, hparams, extra in CONFIGS:
            model = create_model(name, train.n_classes, dims, **hparams)
            config = TrainConfig(epochs=args.epochs, batch_size=256, lr=args.lr, seed=0, **extra)
            begin = time.perf_counter()
            fit(model, train, None, config, GROUPS, Path(tmp) / "runs" / label.replace(" ", ""))
            seconds = time.perf_counter() - begin
            print(f"| {label} | {evaluate(model, test, GROUPS):.4f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
