"""Does label noise hurt? Logistic regression trained on noisy vs clean labels, scored on the
clean test split, on the products-like benchmark (defaults) and on real handwritten digits.

Prints markdown tables of accuracy and mean class error (AliProducts' metric). Run:

    .venv/bin/python bench/bench_products.py [--max-iter 100] [--skip-products]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from webly.data import Dataset
from webly.data.builtin import builtin_digits
from webly.data.products import ProductsLikeConfig, synth_products_like
from webly.metrics import mean_class_error

DIGITS_RATES = (0.0, 0.2, 0.4)


def fit_and_score(
    train: Dataset, test: Dataset, group: str, max_iter: int
) -> dict[str, tuple[float, float, float]]:
    """Per label column (``noisy``, ``clean``): test accuracy, mean class error and seconds."""
    x = train.features(np.arange(len(train)), (group,))
    x_test = test.features(np.arange(len(test)), (group,))
    truth = test.labels.indices
    out = {}
    for name, labels in (("noisy", train.labels), ("clean", train.clean_labels)):
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(max_iter=max_iter).fit(x, labels.indices)  # type: ignore[union-attr]
        predicted = model.predict(x_test)
        seconds = time.perf_counter() - began
        out[name] = (
            float((predicted == truth).mean()),
            mean_class_error(predicted, truth),
            seconds,
        )
    return out


def digits_table(root: Path, max_iter: int) -> None:
    print("## Handwritten digits (scikit-learn, 1,347 train / 450 test rows)\n")
    print(
        "| noise | rate | realized | acc clean-trained | acc noisy-trained | acc margin "
        "| MCE clean-trained | MCE noisy-trained |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("symmetric", "pair"):
        for rate in DIGITS_RATES:
            out = root / f"digits-{kind}-{rate}"
            summary = builtin_digits(out, noise=kind, rate=rate, seed=0)
            scores = fit_and_score(
                Dataset.open(out / "train"), Dataset.open(out / "test"), "pixels", max_iter
            )
            (acc_n, mce_n, _), (acc_c, mce_c, _) = scores["noisy"], scores["clean"]
            print(
                f"| {kind} | {rate:.1f} | {summary.noise['rows_changed']:.3f} | {acc_c:.4f} "
                f"| {acc_n:.4f} | {acc_c - acc_n:+.4f} | {mce_c:.4f} | {mce_n:.4f} |"
            )


def products_table(root: Path, max_iter: int) -> None:
    config = ProductsLikeConfig()
    summary = synth_products_like(root / "products", config)
    print(
        f"\n## Products-like defaults ({summary.train_rows:,} train rows, "
        f"{summary.test_rows:,} test rows, {config.n_classes:,} classes; generated in "
        f"{summary.seconds:.1f} s)\n"
    )
    noise = ", ".join(f"{k} {v:.3f}" for k, v in summary.noise.items())
    print(f"realized noise: {noise}; head:tail {summary.head_tail_ratio:,.0f}:1\n")
    scores = fit_and_score(
        Dataset.open(root / "products" / "train"),
        Dataset.open(root / "products" / "test"),
        "image",
        max_iter,
    )
    print("| labels | test accuracy | mean class error | fit seconds |")
    print("|---|---|---|---|")
    for name, (acc, mce, seconds) in scores.items():
        print(f"| {name} | {acc:.4f} | {mce:.4f} | {seconds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-iter", type=int, default=100, help="L-BFGS iterations")
    parser.add_argument("--skip-products", action="store_true", help="digits only (seconds)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        digits_table(Path(tmp), max_iter=1000)
        if not args.skip_products:
            products_table(Path(tmp), args.max_iter)


if __name__ == "__main__":
    main()
