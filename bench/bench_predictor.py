"""Issue 21's notebook task: webly's `Predictor` beside what a user would write instead.

The task: scikit-learn's real handwritten digits (1,347 training rows, 450 test rows, 10
classes; `webly.data.builtin.load_noisy_digits`), 20% of the training labels flipped to another
class at random (``symmetric``), the test labels clean.
Each contender gets the noisy training rows and is scored on the clean test rows (accuracy), and
those that flag label issues are scored against the flips (precision, recall). In one run:

* ``sklearn``: ``LogisticRegression`` trained on the noisy labels (3 lines);
* ``cleanlab``: ``CleanLearning(LogisticRegression()).fit(X, y)``, its label issues from
  ``find_label_issues`` (cleanlab's README; 6 lines);
* ``webly``: ``Predictor(path=...).fit((X, y), test=...)``, then ``leaderboard()``,
  ``label_issues()`` and ``predict(X_test)`` (the README's 5 lines).

cleanlab is a benchmark-only dependency (``requirements-bench.txt``). Run:

    .venv/bin/python bench/bench_predictor.py [--folds 5] [--noise 0.2] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from webly import Predictor
from webly.data.builtin import load_noisy_digits


def flags(found: np.ndarray, flipped: np.ndarray) -> str:
    """Precision and recall of the flagged rows ``found`` (bool, a row each) against the truth."""
    hits = (found & flipped).sum()
    return f"{hits / max(found.sum(), 1):.3f} | {hits / flipped.sum():.3f} | {found.sum()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="the Predictor's folder")
    args = parser.parse_args()
    data = load_noisy_digits("symmetric", args.noise, seed=args.seed)
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    flipped = data.y_train != data.y_true
    print(f"digits: {len(y)} train rows ({flipped.mean():.3f} flipped), {len(y_test)} test rows")
    print(f"load average {os.getloadavg()[0]:.2f}\n")
    print("| contender | test accuracy | issues precision | recall | flagged | seconds |")
    print("|---|---:|---:|---:|---:|---:|")

    started = time.perf_counter()
    plain = LogisticRegression(max_iter=1000).fit(x, y)
    seconds = time.perf_counter() - started
    accuracy = (plain.predict(x_test) == y_test).mean()
    print(
        f"| sklearn LogisticRegression, noisy labels | {accuracy:.4f} | - | - | - | {seconds:.1f} |"
    )

    from cleanlab.classification import CleanLearning

    started = time.perf_counter()
    learner = CleanLearning(LogisticRegression(max_iter=1000), seed=args.seed).fit(x, y)
    seconds = time.perf_counter() - started
    accuracy = (learner.predict(x_test) == y_test).mean()
    found = learner.get_label_issues()["is_label_issue"].to_numpy()
    print(f"| cleanlab CleanLearning(LogisticRegression) | {accuracy:.4f} | "
          f"{flags(found, flipped)} | {seconds:.1f} |")  # fmt: skip

    with tempfile.TemporaryDirectory() as work:
        path = args.out or Path(work) / "digits"
        started = time.perf_counter()
        predictor = Predictor(path=path, folds=args.folds, seed=args.seed, progress=False)
        predictor.fit((x, y), test=(x_test, y_test))
        seconds = time.perf_counter() - started
        board = predictor.leaderboard()
        issues = predictor.label_issues()
        rows = [int(i.removeprefix("row")) for i in issues.index[issues["is_label_issue"]]]
        found = np.zeros(len(y), bool)
        found[rows] = True
        accuracy = (predictor.predict(x_test) == y_test).mean()
        chosen = board[board["deployed"]].iloc[0]["model"]
        print(f"| webly Predictor, deployed: {chosen} | {accuracy:.4f} | "
              f"{flags(found, flipped)} | {seconds:.1f} |\n")  # fmt: skip
        print("webly's leaderboard (validation: out of fold, on the noisy labels):\n")
        print("| model | validation accuracy | test accuracy | fit s | ms a row | bytes |")
        print("|---|---:|---:|---:|---:|---:|")
        for row in board.itertuples():
            if row.compression == "fp32":
                fit = f"{row.fit_time:.1f}" if row.fit_time == row.fit_time else "-"
                print(f"| {row.model} | {row.score_val:.4f} | {row.score_test:.4f} | {fit} | "
                      f"{row.pred_time_per_row:.4f} | {row.size:,} |")  # fmt: skip


if __name__ == "__main__":
    main()
