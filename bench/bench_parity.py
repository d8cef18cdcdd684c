"""Trainer parity: identical networks trained by a plain PyTorch loop and by `webly.train.fit`.

The plain loop is what a user writes in 25 lines: AdamW (lr 1e-3, weight decay 1e-4), batches
of 256, BCE summed over the classes, 15 epochs, a constant rate or a cosine to 0 (both are run;
the better is the bar). ``fit`` runs at its defaults (nothing set but the seed) and, for the
"before" column, at the defaults it had before issue 18 (10 epochs, lr 1e-3, a cosine to 0, no
held-out rows, zero output bias). Every model is scored the same way: GAP@20 of its sigmoid
outputs on the test split, which no trainer sees.

Data, each scored in the same run:

* ``real``: ``../shared/data/yt8m-2018-validate`` (files 0000-0019 train, 0020-0029 test, the
  real machine-generated labels, 3,862 classes), video level: logistic, mlp, resnet_av;
* ``synth``: the frame-level yt8m-like benchmark (noisy train labels, clean test labels):
  the video-level models on the frame means and the frame-level dbof and netvlad.

``--init-bias`` adds a column: `fit` at its defaults but ``output_bias="init"`` (the
classifier's bias as initialised rather than at the class priors).

``--ablate`` measures instead what each of `fit`'s defaults costs or gains against the plain
loop's settings (`ABLATIONS`: the output bias, the held-out rows and their early stop, the
schedule, the rate search), one `fit` a row.

``--oof K`` measures instead what a K-fold member delivers (issue 18, item 2), on the real
sample: the mean of its K fold models (`fit_oof`, each validated on its held-out fold) and one
model refitted on every row (`fit_full`), both at the defaults, against the plain loop on every
row (the better of its constant and cosine runs).

Run (``--out`` keeps the imported and generated data for a second run):

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_parity.py --out /tmp/parity \
        [--data real,synth] [--models logistic,mlp,resnet_av,dbof,netvlad] [--no-before] \
        [--init-bias] [--oof 5] [--ablate]
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from webly.data import Dataset
from webly.data.synth import YT8MLikeConfig, synth_yt8m_like
from webly.data.yt8m import import_yt8m
from webly.metrics import gap_at_k
from webly.models import create_model
from webly.predictions import Predictions
from webly.train import FitResult, TrainConfig, fit
from webly.train.oof import fit_full, fit_oof
from webly.train.zoo import parse_zoo

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "yt8m-2018-validate"
HPARAMS: dict[str, dict[str, Any]] = {
    "logistic": {},
    "mlp": {"hidden": [2048], "batchnorm": True, "dropout": 0.5},
    "resnet_av": {"blocks": 1, "inner": 1024, "dropout": 0.3},
    "dbof": {"cluster_size": 256, "hidden": 256},
    "netvlad": {"clusters": 16, "hidden": 256},
}
FRAME_MODELS = ("dbof", "netvlad")
PLAIN = {"lr": 1e-3, "weight_decay": 1e-4, "batch_size": 256, "epochs": 15}
PLAIN_FIT = {"lr": 1e-3, "epochs": 15, "schedule": "constant", "patience": None,
             "valid_fraction": 0.0}  # fmt: skip
"""`fit` at the plain loop's settings: every row, a constant rate, 15 epochs, the last kept."""
ABLATIONS: dict[str, dict[str, Any]] = {
    "plain loop's settings, bias as initialised": {**PLAIN_FIT, "output_bias": "init"},
    "plain loop's settings, bias at the priors": PLAIN_FIT,
    "+ 10% held out, best epoch kept, bias as initialised": {
        **PLAIN_FIT,
        "valid_fraction": 0.1,
        "output_bias": "init",
    },
    "+ 10% held out, best epoch kept, bias at the priors": {**PLAIN_FIT, "valid_fraction": 0.1},
    "constant rate 1e-3, early stop, bias as initialised": {
        "lr": 1e-3,
        "schedule": "constant",
        "output_bias": "init",
    },
    "defaults but 15 epochs at a constant rate, bias as initialised": {
        "epochs": 15,
        "schedule": "constant",
        "patience": None,
        "output_bias": "init",
    },
    "defaults, bias as initialised": {"output_bias": "init"},
    "defaults, EMA of the weights (decay 0.999)": {"ema_decay": 0.999},
    "defaults, the rate x0.3 on a plateau (not x0.1)": {"lr_decay": 0.3},
    "defaults, patience 10, decay patience 4": {"patience": 10, "decay_patience": 4},
    "defaults": {},
}
"""``--ablate``: `TrainConfig` overrides, each one `fit` of the same network."""
BEFORE = TrainConfig(
    epochs=10, lr=1e-3, schedule="cosine", patience=None, valid_fraction=0.0, output_bias="init"
)


def groups_of(ds: Dataset, level: str) -> tuple[str, ...]:
    """The store's feature groups of one level, in layout order."""
    return tuple(spec.name for spec in ds.layout.features if spec.level == level)


def batches(
    ds: Dataset, rows: np.ndarray, groups: tuple[str, ...], frame: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(x, lengths)`` of ``rows`` in batches of 256: features (B, D), or all frames
    (B, T, D) zero-padded with their counts (B,)."""
    for i in range(0, rows.size, PLAIN["batch_size"]):
        part = rows[i : i + PLAIN["batch_size"]]
        if frame:
            x, lengths = ds.frames(part, groups)
            yield torch.from_numpy(x), torch.from_numpy(lengths)
        else:
            yield torch.from_numpy(ds.features(part, groups)), None


def score(model: nn.Module, test: Dataset, groups: tuple[str, ...], frame: bool) -> float:
    """GAP@20 of the model's sigmoid outputs on the test split (eval mode, all frames)."""
    model.eval()
    with torch.no_grad():
        probs = [
            torch.sigmoid(model(x) if lengths is None else model(x, lengths)).numpy()
            for x, lengths in batches(test, np.arange(len(test)), groups, frame)
        ]
    return float(gap_at_k(np.concatenate(probs), test.labels, k=20))


def plain_loop(
    model: nn.Module, train: Dataset, groups: tuple[str, ...], frame: bool, schedule: str
) -> nn.Module:
    """The 25-line loop: AdamW, constant rate or a cosine to 0, BCE summed over classes."""
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=PLAIN["lr"], weight_decay=PLAIN["weight_decay"])
    steps = PLAIN["epochs"] * math.ceil(len(train) / PLAIN["batch_size"])
    cosine = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, cosine if schedule == "cosine" else (lambda s: 1.0)
    )
    labels = train.labels
    for _ in range(PLAIN["epochs"]):
        model.train()
        perm = torch.randperm(len(train)).numpy()
        for i, (x, lengths) in enumerate(batches(train, perm, groups, frame)):
            rows = perm[i * PLAIN["batch_size"] : (i + 1) * PLAIN["batch_size"]]
            if rows.size < 2:
                continue
            y = torch.from_numpy(labels[rows].toarray().astype(np.float32))
            logits = model(x) if lengths is None else model(x, lengths)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
            opt.zero_grad()
            (loss / rows.size).backward()
            opt.step()
            sched.step()
    return model


def build(name: str, train: Dataset, groups: tuple[str, ...]) -> nn.Module:
    """The network every trainer of a row starts from: the same weights (seed 0)."""
    dims = {g: train.layout.feature(g).dim for g in groups}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return create_model(name, train.n_classes, dims, **HPARAMS[name])


def data(which: str, out: Path) -> tuple[Dataset, Dataset, str] | None:
    """(train, test, description) of ``real`` or ``synth``, made once under ``out``."""
    if which == "real":
        if not REAL.is_dir():
            print(f"{REAL} is absent; the real rows are skipped\n")
            return None
        for split, pattern in (("train", "validate00[01]?"), ("test", "validate002?")):
            if not (out / "real" / split).is_dir():
                import_yt8m(str(REAL / f"{pattern}.tfrecord"), out / "real" / split, "video")
        train, test = (Dataset.open(out / "real" / s) for s in ("train", "test"))
        return train, test, "real YouTube-8M sample (files 0000-0019 / 0020-0029)"
    config = YT8MLikeConfig(videos=4000, test_videos=1000, unlabeled_videos=0, max_frames=60)
    if not (out / "synth" / "train").is_dir():
        synth_yt8m_like(out / "synth", config)
    train, test = (Dataset.open(out / "synth" / s) for s in ("train", "test"))
    return train, test, "generated frame-level yt8m-like (4,000 / 1,000 videos, 200 classes)"


def cases(
    args: argparse.Namespace, out: Path
) -> Iterator[tuple[str, str, Dataset, Dataset, tuple[str, ...], bool]]:
    """``(data, model, train, test, groups, frame)`` of each data set and model asked for (the
    frame-level models only on the generated set: the real sample is video level)."""
    for which in args.data.split(","):
        loaded = data(which, out)
        if loaded is None:
            continue
        train, test, _ = loaded
        for name in args.models.split(","):
            frame = name in FRAME_MODELS
            if which == "real" and frame:
                continue
            yield which, name, train, test, groups_of(train, "frame" if frame else "video"), frame


def run_fit(
    name: str, train: Dataset, groups: tuple[str, ...], config: TrainConfig, work: Path
) -> tuple[nn.Module, FitResult, float]:
    model = build(name, train, groups)
    begin = time.perf_counter()
    result = fit(model, train, None, config, groups, work)
    return model, result, time.perf_counter() - begin


def k_fold(name: str, train: Dataset, test: Dataset, folds: int, work: Path) -> dict[str, float]:
    """Test GAP@20 of ``name`` at the defaults: the mean of its ``folds`` fold models, and one
    model refitted on every row; seconds of each."""
    zoo = parse_zoo({"folds": folds, "seed": 0, "k": 100,
                     "members": [{"name": name, "hparams": HPARAMS[name]}]})  # fmt: skip
    figures = {}
    for label, trainer in (("oof", fit_oof), ("full", fit_full)):
        begin = time.perf_counter()
        result = trainer(zoo, train, test, work / label)
        assert not result.failed, result.failed
        store = Predictions.open(work / label / name / "predictions")
        figures[label] = float(gap_at_k(store.topk("test"), test.labels, k=20))
        figures[f"{label} s"] = time.perf_counter() - begin
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="keep the data here (a second run reuses it)")
    parser.add_argument("--data", default="real,synth")
    parser.add_argument("--models", default="logistic,mlp,resnet_av,dbof,netvlad")
    parser.add_argument("--no-before", action="store_true", help="skip fit's old defaults")
    parser.add_argument("--init-bias", action="store_true", help="also fit with output_bias=init")
    parser.add_argument("--oof", type=int, help="K: the K-fold member and the refit instead")
    parser.add_argument("--ablate", action="store_true", help="fit's defaults one at a time")
    args = parser.parse_args()
    print(f"`{shlex.join(['.venv/bin/python', *sys.argv])}`\n")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    with tempfile.TemporaryDirectory() as tmp:
        out, scratch = args.out or Path(tmp), Path(tmp)
        if args.oof:
            oof_table(args, out, scratch)
            return
        if args.ablate:
            ablation_table(args, out, scratch)
            return
        print(
            "| data | model | plain constant | plain cosine | fit before | fit defaults | "
            "fit - best plain | lr chosen | epochs (best) | s plain | s fit |"
            + (" fit, init bias |" if args.init_bias else "")
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * args.init_bias)
        for which, name, train, test, groups, frame in cases(args, out):
            plain, plain_s = plain_scores(name, train, test, groups, frame)
            before = "-"
            if not args.no_before:
                work = scratch / which / name / "before"
                net, _, _ = run_fit(name, train, groups, BEFORE, work)
                before = f"{score(net, test, groups, frame):.4f}"
            work = scratch / which / name / "defaults"
            net, result, seconds = run_fit(name, train, groups, TrainConfig(), work)
            gap = score(net, test, groups, frame)
            init = ""
            if args.init_bias:
                work = scratch / which / name / "init"
                config = TrainConfig(output_bias="init")
                init_net, _, _ = run_fit(name, train, groups, config, work)
                init = f" {score(init_net, test, groups, frame):.4f} |"
            best_plain = max(plain.values())
            print(
                f"| {which} | {name} | {plain['constant']:.4f} | {plain['cosine']:.4f} | "
                f"{before} | {gap:.4f} | {gap - best_plain:+.4f} | {result.lr:g} | "
                f"{len(result.history)} ({result.best_epoch}) | {plain_s:.0f} | "
                f"{seconds:.0f} |{init}",
                flush=True,
            )


def plain_scores(
    name: str, train: Dataset, test: Dataset, groups: tuple[str, ...], frame: bool
) -> tuple[dict[str, float], float]:
    """Test GAP@20 of the plain loop at a constant rate and with a cosine; seconds a run."""
    plain: dict[str, float] = {}
    begin = time.perf_counter()
    for schedule in ("constant", "cosine"):
        net = plain_loop(build(name, train, groups), train, groups, frame, schedule)
        plain[schedule] = score(net, test, groups, frame)
    return plain, (time.perf_counter() - begin) / 2


def ablation_table(args: argparse.Namespace, out: Path, scratch: Path) -> None:
    """``--ablate``: test GAP@20 of one `fit` per `ABLATIONS` row, each data and model."""
    print("| data | model | fit | GAP@20 | lr | epochs (best) | s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for which, name, train, test, groups, frame in cases(args, out):
        for i, (label, overrides) in enumerate(ABLATIONS.items()):
            work = scratch / which / name / f"ablate-{i}"  # fit resumes from its workdir
            net, result, seconds = run_fit(name, train, groups, TrainConfig(**overrides), work)
            print(
                f"| {which} | {name} | {label} | {score(net, test, groups, frame):.4f} | "
                f"{result.lr:g} | {len(result.history)} ({result.best_epoch or '-'}) | "
                f"{seconds:.0f} |",
                flush=True,
            )


def oof_table(args: argparse.Namespace, out: Path, scratch: Path) -> None:
    """``--oof K``: the K-fold member and the refit against the plain loop on every row."""
    loaded = data("real", out)
    if loaded is None:
        return
    train, test, _ = loaded
    print(
        f"| model | plain loop, every row | {args.oof}-fold member (mean of folds) | - plain | "
        "refit on every row | - plain | s plain | s K-fold | s refit |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        if name in FRAME_MODELS:
            continue
        groups = groups_of(train, "video")
        plain, plain_s = plain_scores(name, train, test, groups, False)
        best = max(plain.values())
        f = k_fold(name, train, test, args.oof, scratch / name)
        print(
            f"| {name} | {best:.4f} | {f['oof']:.4f} | {f['oof'] - best:+.4f} | {f['full']:.4f} "
            f"| {f['full'] - best:+.4f} | {plain_s:.0f} | {f['oof s']:.0f} | {f['full s']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
