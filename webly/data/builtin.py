"""Real data bundled with scikit-learn, as webly stores with known clean labels.

``webly data builtin digits --out OUT``: the 1,797 handwritten digits of scikit-learn's
``load_digits`` (8x8 grey images, 10 classes, no download) as a ``pixels`` group of 64 float32
values in [0, 1] (the 0..16 counts divided by 16), split stratified into ``OUT/train`` (with the
requested label noise; the original labels kept as ``clean_labels``) and ``OUT/test`` (clean).
So every method can be shown on data nobody generated.

Noise structure comes from the training images (`webly.data.relabel`): confusable classes are
the nearest class means by cosine (centred), and a row's ``instance`` difficulty is its distance
to its own class mean over the distance to the nearest other class mean.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from webly._fs import atomic_output
from webly.core import Task
from webly.data.noise import NoiseKind, check_noise, inject, realized_rates
from webly.data.relabel import class_means, confusable_from_means, margin_difficulty
from webly.data.store import DATASETS, Batch, DatasetWriter, FeatureSpec, Layout
from webly.errors import ConfigError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class BuiltinSummary:
    """What a builtin dataset command wrote."""

    out: Path
    train_rows: int
    test_rows: int
    noise: dict[str, float]  # realized rates of the training labels against the truth

    def __str__(self) -> str:
        noise = ", ".join(f"{k} {v:.3f}" for k, v in self.noise.items())
        return (
            f"wrote {self.out}: train {self.train_rows:,} rows, test {self.test_rows:,} rows; "
            f"noise {noise}"
        )


@dataclass(frozen=True)
class NoisyDigits:
    """scikit-learn's digits split into a noisy training split and a clean test split.

    ``x_train`` ``(n_train, 64)`` and ``x_test`` ``(n_test, 64)`` float32 in [0, 1];
    ``y_train`` ``(n_train,)`` the given (noisy) class ids, ``y_true`` the true ones, ``y_test``
    ``(n_test,)``; ``train_rows``, ``test_rows`` the positions in ``load_digits``; ``noise`` the
    realized rates of the training labels against the truth."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    y_true: np.ndarray
    train_rows: np.ndarray
    test_rows: np.ndarray
    noise: dict[str, float]


def load_noisy_digits(
    noise: NoiseKind | None = "symmetric",
    rate: float = 0.2,
    *,
    seed: int = 0,
    test_fraction: float = 0.25,
) -> NoisyDigits:
    """scikit-learn's handwritten digits, ``rate`` of the training labels moved by ``noise``
    (symmetric, pair or instance; None: none), in memory (`builtin_digits` writes them as
    stores). The same arguments give the same arrays."""
    if noise is None and rate != 0.0:
        raise ConfigError(f"rate is {rate} but no noise kind is given; pass --noise KIND")
    if noise is not None:
        check_noise(noise, rate, Task.MULTICLASS)
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction is {test_fraction}; use a value in (0, 1), e.g. 0.25")
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # (1797, 64)
    y = digits.target.astype(np.int64)  # (1797,)
    split_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
    train, test = _stratified_split(y, test_fraction, np.random.default_rng(split_seed))
    truth = _onehot(y[train])
    given = truth
    if noise is not None:
        means = class_means([(x[train], truth)], len(DIGIT_WORDS))
        given = inject(
            truth,
            noise,
            rate,
            noise_seed,
            confusable=confusable_from_means(means),
            difficulty=margin_difficulty(x[train], truth, means),
        )
    return NoisyDigits(
        x[train], np.asarray(given.argmax(axis=1)).ravel().astype(np.int64), x[test], y[test],
        y[train], train, test, realized_rates(given, truth),
    )  # fmt: skip


def builtin_digits(
    out: str | Path,
    *,
    noise: NoiseKind | None = None,
    rate: float = 0.0,
    seed: int = 0,
    test_fraction: float = 0.25,
    overwrite: bool = False,
) -> BuiltinSummary:
    """Write scikit-learn's handwritten digits (`load_noisy_digits`) to ``out/train`` and
    ``out/test``.

    Parameters
    ----------
    out : folder to create (atomically)
    noise : kind of label noise in the training split (symmetric, pair or instance), or None
    rate : noise rate in [0, 1); must be 0 without ``noise``
    seed : seeds the split and the noise; the same arguments give the same bytes
    test_fraction : share of each class held out as the clean test split, in (0, 1)
    overwrite : replace ``out`` if it exists and is not empty

    Returns
    -------
    BuiltinSummary
    """
    data = load_noisy_digits(noise, rate, seed=seed, test_fraction=test_fraction)
    train, test = data.train_rows, data.test_rows
    layout = Layout(
        features=(FeatureSpec("pixels", 64, "float32"),),
        n_classes=len(DIGIT_WORDS),
        task=Task.MULTICLASS,
        class_names=tuple(str(d) for d in range(len(DIGIT_WORDS))),
        class_descriptions=tuple(f"a handwritten digit {word}" for word in DIGIT_WORDS),
    )
    source = {
        "generator": "builtin-digits",
        "origin": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)",
        "noise": noise,
        "rate": rate,
        "seed": seed,
        "test_fraction": test_fraction,
    }
    with atomic_output(out, overwrite, kind=DATASETS) as tmp:
        train_layout = dataclasses.replace(layout, has_clean_labels=True)
        train_source = {**source, "split": "train", "realized": data.noise}
        with DatasetWriter(tmp / "train", train_layout, source=train_source) as writer:
            writer.write_batch(
                Batch(
                    ids=[f"digit{i:04d}" for i in train],
                    labels=list(data.y_train[:, None]),
                    clean_labels=list(data.y_true[:, None]),
                    features={"pixels": data.x_train},
                ),
                source="digits train",
            )
        with DatasetWriter(tmp / "test", layout, source={**source, "split": "test"}) as writer:
            writer.write_batch(
                Batch(
                    ids=[f"digit{i:04d}" for i in test],
                    labels=list(data.y_test[:, None]),
                    features={"pixels": data.x_test},
                ),
                source="digits test",
            )
    return BuiltinSummary(Path(out), int(train.size), int(test.size), data.noise)


def _stratified_split(
    y: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test row indices; each class gives ``round(test_fraction * n_c)`` rows
    (at least one, and at least one left for training) to the test split."""
    test = []
    for cls in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == cls))
        n_test = min(max(round(test_fraction * rows.size), 1), rows.size - 1)
        test.append(rows[:n_test])
    held = np.zeros(y.size, dtype=bool)
    held[np.concatenate(test)] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def _onehot(y: np.ndarray) -> sp.csr_matrix:
    """``(n,)`` class ids -> ``(n, 10)`` CSR one label a row."""
    return sp.csr_matrix(
        (np.ones(y.size, np.float32), y, np.arange(y.size + 1)), shape=(y.size, len(DIGIT_WORDS))
    )
