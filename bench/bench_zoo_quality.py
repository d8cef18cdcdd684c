"""Issue 4's quality goals on the yt8m-like benchmark, scored on the clean test labels.

Generates the frame-level benchmark (default noise: 30% missing, 10% spurious, 5% instance
labels; 30% of the classes shown in short segments), trains the zoo of
``bench/zoo-quality.yaml`` out-of-fold with `webly.train.oof.fit_oof` on the noisy training
labels and reports, on the clean test split:

* every member's GAP@20 and BCE (the seeds' table);
* the best ``resnet_av`` against ``logistic`` (goal: at least +0.05 GAP@20);
* the best frame-level member against the best video-level one (goal: frame level ahead);
* ``resnet_av_cg15`` with mixup and EMA each on and off;
* the plain average of the zoo's test probabilities against its best member (goal: ahead).

``--out`` keeps the data and the zoo (a second run resumes); ``--only`` trains some members.
Run:

    .venv/bin/python bench/bench_zoo_quality.py [--videos 4000] [--classes 200]
        [--max-frames 60] [--epochs N] [--only logistic,dbof] [--out DIR]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from webly.data import Dataset
from webly.data.synth import YT8MLikeConfig, synth_yt8m_like
from webly.metrics import gap_at_k
from webly.predictions import Predictions
from webly.train.loop import training_device
from webly.train.oof import MemberResult, fit_oof
from webly.train.zoo import load_zoo

ZOO = Path(__file__).with_name("zoo-quality.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=4000)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--max-frames", type=int, default=60)
    parser.add_argument("--epochs", type=int, help="override the zoo's epochs")
    parser.add_argument("--only", help="comma-separated member ids to train")
    parser.add_argument("--zoo", type=Path, default=ZOO)
    parser.add_argument("--out", type=Path, help="keep data and zoo here (resumes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"`{shlex.join(['.venv/bin/python', *sys.argv])}`\n")
    device = training_device()
    where = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__} on {where}, {torch.get_num_threads()} threads\n")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        run(args, out)


def run(args: argparse.Namespace, out: Path) -> None:
    config = YT8MLikeConfig(
        videos=args.videos, classes=args.classes, max_frames=args.max_frames,
        unlabeled_videos=0, seed=args.seed,
    )  # fmt: skip
    data = out / "yt8m-like"
    if not (data / "test" / "manifest.json").is_file():
        print(synth_yt8m_like(data, config, overwrite=True), "\n")
    train, test = Dataset.open(data / "train"), Dataset.open(data / "test")
    zoo = load_zoo(args.zoo)
    if args.only:
        wanted = set(args.only.split(","))
        zoo = zoo.model_copy(update={"members": [m for m in zoo.members if m.member_id in wanted]})
    if args.epochs:
        zoo = zoo.model_copy(update={"train": {**zoo.train, "epochs": args.epochs}})
    zoo = zoo.model_copy(update={"seed": args.seed})
    started = time.perf_counter()
    result = fit_oof(zoo, train, test, out / "zoo")
    truth = test.clean_labels
    assert truth is not None  # the generator stores every split's truth

    print(
        f"{len(train):,} noisy train videos ({zoo.folds} folds), {len(test):,} clean test "
        f"videos, {train.n_classes} classes, {args.max_frames // 3}-{args.max_frames} frames; "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    print("| model | level | GAP@20 | BCE | train s |")
    print("|---|---|---:|---:|---:|")
    done: dict[str, MemberResult] = {}
    average = np.zeros(truth.shape, dtype=np.float32)
    for member in result.members:
        if member.error is not None:
            print(f"| {member.id} | {member.level} | failed: {member.error} | | |")
            continue
        done[member.id] = member
        average += Predictions.open(out / "zoo" / member.id / "predictions").dense("test")
        print(
            f"| {member.id} | {member.level} | {member.test_metric:.4f} | "
            f"{member.test_loss:.4f} | {member.seconds:.0f} |"
        )
    if not done:
        return
    average /= len(done)
    gap = {m: r.test_metric or 0.0 for m, r in done.items()}
    best = max(gap, key=gap.__getitem__)
    print(f"| zoo average ({len(done)} members) | | {gap_at_k(average, truth, k=20):.4f} | | |\n")
    print(f"- best member: {best} {gap[best]:.4f}; zoo average - best: "
          f"{gap_at_k(average, truth, k=20) - gap[best]:+.4f}")  # fmt: skip
    resnets = [m for m in done if done[m].name == "resnet_av"]
    if resnets and "logistic" in gap:
        resnet = max(resnets, key=gap.__getitem__)
        print(f"- {resnet} - logistic: {gap[resnet] - gap['logistic']:+.4f}")
    frame_level = [m for m in done if done[m].level == "frame"]
    by_level = {  # lgbm (gbdt) reads the video-level features
        "frame": max(frame_level, key=gap.__getitem__, default=None),
        "video": max(set(done) - set(frame_level), key=gap.__getitem__, default=None),
    }
    if by_level["frame"] and by_level["video"]:
        frame, video = by_level["frame"], by_level["video"]
        print(f"- best frame-level {frame} {gap[frame]:.4f} vs best video-level {video} "
              f"{gap[video]:.4f}: {gap[frame] - gap[video]:+.4f}")  # fmt: skip
    variants = tuple(f"resnet_av_cg15{suffix}" for suffix in ("", "_mixup", "_ema", "_mixup_ema"))
    if set(variants) <= gap.keys():
        print("\n| resnet_av | EMA off | EMA on (0.99) |\n|---|---:|---:|")
        print(f"| mixup off | {gap[variants[0]]:.4f} | {gap[variants[2]]:.4f} |")
        print(f"| mixup on (alpha 0.4) | {gap[variants[1]]:.4f} | {gap[variants[3]]:.4f} |")


if __name__ == "__main__":
    main()
