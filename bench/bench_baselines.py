"""Baseline figures on the real YouTube-8M sample and on the generated benchmark.

Imports ../shared/data/yt8m-2018-validate (30 real video-level files, ~8,600 videos; skipped when
absent) into a temporary store, splits it 5-fold (stratified), and scores the class prior and
logistic regression on fold 0 with GAP@20, hit@1, PERR and mAP. Run:

    .venv/bin/python bench/bench_baselines.py [--max-iter 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from webly.baselines import class_prior_scores, fit_logistic, predict_logistic
from webly.data import Dataset
from webly.data.yt8m import import_yt8m
from webly.metrics.evaluate import ranking_metrics

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "yt8m-2018-validate"


def score_baselines(ds: Dataset, max_iter: int) -> list[tuple[str, dict[str, float], float]]:
    folds = ds.folds(n_folds=5, seed=0)
    train, valid = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
    labels = ds.labels
    rows = []
    begin = time.perf_counter()
    prior = class_prior_scores(labels[train], valid.size)
    rows.append(("class prior", ranking_metrics(prior, labels[valid]), time.perf_counter() - begin))
    begin = time.perf_counter()
    seen = np.flatnonzero(np.asarray(labels[train].sum(axis=0)).ravel() > 0)
    weight, bias = fit_logistic(ds.features(train), labels[train][:, seen], max_iter=max_iter)
    scores = np.zeros((valid.size, ds.n_classes), np.float32)
    scores[:, seen] = predict_logistic(ds.features(valid), weight, bias)
    seconds = time.perf_counter() - begin
    rows.append(("logistic regression", ranking_metrics(scores, labels[valid]), seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-iter", type=int, default=30, help="L-BFGS iterations")
    args = parser.parse_args()
    if not REAL.is_dir():
        print(f"{REAL} is absent; nothing to measure")
        return
    with tempfile.TemporaryDirectory() as tmp:
        summary = import_yt8m(str(REAL / "*.tfrecord"), Path(tmp) / "store", level="video")
        ds = Dataset.open(summary.out)
        print(f"real YouTube-8M sample: {len(ds):,} videos, fold 0 of 5 held out\n")
        print("| model | GAP@20 | hit@1 | PERR | mAP | seconds |")
        print("|---|---|---|---|---|---|")
        for name, m, seconds in score_baselines(ds, args.max_iter):
            print(
                f"| {name} | {m['GAP@20']:.4f} | {m['hit@1']:.4f} | {m['PERR']:.4f} "
                f"| {m['mAP']:.4f} | {seconds:.1f} |"
            )


if __name__ == "__main__":
    main()
