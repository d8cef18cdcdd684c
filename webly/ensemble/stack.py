"""The second-level stacker: a LightGBM (or logistic) model scoring each row's candidate classes.

What the YouTube-8M 2nd-place team did (0.874 GAP@20 best single model -> 0.889 stacked):
for every row, take the classes the zoo ranks high (its *candidates*) and learn, from the
members' out-of-fold predictions, whether each candidate is one of the row's labels.

Candidates
    The union of each member's top ``top_n`` classes and the mean blend's top ``blend_top``
    (the classes `webly.predictions.merge_topk` ranks first; the 2nd-place team took the top
    30). One stacker example per
    (row, candidate) pair; a pair's target is 1 when the candidate is one of the row's labels.
    A row whose true labels are not all among its candidates gets no score for the missing
    ones: they stay outside its predictions, and GAP's recall counts them as missed (the fold
    metrics report ``candidate_recall``, the share of labels that are candidates at all).

Features of a pair (`feature_names`), float32, in this order
    ``class_id``      the candidate's class id (LightGBM: categorical; logistic: left out)
    ``prior``         the class's label frequency in the training labels (share of rows)
    ``score_<m>``     member m's score for the class; 0 when the class is not in m's top k_m
    ``rank_<m>``      its 1-based rank in m's top k_m; ``k_m + 1`` when absent
    ``mean``          mean of the members' scores (absent = 0): the mean blend's score
    ``std``, ``max``  standard deviation and maximum of the members' scores
    ``n_present``     members that have the class in their top k
    ``blend_rank``    1-based rank of the candidate among the row's candidates by ``mean``
    ``row_top``       the row's highest ``mean``: how sure the zoo is about the row at all
    Absent members get score 0 and rank ``k_m + 1`` rather than NaN, so both learners read the
    same columns; a tree still tells "absent" apart exactly (no rank is ``k_m + 1`` otherwise).
    ``k_m`` is the member's k when the stacker was trained; at prediction time a member's top-k
    is cut to it.

Objective
    Binary log-loss per pair for both tasks. Multi-label: a pair's probability is the score
    GAP@k ranks across rows, so calibration across rows matters and a ranking objective
    (lambdarank) would only order candidates within a row. Multi-class: the same binary model,
    with each row's scores then divided by their sum over the row's candidates; only the order
    within a row counts for accuracy, and the normalised scores are usable as soft labels.

Folds
    Pairs take the fold of their row (``folds``, e.g. `webly.data.Dataset.folds`; the zoo's
    folds keep the zoo's groups together), so all candidates of a row, and all rows of a group,
    fall in one fold. Fold model f is trained on the pairs of the other folds and predicts the
    rows of fold f: the stacker's out-of-fold predictions. Test predictions average the fold
    models' probabilities. With ``early_stopping_rounds`` the held-out fold picks each fold
    model's number of rounds, which makes the out-of-fold metric slightly optimistic; the test
    predictions are not affected.

Memory
    Features are built in blocks of ``block_rows`` rows straight from the members' prediction
    stores (``SplitView.topk``), never as an (n_samples, n_classes) matrix. LightGBM learns its
    bins from the features of a row sample of about 200,000 pairs, then receives the pairs
    block by block (`lightgbm.Sequence`), so the float features of all pairs (4 bytes per
    feature per pair: 112 bytes with 10 members) are never held. Held instead: LightGBM's
    binned dataset (about 40 bytes a pair with 10 members), while a fold model trains a binned
    copy of the other folds' pairs and LightGBM's per-pair training buffers, and 4 bytes of
    target and 2 of fold per pair. Measured (``bench/bench_stacker_scale.py``): 1M rows x 30
    candidates x 10 members (30M pairs) peak at 4.8 GB of anonymous memory, about 160 bytes a
    pair (freed LightGBM buffers that glibc keeps included), where LightGBM fed from a held
    float32 matrix would need that matrix's 3.4 GB on top of its own. The logistic learner
    holds the float32 features,
    ``4 * (len(feature_names) - 1)`` bytes per pair: it is meant for small data.

Saved stacker
    A folder with ``manifest.json`` (config, member names and k, class prior, feature names,
    per-fold info; logistic weights) and one LightGBM text model file per fold
    (``fold-<f>.txt``); no pickle. Training is deterministic for a given ``seed`` and
    ``threads`` (LightGBM ``deterministic=True``).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from webly._fs import claim_output, publish_output
from webly.core import Task, TopK, canonical_labels, select_top_k
from webly.data.store import read_manifest
from webly.ensemble.members import Members
from webly.errors import ConfigError, DataError
from webly.metrics.evaluate import task_metric
from webly.metrics.ranking import hit_mask
from webly.predictions import union_candidates
from webly.progress import Advance, steps

FORMAT = "webly-stacker"
FORMAT_VERSION = 1
LEARNERS = ("lightgbm", "logistic")
_TABLE_ENTRIES = 1 << 23  # cap on a block's (rows, n_classes + 1) lookup tables
_BIN_SAMPLE_PAIRS = 200_000  # pairs LightGBM's bins are learnt from (its own default count)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class StackerConfig:
    """How the stacker picks candidates and learns; every field has a working default.

    Attributes
    ----------
    learner : {"lightgbm", "logistic"}
        Gradient-boosted trees over the pair features, or logistic regression over the
        standardised features without ``class_id`` (the issue's "logistic stacking").
    members : tuple of str, optional
        Members to stack, by name, in this order; all members given if None.
    top_n : int
        Candidates taken from each member's top ``top_n`` (0: none).
    blend_top : int
        Candidates taken from the mean blend's top ``blend_top`` (0: none).
    keep : int
        Predictions kept per row in the stacker's output (the best ``keep`` candidates).
    num_leaves, learning_rate, rounds, min_data_in_leaf, feature_fraction, lambda_l2 : LightGBM
        Tree size, shrinkage, boosting rounds, minimum pairs per leaf, share of features each
        tree sees, L2 penalty on leaf values.
    early_stopping_rounds : int, optional
        Stop a fold model once the held-out fold's log-loss has not improved for this many
        rounds (see the module notes on optimism); train ``rounds`` rounds if None.
    c : float
        Logistic learner: inverse L2 regularisation strength (scikit-learn's ``C``).
    block_rows : int
        Rows whose features are built at once (fewer with many classes; see `_Spec`).
    seed : int
        The only source of randomness (LightGBM's seeds, the bin sample).
    threads : int
        LightGBM threads; 0 = OpenMP's default (all cores). Same seed and threads, same output.
    """

    learner: str = "lightgbm"
    members: tuple[str, ...] | None = None
    top_n: int = 20
    blend_top: int = 30
    keep: int = 100
    num_leaves: int = 31
    learning_rate: float = 0.05
    rounds: int = 200
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.9
    lambda_l2: float = 1.0
    early_stopping_rounds: int | None = None
    c: float = 1.0
    block_rows: int = 4096
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        if self.learner not in LEARNERS:
            raise ConfigError(f"stacker learner {self.learner!r} is unknown; use one of {LEARNERS}")
        if self.members is not None:
            object.__setattr__(self, "members", tuple(self.members))
        if self.top_n < 0 or self.blend_top < 0 or self.top_n + self.blend_top == 0:
            raise ConfigError(
                f"stacker top_n={self.top_n}, blend_top={self.blend_top}; both must be >= 0 and "
                "one > 0 (candidates come from the members' top-n and the blend's top)"
            )
        for name in ("keep", "num_leaves", "rounds", "min_data_in_leaf", "block_rows"):
            if getattr(self, name) < 1 or (name == "num_leaves" and self.num_leaves < 2):
                raise ConfigError(
                    f"stacker {name} is {getattr(self, name)}; it must be >= "
                    f"{2 if name == 'num_leaves' else 1}"
                )
        if not (self.learning_rate > 0 and self.c > 0 and self.lambda_l2 >= 0):
            raise ConfigError(
                f"stacker learning_rate={self.learning_rate}, c={self.c}, "
                f"lambda_l2={self.lambda_l2}; learning_rate and c must be > 0, lambda_l2 >= 0"
            )
        if not 0 < self.feature_fraction <= 1:
            raise ConfigError(
                f"stacker feature_fraction is {self.feature_fraction}; use a share in (0, 1]"
            )
        if self.early_stopping_rounds is not None and self.early_stopping_rounds < 1:
            raise ConfigError(
                f"stacker early_stopping_rounds is {self.early_stopping_rounds}; use >= 1 or None"
            )
        if self.threads < 0:
            raise ConfigError(f"stacker threads is {self.threads}; use >= 0 (0 = all cores)")


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class _Spec:
    """What the features of a pair depend on besides the members' predictions."""

    config: StackerConfig
    n_classes: int
    member_k: tuple[int, ...]  # k_m: each member's k at training time
    prior: np.ndarray  # (n_classes,) float32 label share of each class

    @property
    def n_members(self) -> int:
        return len(self.member_k)

    @property
    def block_rows(self) -> int:
        """Rows a block holds: ``config.block_rows``, fewer when the block's (rows,
        n_classes + 1) lookup tables would exceed 2**23 entries (32 MB each)."""
        return max(1, min(self.config.block_rows, _TABLE_ENTRIES // (self.n_classes + 1)))


def feature_names(members: Sequence[str]) -> list[str]:
    """The pair feature columns for ``members``, in order (see the module notes)."""
    safe = [re.sub(r"[^0-9A-Za-z_]", "_", m) for m in members]
    return [
        "class_id",
        "prior",
        *(f"score_{m}" for m in safe),
        *(f"rank_{m}" for m in safe),
        "mean",
        "std",
        "max",
        "n_present",
        "blend_rank",
        "row_top",
    ]


def _cut(topks: Sequence[TopK], spec: _Spec) -> list[TopK]:
    """Each member's predictions cut to its training k_m, sorted best first."""
    if len(topks) != spec.n_members:
        raise DataError(
            f"{len(topks)} member predictions given but the stacker was trained on "
            f"{spec.n_members}; pass one TopK per member, in the stacker's member order"
        )
    if len({t.n_samples for t in topks}) > 1:
        raise DataError(
            f"member predictions have {[t.n_samples for t in topks]} rows; they must predict "
            "the same rows"
        )
    top = [t.indices.max(initial=-1) for t in topks]
    if max(top, default=-1) >= spec.n_classes:
        raise DataError(
            f"member predictions use class {max(top)} but the stacker knows {spec.n_classes} "
            "classes; predict with members over the same classes"
        )
    return [_best_first(t, k) for t, k in zip(topks, spec.member_k, strict=True)]


def _best_first(topk: TopK, k: int) -> TopK:
    """The best ``k`` of each row, best first; a store's rows already are, and are only cut."""
    scores = topk.scores
    if (scores[:, :-1] >= scores[:, 1:]).all():  # sorted; -inf padding sits at the end
        return TopK(topk.indices[:, :k], scores[:, :k]) if topk.k > k else topk
    return TopK(*select_top_k(topk, k, sort=True))


class _Tables:
    """Flat positions of the members' entries in per-row tables over the classes of a block.

    A table is (B, n_classes + 1), raveled; its last column is a dump slot that padding (-1)
    is sent to, so scatters and gathers need no masks. Flat `np.take` / `np.put` run about
    ten times faster than 2-d fancy indexing.
    """

    def __init__(self, cut: Sequence[TopK], n_classes: int) -> None:
        self.n_rows = cut[0].n_samples
        self.width = n_classes + 1
        self.base = np.arange(self.n_rows, dtype=np.int64)[:, None] * self.width
        self.flat = [self.at(t.indices) for t in cut]  # per member (B * k_m,) positions

    def at(self, classes: np.ndarray) -> np.ndarray:
        """Flat table positions of (B, w) class ids, -1 mapped to the dump column."""
        return (np.where(classes >= 0, classes, self.width - 1) + self.base).ravel()

    def table(self, dtype: type) -> np.ndarray:
        return np.zeros(self.n_rows * self.width, dtype=dtype)


def _blend_top(cut: Sequence[TopK], tables: _Tables, top: int) -> np.ndarray:
    """(B, <= top) int32: each row's best ``top`` classes of the mean blend, -1 padding.

    The members' scores are summed in a class table; each class is then ranked once, at its
    first occurrence among the members' entries (as `merge_topk` ranks them).
    """
    total = tables.table(np.float32)
    first = tables.table(np.int16)
    for flat, topk in zip(tables.flat, cut, strict=True):
        total[flat] += np.where(topk.indices >= 0, topk.scores, 0).ravel()
    for m in reversed(range(len(cut))):  # the lowest member holding a class writes last
        first[tables.flat[m]] = m + 1
    n_classes = tables.width - 1
    if n_classes <= sum(t.k for t in cut):  # rank the table's rows: fewer values than entries
        values = total.reshape(tables.n_rows, tables.width)[:, :n_classes]
        values = np.where(first.reshape(values.shape[0], -1)[:, :n_classes] > 0, values, -np.inf)
        classes = np.broadcast_to(np.arange(n_classes, dtype=np.int64), values.shape)
    else:  # rank each class at its first entry
        flat = np.concatenate([f.reshape(tables.n_rows, -1) for f in tables.flat], axis=1)
        owner = np.concatenate(
            [np.full(t.indices.shape, m + 1, dtype=np.int16) for m, t in enumerate(cut)], axis=1
        )
        values = np.take(total, flat)  # (B, sum k_m)
        keep = np.take(first, flat) == owner
        keep &= np.concatenate([t.indices for t in cut], axis=1) >= 0
        values[~keep] = -np.inf
        classes = flat - tables.base
    if values.shape[1] > top:
        chosen = np.argpartition(-values, top - 1, axis=1)[:, :top]
        classes = np.take_along_axis(classes, chosen, axis=1)
        values = np.take_along_axis(values, chosen, axis=1)
    return np.where(np.isneginf(values), -1, classes).astype(np.int32)


def _candidates(cut: Sequence[TopK], tables: _Tables, spec: _Spec) -> np.ndarray:
    """(B, W) int32 candidate class ids of each row, ascending, -1 padding at the end."""
    parts = []
    if spec.config.top_n:
        n = spec.config.top_n
        parts += [TopK(t.indices[:, :n], t.scores[:, :n]) for t in cut]
    if spec.config.blend_top:
        best = _blend_top(cut, tables, spec.config.blend_top)
        parts.append(TopK(best, np.zeros(best.shape, dtype=np.float32)))
    return union_candidates(parts)


def _features(cut: Sequence[TopK], spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    """Candidates and pair features of a block of rows.

    Returns
    -------
    candidates : (B, W) int32, -1 padding
    features : (P, n_features) float32, one row per valid candidate, in row-major order
        (P = ``(candidates >= 0).sum()``)
    """
    tables = _Tables(cut, spec.n_classes)
    candidates = _candidates(cut, tables, spec)
    valid = candidates >= 0
    n_rows, width = candidates.shape
    column_of = tables.table(np.int32)  # candidate column + 1 of each class, 0 = none
    column_of[tables.at(candidates)] = np.tile(np.arange(1, width + 1, dtype=np.int32), n_rows)
    column_of[tables.width - 1 :: tables.width] = 0
    out_base = np.arange(n_rows, dtype=np.int64)[:, None] * (width + 1)
    scores = np.zeros((spec.n_members, n_rows * (width + 1)), dtype=np.float32)  # W + dump
    ranks = np.empty((spec.n_members, n_rows * (width + 1)), dtype=np.float32)
    for m, (flat, topk, k) in enumerate(zip(tables.flat, cut, spec.member_k, strict=True)):
        at = np.take(column_of, flat).reshape(topk.indices.shape) - 1  # (B, k_m), -1 = none
        at[at < 0] = width
        at = (at + out_base).ravel()
        ranks[m] = k + 1
        scores[m][at] = topk.scores.ravel()
        ranks[m][at] = np.tile(np.arange(1, topk.k + 1, dtype=np.float32), n_rows)
    scores = scores.reshape(spec.n_members, n_rows, width + 1)[:, :, :width]
    ranks = ranks.reshape(spec.n_members, n_rows, width + 1)[:, :, :width]
    mean = scores.mean(axis=0)  # (B, W)
    order = np.argsort(np.where(valid, -mean, np.inf), axis=1, kind="stable")
    blend_rank = np.empty(candidates.shape, dtype=np.float32)
    ladder = np.broadcast_to(np.arange(1, width + 1, dtype=np.float32), candidates.shape)
    np.put_along_axis(blend_rank, order, ladder, axis=1)
    row_top = np.where(valid, mean, -np.inf).max(axis=1, initial=0)
    columns = [
        candidates,
        spec.prior[np.maximum(candidates, 0)],
        *scores,
        *ranks,
        mean,
        scores.std(axis=0),
        scores.max(axis=0),
        (ranks <= np.asarray(spec.member_k, dtype=np.float32)[:, None, None]).sum(axis=0),
        blend_rank,
        np.broadcast_to(row_top[:, None], mean.shape),
    ]
    pairs = np.flatnonzero(valid)
    features = np.empty((len(columns), pairs.size), dtype=np.float32)  # (F, P)
    for j, column in enumerate(columns):
        features[j] = np.take(np.asarray(column).ravel(), pairs)
    return candidates, np.ascontiguousarray(features.T)


def _row_blocks(n_rows: int, block_rows: int) -> Iterator[slice]:
    for start in range(0, n_rows, block_rows):
        yield slice(start, min(start + block_rows, n_rows))


# --------------------------------------------------------------------------- learners


class _Model(Protocol):
    """One fold's fitted model."""

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(P,) float64 probability that each pair's candidate is a label."""

    def save(self, folder: Path, fold: int) -> dict[str, Any]:
        """Write what the model needs into ``folder``; returns its manifest entry."""


class _Booster:
    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster

    @property
    def rounds(self) -> int:
        return int(self.booster.current_iteration())

    def predict(self, features: np.ndarray) -> np.ndarray:
        if not features.shape[0]:
            return np.zeros(0)
        return np.asarray(self.booster.predict(features), dtype=np.float64)

    def save(self, folder: Path, fold: int) -> dict[str, Any]:
        name = f"fold-{fold}.txt"
        self.booster.save_model(str(folder / name))
        return {"model": name}

    @classmethod
    def load(cls, folder: Path, entry: dict[str, Any]) -> _Booster:
        return cls(lgb.Booster(model_file=str(folder / entry["model"])))


class _Logistic:
    """Logistic regression over standardised features, ``class_id`` left out."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, bias: float):
        self.mean, self.scale, self.coef, self.bias = mean, scale, coef, bias

    def predict(self, features: np.ndarray) -> np.ndarray:
        z = ((features[:, 1:] - self.mean) / self.scale) @ self.coef + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))

    def save(self, folder: Path, fold: int) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "bias": self.bias,
        }

    @classmethod
    def load(cls, folder: Path, entry: dict[str, Any]) -> _Logistic:
        return cls(
            np.asarray(entry["mean"]),
            np.asarray(entry["scale"]),
            np.asarray(entry["coef"]),
            float(entry["bias"]),
        )


class _Learner(Protocol):
    def prepare(self, pairs: _TrainPairs) -> None:
        """Take in the training pairs (features streamed from ``pairs``)."""

    steps: tuple[int, str]
    """How many steps a fit takes, and of what (a `webly.progress.steps` bar)."""

    def fit(
        self, train: np.ndarray, valid: np.ndarray | None, advance: Advance | None = None
    ) -> _Model:
        """Fit on the pairs ``train`` (ascending pair positions), stopping on ``valid``;
        ``advance(n)`` after each step."""


class _LightGBMLearner:
    """Holds the binned LightGBM dataset of all pairs; fold models train on subsets of it."""

    def __init__(self, spec: _Spec, names: list[str]) -> None:
        config = spec.config
        self.names = names
        self.config = config
        self.params: dict[str, Any] = {
            "objective": "binary",
            "learning_rate": config.learning_rate,
            "num_leaves": config.num_leaves,
            "min_data_in_leaf": config.min_data_in_leaf,
            "feature_fraction": config.feature_fraction,
            "lambda_l2": config.lambda_l2,
            "num_threads": config.threads,
            "seed": config.seed,
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }
        self.data: lgb.Dataset | None = None
        self.steps = (config.rounds, "rounds")

    def prepare(self, pairs: _TrainPairs) -> None:
        lgb_names = [re.sub(r"[^0-9A-Za-z_]", "_", n) for n in self.names]
        common: dict[str, Any] = {
            "feature_name": lgb_names,
            "categorical_feature": [0],
            "params": self.params,
        }
        reference = lgb.Dataset(pairs.bin_sample(), **common).construct()
        blocks = [_BlockSequence(pairs, block) for block in pairs.blocks]
        self.data = lgb.Dataset(
            blocks, label=pairs.targets, reference=reference, **common, free_raw_data=True
        ).construct()

    def fit(
        self, train: np.ndarray, valid: np.ndarray | None, advance: Advance | None = None
    ) -> _Model:
        assert self.data is not None  # prepare() comes first, inside fit_stacker
        train_set = _subset(self.data, train)
        valid_sets: list[lgb.Dataset] = []
        callbacks: list[Callable[..., Any]] = []
        if valid is not None and self.config.early_stopping_rounds is not None:
            valid_sets = [_subset(self.data, valid)]
            callbacks = [lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)]
        if advance is not None:

            def round_done(env: Any) -> None:
                advance(1)

            callbacks.append(round_done)
        booster = lgb.train(
            self.params,
            train_set,
            num_boost_round=self.config.rounds,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        # A predictor rebuilt from the model text holds no training buffers (scores and
        # gradients of every training pair) and, with early stopping, only the best rounds.
        best = booster.best_iteration if valid_sets else -1
        return _Booster(lgb.Booster(model_str=booster.model_to_string(num_iteration=best)))


def _subset(data: lgb.Dataset, pairs: np.ndarray) -> lgb.Dataset:
    """The pairs ``pairs`` (ascending positions) of the binned ``data``, binned data shared.

    `lgb.Dataset.subset` sorts its indices as a Python list (a Python int, ~40 bytes, per
    pair); the subset's construction reads a NumPy int32 array just as well.
    """
    subset = data.subset([])
    subset.used_indices = pairs.astype(np.int32)  # type: ignore[assignment]
    return subset


class _LogisticLearner:
    """Holds the float32 features of all pairs (4 bytes per feature per pair)."""

    def __init__(self, spec: _Spec) -> None:
        self.config = spec.config
        self.features: np.ndarray | None = None
        self.targets: np.ndarray | None = None
        self.steps = (1, "fit")

    def prepare(self, pairs: _TrainPairs) -> None:
        self.features = np.concatenate([pairs.block_features(b) for b in pairs.blocks])
        self.targets = pairs.targets

    def fit(
        self, train: np.ndarray, valid: np.ndarray | None, advance: Advance | None = None
    ) -> _Model:
        assert self.features is not None and self.targets is not None  # prepare() first
        model = self._fit(train)
        if advance is not None:
            advance(1)
        return model

    def _fit(self, train: np.ndarray) -> _Model:
        assert self.features is not None and self.targets is not None  # prepare() first
        x = self.features[train, 1:]
        y = self.targets[train]
        mean = x.mean(axis=0, dtype=np.float64)
        scale = x.std(axis=0, dtype=np.float64)
        scale[scale == 0] = 1.0
        if np.unique(y).size < 2:  # one class only: a constant model at its log-odds
            share = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
            return _Logistic(mean, scale, np.zeros_like(mean), math.log(share / (1 - share)))
        model = LogisticRegression(C=self.config.c, max_iter=1000)
        model.fit((x - mean) / scale, y)
        return _Logistic(mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0]))


# --------------------------------------------------------------------------- training pairs


class _TrainPairs:
    """The (row, candidate) pairs of the training rows, their targets and fold of each pair.

    Scanning the rows once fixes each row's pair count and each pair's target; features are
    re-built from the members' stores block by block whenever a learner asks for them.
    ``folds`` is (n_train,) int16, each row's fold position (0 .. n_folds - 1). Held: 4 bytes
    of target and 2 of fold per pair, 8 bytes of offset and 8 of label hits per row.
    """

    def __init__(
        self, members: Members, labels: sp.csr_matrix, folds: np.ndarray, spec: _Spec
    ) -> None:
        self.members = members
        self.spec = spec
        n = labels.shape[0]
        self.blocks = list(_row_blocks(n, spec.block_rows))
        counts = np.zeros(n, dtype=np.int64)
        targets = []
        self.hits = np.zeros(n, dtype=np.int64)  # labels of each row among its candidates
        for block in self.blocks:
            cut = _cut(members.topk("oof", block), spec)
            candidates = _candidates(cut, _Tables(cut, spec.n_classes), spec)
            valid = candidates >= 0
            hit = hit_mask(candidates, labels[block])
            counts[block] = valid.sum(axis=1)
            self.hits[block] = hit.sum(axis=1)
            targets.append(hit[valid].astype(np.float32))
        self.offsets = np.concatenate([[0], np.cumsum(counts)])  # (n + 1,) first pair of a row
        self.targets = np.concatenate(targets) if targets else np.zeros(0, dtype=np.float32)
        self.pair_folds = np.repeat(folds, counts)  # (P,) int16 a pair's fold is its row's

    @property
    def n_pairs(self) -> int:
        return int(self.offsets[-1])

    def block_features(self, block: slice | np.ndarray) -> np.ndarray:
        return _features(_cut(self.members.topk("oof", block), self.spec), self.spec)[1]

    def bin_sample(self) -> np.ndarray:
        """Features of a random row sample holding about 200,000 pairs, to learn bins from."""
        n = self.offsets.size - 1
        per_row = max(self.n_pairs / max(n, 1), 1.0)
        size = min(n, math.ceil(_BIN_SAMPLE_PAIRS / per_row))
        rng = np.random.default_rng(self.spec.config.seed)
        rows = np.sort(rng.choice(n, size=size, replace=False))
        step = self.spec.block_rows
        return np.concatenate(
            [self.block_features(rows[i : i + step]) for i in range(0, rows.size, step)]
        )


class _BlockSequence(lgb.Sequence):
    """The pairs of one row block, for LightGBM to read in one batch (``batch_size`` is the
    block's pair count; the bins come from a reference dataset, so LightGBM samples no row)."""

    def __init__(self, pairs: _TrainPairs, block: slice) -> None:
        self.pairs = pairs
        self.block = block
        self.size = int(pairs.offsets[block.stop] - pairs.offsets[block.start])
        self.batch_size = max(self.size, 1)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int | slice | list[int]) -> np.ndarray:
        return self.pairs.block_features(self.block)[idx]


# --------------------------------------------------------------------------- the stacker


@dataclass(eq=False)
class Stacker:
    """A trained stacker: one model per fold, over named members' predictions.

    Build it with `fit_stacker`, or `Stacker.load` a saved one.
    """

    config: StackerConfig
    task: Task
    members: list[str]
    member_k: list[int]
    prior: np.ndarray  # (n_classes,) float32
    models: list[_Model]
    folds: list[dict[str, Any]] = field(default_factory=list)  # per-fold metrics (fit_stacker)

    def __post_init__(self) -> None:
        self.task = Task.parse(self.task)

    @property
    def n_classes(self) -> int:
        return int(self.prior.size)

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.members)

    @property
    def _spec(self) -> _Spec:
        return _Spec(self.config, self.n_classes, tuple(self.member_k), self.prior)

    def predict(self, members: Members, split: str = "test", fold: int | None = None) -> TopK:
        """Predict every row of ``split`` of the members' stores, streamed block by block.

        Parameters
        ----------
        members : Members
            Must include the stacker's members (by name; others are ignored).
        split : {"test", "oof"}
        fold : int, optional
            Use only the model of the ``fold``-th fold (in ascending fold id order); the
            average of all fold models if None.

        Returns
        -------
        TopK
            (n_rows, w) the best ``keep`` candidates of each row, best first, w <= ``keep``.
        """
        chosen = self._select(members)
        blocks = _row_blocks(chosen.n_rows(split), self._spec.block_rows)
        return self._predict_blocks((chosen.topk(split, b) for b in blocks), fold)

    def predict_topk(self, topks: Sequence[TopK], fold: int | None = None) -> TopK:
        """Predict rows from the members' in-memory predictions (one TopK per member, in
        `members` order); see `predict`."""
        n = topks[0].n_samples if topks else 0
        blocks = _row_blocks(n, self._spec.block_rows)
        return self._predict_blocks(
            ([TopK(t.indices[b], t.scores[b]) for t in topks] for b in blocks), fold
        )

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the stacker to the folder ``path`` (atomically); returns ``path``."""
        path = Path(path)
        tmp = claim_output(path, overwrite)
        try:
            entries = [
                {"info": info, **model.save(tmp, f)}
                for f, (model, info) in enumerate(zip(self.models, self.folds, strict=True))
            ]
            config = asdict(self.config)
            config["members"] = None if self.config.members is None else list(self.config.members)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "config": config,
                "task": self.task,
                "members": self.members,
                "member_k": self.member_k,
                "features": self.feature_names,
                "prior": self.prior.tolist(),
                "folds": entries,
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
            publish_output(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> Stacker:
        """The stacker saved at ``path``."""
        path = Path(path)
        manifest = read_manifest(
            path, FORMAT, FORMAT_VERSION, "a saved stacker", "fit one with fit_stacker",
            "re-fit the stacker",
        )  # fmt: skip
        try:
            config = StackerConfig(**manifest["config"])
            model_cls = _Booster if config.learner == "lightgbm" else _Logistic
            models: list[_Model] = [model_cls.load(path, e) for e in manifest["folds"]]
            return cls(
                config=config,
                task=manifest["task"],
                members=list(manifest["members"]),
                member_k=[int(k) for k in manifest["member_k"]],
                prior=np.asarray(manifest["prior"], dtype=np.float32),
                models=models,
                folds=[dict(e["info"]) for e in manifest["folds"]],
            )
        except (KeyError, TypeError, ValueError, lgb.basic.LightGBMError) as err:
            raise DataError(f"{path}: not a readable stacker ({err}); re-fit it") from None

    # ---- internals

    def _select(self, members: Members) -> Members:
        missing = [n for n in self.members if n not in members.names]
        if missing:
            raise ConfigError(
                f"the stacker was trained on member(s) {', '.join(missing)}, which the "
                f"prediction stores lack; they hold: {', '.join(members.names)}"
            )
        chosen = members.select(self.members)
        if chosen.n_classes != self.n_classes:
            raise DataError(
                f"members predict {chosen.n_classes} classes but the stacker was trained on "
                f"{self.n_classes}; use the zoo it was trained on"
            )
        return chosen

    def features(self, topks: Sequence[TopK]) -> tuple[np.ndarray, np.ndarray]:
        """The candidates and pair features the stacker scores for some rows.

        Parameters
        ----------
        topks : one (B, k_m) TopK per member, in `members` order

        Returns
        -------
        candidates : (B, W) int32, ascending per row, -1 padding
        features : (P, len(feature_names)) float32, one row per valid candidate, row-major
        """
        spec = self._spec
        return _features(_cut(topks, spec), spec)

    def _predict_blocks(self, blocks: Iterator[list[TopK]], fold: int | None) -> TopK:
        if fold is not None and not 0 <= fold < len(self.models):
            raise ConfigError(
                f"fold {fold} asked for; this stacker has folds 0..{len(self.models) - 1}"
            )
        models = self.models if fold is None else [self.models[fold]]
        out = _TopKBuffer(self.config.keep, self.task)
        for topks in blocks:
            candidates, features = self.features(topks)
            out.put(candidates, np.mean([m.predict(features) for m in models], axis=0))
        return out.topk()


class _TopKBuffer:
    """Collects the best ``keep`` candidates of each row, block by block in row order."""

    def __init__(self, keep: int, task: Task) -> None:
        self.keep = keep
        self.task = task
        self.blocks: list[tuple[np.ndarray, np.ndarray]] = []

    def put(self, candidates: np.ndarray, probs: np.ndarray) -> None:
        """Rank the candidates (B, W) of the next rows by ``probs``, (P,) one probability per
        valid candidate in row-major order; multi-class scores are divided by their row's sum."""
        valid = candidates >= 0
        scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
        scores[valid] = probs
        if not self.task.multilabel:
            total = np.where(valid, scores, 0).sum(axis=1, keepdims=True)
            scores = np.where(valid, scores / np.maximum(total, 1e-30), -np.inf)
        self.blocks.append(select_top_k(TopK(candidates, scores), self.keep, sort=True))

    def topk(self) -> TopK:
        """(n, w) TopK of every row put, w the widest row's candidate count (<= keep)."""
        width = max((int((i >= 0).sum(axis=1).max(initial=0)) for i, _ in self.blocks), default=0)
        n = sum(i.shape[0] for i, _ in self.blocks)
        indices = np.full((n, width), -1, dtype=np.int32)
        scores = np.full((n, width), -np.inf, dtype=np.float32)
        start = 0
        while self.blocks:  # release each block once copied
            block_indices, block_scores = self.blocks.pop(0)
            stop = start + block_indices.shape[0]
            cut = min(width, block_indices.shape[1])  # a block may hold fewer candidates
            indices[start:stop, :cut] = block_indices[:, :cut]
            scores[start:stop, :cut] = block_scores[:, :cut]
            start = stop
        return TopK(indices, scores)


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class StackResult:
    """What `fit_stacker` produced.

    Attributes
    ----------
    stacker : Stacker
        The fold models, ready to `Stacker.predict` other rows.
    oof : TopK
        (n_train, w) each training row predicted by the fold model that did not see it.
    test : TopK or None
        (n_test, w) the fold models' mean on the members' test split; None when a member has
        no test predictions.
    fold_metrics : list of dict
        Per fold, in ascending fold id order: ``fold`` (its id), ``metric`` (GAP@20 or
        accuracy of its out-of-fold rows against ``labels``),
        ``candidate_recall`` (share of the fold's labels that are candidates), ``rows``,
        ``pairs``, ``rounds`` (LightGBM).
    metric : float
        GAP@20 (multi-label) or accuracy (multi-class) of ``oof`` against ``labels``.
    feature_names : list of str
    path : Path or None
        The saved stacker's folder (``out_dir``), or None.
    seconds : dict
        Wall time of ``pairs`` (the candidate scan), ``prepare`` (features into the learner),
        ``train``, ``oof`` and ``test``.
    """

    stacker: Stacker
    oof: TopK
    test: TopK | None
    fold_metrics: list[dict[str, Any]]
    metric: float
    feature_names: list[str]
    path: Path | None
    seconds: dict[str, float]


def fit_stacker(
    members: Members,
    labels: sp.spmatrix | sp.sparray | np.ndarray,
    folds: np.ndarray,
    task: Task,
    config: StackerConfig | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
) -> StackResult:
    """Train the stacker on the members' out-of-fold predictions, K-fold.

    Parameters
    ----------
    members : Members
        Prediction stores with an ``oof`` split (and ``test``, for test predictions);
        ``config.members`` picks some of them.
    labels : (n_train, n_classes) sparse or dense 0/1, or (n_train,) class ids
        The training labels of the rows the ``oof`` split predicts, in its row order.
    folds : (n_train,) int
        Fold of each row (e.g. ``Dataset.folds(n_folds, seed)``, the zoo's folds), >= 2 folds.
    task : {"multilabel", "multiclass"}
    config : StackerConfig, optional
    out_dir : path, optional
        Save the stacker there (`Stacker.save`).
    overwrite : bool
        Replace what is at ``out_dir``.

    Returns
    -------
    StackResult
    """
    config, task = config or StackerConfig(), Task.parse(task)
    members, csr, fold_ids, fold_of_row = _check_inputs(members, labels, folds, task, config)
    if out_dir is not None:
        shutil.rmtree(claim_output(Path(out_dir), overwrite))  # fail now, not after training
    n, n_classes = csr.shape
    prior = (np.bincount(csr.indices, minlength=n_classes) / max(n, 1)).astype(np.float32)
    member_k = [store.k for store in members.stores]
    stacker = Stacker(config, task, list(members.names), member_k, prior, models=[])
    seconds: dict[str, float] = {}

    with _timed(seconds, "pairs"):
        pairs = _TrainPairs(members, csr, fold_of_row, stacker._spec)
    with _timed(seconds, "prepare"):
        learner: _Learner = (
            _LightGBMLearner(stacker._spec, stacker.feature_names)
            if config.learner == "lightgbm"
            else _LogisticLearner(stacker._spec)
        )
        learner.prepare(pairs)
    with _timed(seconds, "train"):
        total, unit = learner.steps
        for f in range(fold_ids.size):
            held = pairs.pair_folds == f
            with steps(f"stacker fold {f + 1}/{fold_ids.size}", total, unit) as advance:
                model = learner.fit(np.flatnonzero(~held), np.flatnonzero(held), advance)
            stacker.models.append(model)
        del learner, held
    with _timed(seconds, "oof"):
        oof = _TopKBuffer(config.keep, task)
        for block in pairs.blocks:
            candidates, features = stacker.features(members.topk("oof", block))
            pair_folds = np.repeat(fold_of_row[block], (candidates >= 0).sum(axis=1))
            probs = np.empty(features.shape[0])
            for f, model in enumerate(stacker.models):
                probs[pair_folds == f] = model.predict(features[pair_folds == f])
            oof.put(candidates, probs)
        oof_topk = oof.topk()
    for f, model in enumerate(stacker.models):
        rows = np.flatnonzero(fold_of_row == f)
        stacker.folds.append(
            {
                "fold": int(fold_ids[f]),
                "metric": task_metric(
                    TopK(oof_topk.indices[rows], oof_topk.scores[rows]), csr[rows], task
                ),
                "candidate_recall": float(pairs.hits[rows].sum() / max(csr[rows].nnz, 1)),
                "rows": int(rows.size),
                "pairs": int((pairs.pair_folds == f).sum()),
                **({"rounds": model.rounds} if isinstance(model, _Booster) else {}),
            }
        )
    with _timed(seconds, "test"):
        has_test = all("test" in store.splits for store in members.stores)
        test = stacker.predict(members, "test") if has_test else None
    path = stacker.save(out_dir, overwrite=True) if out_dir is not None else None
    return StackResult(
        stacker=stacker,
        oof=oof_topk,
        test=test,
        fold_metrics=stacker.folds,
        metric=task_metric(oof_topk, csr, task),
        feature_names=stacker.feature_names,
        path=path,
        seconds=seconds,
    )


def _check_inputs(
    members: Members,
    labels: sp.spmatrix | sp.sparray | np.ndarray,
    folds: np.ndarray,
    task: Task,
    config: StackerConfig,
) -> tuple[Members, sp.csr_matrix, np.ndarray, np.ndarray]:
    """The members stacked, canonical labels, the distinct fold ids and each row's position
    among them (n_train,) int16; one-line errors for anything that does not fit."""
    if config.members is not None:
        members = members.select(config.members)
    for name, store in zip(members.names, members.stores, strict=True):
        if "oof" not in store.splits:
            raise DataError(
                f"member {name} ({store.path}) has no 'oof' predictions; the stacker trains on "
                "out-of-fold predictions (webly train with folds)"
            )
    n, n_classes = members.n_rows("oof"), members.n_classes
    if labels.shape[0] != n or (len(labels.shape) == 2 and labels.shape[1] != n_classes):
        raise DataError(
            f"labels have shape {labels.shape} but the members' oof predictions cover {n} rows "
            f"of {n_classes} classes; pass the training labels of the rows the zoo predicted"
        )
    csr = canonical_labels(labels, n, n_classes)
    counts = np.diff(csr.indptr)
    if not task.multilabel and (counts != 1).any():
        row = int(np.flatnonzero(counts != 1)[0])
        raise DataError(
            f"task is multiclass but row {row} has {counts[row]} labels; pass one label a row "
            "or task='multilabel'"
        )
    folds = np.asarray(folds)
    if folds.shape != (n,) or not np.issubdtype(folds.dtype, np.integer) or folds.min() < 0:
        raise DataError(
            f"folds is a {folds.dtype} array of shape {folds.shape}; pass ({n},) integer fold "
            "ids >= 0, one per training row (e.g. Dataset.folds(n_folds, seed))"
        )
    fold_ids, fold_of_row = np.unique(folds, return_inverse=True)
    if fold_ids.size < 2:
        raise DataError(f"folds hold only fold {fold_ids.tolist()}; pass at least 2 folds")
    return members, csr, fold_ids, fold_of_row.astype(np.int16)


@contextlib.contextmanager
def _timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - start
