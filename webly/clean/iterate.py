"""Iterative cleaning: train the zoo out-of-fold, find the noisy labels, act on them, train again
(AliProducts: 3-4 rounds of dropping the rows the ensemble disbelieves, +4% top-1).

Round ``r`` (0, 1, ..., ``rounds``) trains the zoo out-of-fold (`webly.train.oof.fit_oof`, the
same folds every round) on the labels and sample weights left by round ``r - 1`` (round 0: the
store's), averages the members' out-of-fold predictions (`webly.predictions.merge_topk`), runs
`webly.clean.find_noisy_labels` on the rows still in play and turns the verdict into actions
(`NoiseReport`, under ``rules``): its cleaned labels and sample weights are what round ``r + 1``
trains on. So round ``r`` measures a zoo trained after ``r`` rounds of cleaning, and the last
round's report (saved, not applied) estimates the noise they left.

Which round to keep: each round's ``valid_metric`` scores its averaged out-of-fold predictions
against the store's labels on every training row, the same rows and labels every round (the
``oof_metric`` is against the round's own labels, which come to agree with the model as cleaning
goes on, so it rises whether or not the model improves). Held-out accuracy on noisy labels ranks
models as clean accuracy does when the noise does not depend on the model, so the round with the
best ``valid_metric`` is `IterationResult.best` (round 0 when cleaning did not help), and
``patience`` stops the rounds once that many in a row have not beaten it.

Drops are final: a row dropped (weight 0) is left out of training, validation and later
detection; the report of a later round lists it as ``drop`` with score 1, flagged, predicted
-1. Down-weighting and repairs are judged again each round from the current labels.

The output folder::

    OUT/round-<r>/zoo/<member id>/   the round's zoo (`fit_oof`'s folder)
    OUT/round-<r>/report/            the round's NoiseReport, over every training row
    OUT/round-<r>/round.json         the round's config hash and its table row

Resume (`webly.resume`): a round whose ``round.json`` says ``done`` under the hash of its
inputs (zoo, folds, data, the labels and weights it starts from, method, options, rules) is
read back, not run; an unfinished round resumes its zoo where `fit_oof` left it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from webly.clean._registry import method_entry
from webly.clean.actions import DROP, ActionRules
from webly.clean.detect import find_noisy_labels
from webly.clean.report import NoiseReport
from webly.core import GAP_K, TopK
from webly.data.store import Dataset
from webly.ensemble.members import open_members, zoo_members
from webly.errors import ConfigError, DataError
from webly.executor import Executor
from webly.metrics.evaluate import task_metric
from webly.metrics.noise import detection_scores, noisy_rows
from webly.predictions import merge_topk
from webly.resume import DONE, finished, mark
from webly.train.loop import array_digest, matrix_digest
from webly.train.oof import fit_oof, zoo_settings
from webly.train.zoo import Zoo, manifest_hash

ROUND_FILE, REPORT_DIR, ZOO_DIR = "round.json", "report", "zoo"
ROW_INPUTS = ("features", "texts")  # method inputs with one entry a row, cut to the rows in play
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class RoundRow:
    """One round of `clean_iteratively`: what its zoo trained on, how it scored, what its
    detection found.

    Attributes
    ----------
    round : 0 for the store's labels, r after r rounds of cleaning
    members : members that trained (failed ones are left out of the average)
    rows_trained : rows of weight > 0
    dropped : rows of weight 0, all rounds so far
    relabelled : rows still trained whose labels differ from the store's, all rounds so far
    down_weighted : rows of weight strictly between 0 and 1
    oof_metric : GAP@20 (multi-label) or accuracy (multi-class) of the averaged out-of-fold
        predictions against the round's labels, on the rows trained
    valid_metric : the same against the store's labels, on every training row (comparable
        across rounds; see the module docstring)
    test_metric : the same of the averaged test predictions against the test split's clean
        labels (its labels when it has none); None without a labelled test split
    noise_estimate : mean estimated noise rate over the classes labelled in the rows trained
        (this round's report)
    flagged : rows this round's detection flags, among the rows trained
    true_noise : share of the rows trained whose labels differ from the true ones
        (``train.clean_labels``); None without them
    precision, recall : of the rows cleaning has touched so far (dropped, down-weighted or
        relabelled) as a detection of the rows whose store labels are wrong; None without truth
    seconds : wall time of the round (training, detection, report)
    """

    round: int
    members: int
    rows_trained: int
    dropped: int
    relabelled: int
    down_weighted: int
    oof_metric: float
    valid_metric: float
    test_metric: float | None
    noise_estimate: float
    flagged: int
    true_noise: float | None
    precision: float | None
    recall: float | None
    seconds: float


@dataclass(frozen=True, eq=False)
class IterationResult:
    """What `clean_iteratively` did.

    Attributes
    ----------
    metric : ``"gap@20"`` or ``"accuracy"`` (the table's metric columns)
    rows : one `RoundRow` per round run, round 0 first
    best : the round with the highest ``valid_metric`` (the earlier on ties)
    labels : (n_samples, n_classes) float32 csr_matrix, the labels round ``best`` trained on
        (rows of weight 0 empty), for `fit`/`fit_oof`/`fit_full` ``labels=``
    sample_weight : (n_samples,) float32, its sample weights (``sample_weight=``)
    reports : the folder of each round's `NoiseReport`
    """

    metric: str
    rows: tuple[RoundRow, ...]
    best: int
    labels: sp.csr_matrix
    sample_weight: np.ndarray
    reports: tuple[Path, ...]

    def table(self) -> list[dict[str, Any]]:
        """One dict a round, keyed by `RoundRow`'s field names."""
        return [asdict(row) for row in self.rows]

    def format(self) -> str:
        """The rounds as a markdown table; truth columns only when known."""
        truth = self.rows[0].true_noise is not None
        head = [
            "round", "members", "rows trained", "dropped", "relabelled", "down-weighted",
            f"OOF {self.metric}", f"valid {self.metric}", f"test {self.metric}", "noise est.",
            "flagged",
        ]  # fmt: skip
        if truth:
            head += ["true noise", "precision", "recall"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
        for row in self.rows:
            cells = [
                str(row.round), str(row.members), f"{row.rows_trained:,}", f"{row.dropped:,}",
                f"{row.relabelled:,}", f"{row.down_weighted:,}", f"{row.oof_metric:.4f}",
                f"{row.valid_metric:.4f}" + (" (best)" if row.round == self.best else ""),
                "-" if row.test_metric is None else f"{row.test_metric:.4f}",
                f"{row.noise_estimate:.4f}", f"{row.flagged:,}",
            ]  # fmt: skip
            if truth:
                cells += [f"{row.true_noise:.4f}", f"{row.precision:.3f}", f"{row.recall:.3f}"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def clean_iteratively(
    zoo: Zoo,
    train: Dataset,
    test: Dataset | None,
    out: str | Path,
    *,
    rounds: int = 3,
    method: str = "confident_learning",
    rules: ActionRules | None = None,
    folds: np.ndarray | None = None,
    options: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
    patience: int | None = None,
) -> IterationResult:
    """Train -> detect -> act, ``rounds`` times, then train once more; see the module docstring.

    Parameters
    ----------
    zoo : the members trained each round (`webly.train.zoo.load_zoo`)
    train : the training store; its ``clean_labels``, when present, fill the truth columns
    test : store the members' fold models predict each round (scored on its clean labels when
        it has them), or None
    out : folder of the rounds (see the module docstring)
    rounds : rounds of cleaning, >= 1; the zoo trains ``rounds + 1`` times
    method : the detection method (`webly.clean.list_methods`)
    rules : how a verdict becomes actions; `ActionRules` defaults when None. ``drop_fraction``
        applies to each round's rows in play, so drops add up over rounds.
    folds : (n_samples,) fold of each training row, shared by every round and member; None:
        ``train.folds(zoo.folds, zoo.seed)``
    options : the method's options and inputs (`find_noisy_labels` ``**options``); the inputs
        with one entry a row (``features``, ``texts``) are given for every training row and cut
        to the rows in play
    executor : where the rounds' fold models train (`fit_oof`'s ``executor``); None: here
    patience : stop once this many rounds in a row have not beaten the best ``valid_metric``
        so far (>= 1); None: run every round

    Returns
    -------
    IterationResult
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds is {rounds!r}; pass an integer >= 1 (rounds of cleaning)")
    if patience is not None and (
        isinstance(patience, bool) or not isinstance(patience, int) or patience < 1
    ):
        raise ConfigError(f"patience is {patience!r}; pass an integer >= 1, or None")
    method_entry(method)  # an unknown method fails before any training
    rules = rules or ActionRules()
    options = dict(options or {})
    folds = train.folds(zoo.folds, zoo.seed) if folds is None else np.asarray(folds)
    out = Path(out)
    given = train.labels
    truth = noisy_rows(given, train.clean_labels) if train.clean_labels is not None else None
    labels, weight = given, np.ones(len(train), dtype=np.float32)
    rows: list[RoundRow] = []
    reports: list[Path] = []
    trained_on: list[tuple[sp.csr_matrix, np.ndarray]] = []
    for r in range(rounds + 1):
        folder = round_folder(out, r)
        digest = _round_digest(zoo, train, test, folds, labels, weight, method, options, rules)
        finished = _finished(folder, digest)
        if finished is not None:
            row, report = finished
        else:
            row, report = _run_round(
                r, zoo, train, test, folder, folds, labels, weight, method, options, rules, truth,
                executor,
            )  # fmt: skip
            mark(folder / ROUND_FILE, digest, DONE, {"row": asdict(row)})  # after its report
        rows.append(row)
        reports.append(folder / REPORT_DIR)
        trained_on.append((labels, weight))
        best = _best_round(rows)
        if r == rounds or (patience is not None and r - best >= patience):
            break
        labels, weight = report.cleaned_labels(), report.sample_weights()
    best_labels, best_weight = trained_on[best]
    return IterationResult(
        metric=train.task.metric().key,
        rows=tuple(rows),
        best=best,
        labels=sp.csr_matrix(best_labels, dtype=np.float32),
        sample_weight=best_weight,
        reports=tuple(reports),
    )


def round_folder(out: Path, r: int) -> Path:
    """``OUT/round-<r>``: round ``r``'s zoo, report and ``round.json`` (see the module
    docstring)."""
    return out / f"round-{r}"


def _best_round(rows: list[RoundRow]) -> int:
    """The round of the highest ``valid_metric``, the earlier on ties."""
    return int(np.argmax([row.valid_metric for row in rows]))


# --------------------------------------------------------------------------- one round


def _run_round(
    r: int,
    zoo: Zoo,
    train: Dataset,
    test: Dataset | None,
    folder: Path,
    folds: np.ndarray,
    labels: sp.csr_matrix,
    weight: np.ndarray,
    method: str,
    options: dict[str, Any],
    rules: ActionRules,
    truth: np.ndarray | None,
    executor: Executor | None,
) -> tuple[RoundRow, NoiseReport]:
    """Train the round's zoo, detect on the rows in play, save the report; its table row."""
    started = time.perf_counter()
    first = r == 0  # the store's labels and uniform weights: the plain zoo's hash
    result = fit_oof(
        zoo, train, test, folder / ZOO_DIR, folds=folds,
        labels=None if first else labels, sample_weight=None if first else weight,
        executor=executor,
    )  # fmt: skip
    done = [m.id for m in result.members if m.error is None]
    if not done:
        raise DataError(
            f"round {r}: every member failed to train (first: {result.members[0].error}); "
            "fix the zoo and run again"
        )
    splits = ("oof", "test") if test is not None else ("oof",)
    members = open_members(zoo_members(folder / ZOO_DIR, done), splits)
    oof = merge_topk(members.topk("oof"), k=zoo.k)
    active = np.flatnonzero(weight > 0)
    verdict = find_noisy_labels(
        labels[active],
        _take(oof, active),
        method,
        task=train.task,
        **_rows_of(options, active, len(train)),
    )
    report = _expand(NoiseReport.from_verdict(verdict, rules), active, labels)
    report.save(folder / REPORT_DIR, overwrite=True)
    test_metric = None
    if test is not None:
        test_truth = test.clean_labels if test.clean_labels is not None else test.labels
        if test_truth.nnz:
            merged = merge_topk(members.topk("test"), k=zoo.k)
            test_metric = task_metric(merged, test_truth, test.task, GAP_K)
    relabelled = _differs(labels, train.labels) & (weight > 0)
    row = RoundRow(
        round=r,
        members=len(done),
        rows_trained=int(active.size),
        dropped=int(len(train) - active.size),
        relabelled=int(relabelled.sum()),
        down_weighted=int(((weight > 0) & (weight < 1)).sum()),
        oof_metric=task_metric(_take(oof, active), labels[active], train.task, GAP_K),
        valid_metric=task_metric(oof, train.labels, train.task, GAP_K),
        test_metric=test_metric,
        noise_estimate=_mean_noise_rate(report, labels[active]),
        flagged=int(report.is_noisy[active].sum()),
        **_truth_columns(train, labels, weight, relabelled, truth),
        seconds=time.perf_counter() - started,
    )
    return row, report


def _truth_columns(
    train: Dataset,
    labels: sp.csr_matrix,
    weight: np.ndarray,
    relabelled: np.ndarray,
    truth: np.ndarray | None,
) -> dict[str, float | None]:
    """``true_noise``, ``precision`` and ``recall`` of a round (None without clean labels)."""
    clean = train.clean_labels
    if truth is None or clean is None:
        return {"true_noise": None, "precision": None, "recall": None}
    active = weight > 0
    wrong = _differs(labels, clean) & active
    scores = detection_scores((weight < 1) | relabelled, truth)
    return {
        "true_noise": float(wrong.sum() / max(int(active.sum()), 1)),
        "precision": scores.precision,
        "recall": scores.recall,
    }


def _expand(report: NoiseReport, active: np.ndarray, labels: sp.csr_matrix) -> NoiseReport:
    """A report over the rows in play (``active``) as one over all rows of ``labels``; the
    others (dropped in earlier rounds) are ``drop``, flagged, score 1, predicted -1."""
    n = int(labels.shape[0])
    if active.size == n:  # the report's labels are ``labels``, canonical
        return report

    def full(values: np.ndarray, fill: Any) -> np.ndarray:
        out = np.full(n, fill, dtype=values.dtype)
        out[active] = values
        return out

    def scatter(matrix: sp.csr_matrix | None) -> sp.csr_matrix | None:
        if matrix is None:
            return None
        coo = matrix.tocoo()
        return sp.csr_matrix((coo.data, (active[coo.row], coo.col)), shape=(n, matrix.shape[1]))

    removed, added = scatter(report.removed), scatter(report.added)
    assert removed is not None and added is not None  # scatter keeps a matrix a matrix
    return NoiseReport(
        method=report.method,
        task=report.task,
        params=report.params,
        rules=report.rules,
        row_score=full(report.row_score, 1.0),
        is_noisy=full(report.is_noisy, True),
        action=full(report.action, DROP),
        predicted=full(report.predicted, -1),
        predicted_prob=full(report.predicted_prob, 0.0),
        labels=sp.csr_matrix(labels, dtype=np.float32),
        removed=removed,
        added=added,
        class_noise_rate=report.class_noise_rate,
        class_thresholds=report.class_thresholds,
        confusions=report.confusions,
        transition=report.transition,
        suspect_spurious=scatter(report.suspect_spurious),
        suspect_missing=scatter(report.suspect_missing),
    )


def _take(pred: TopK, rows: np.ndarray) -> TopK:
    """The TopK of ``rows``."""
    return TopK(pred.indices[rows], pred.scores[rows])


def _rows_of(options: dict[str, Any], active: np.ndarray, n: int) -> dict[str, Any]:
    """``options`` with the per-row inputs (`ROW_INPUTS`) cut to ``active``."""
    if active.size == n:
        return options
    return {
        key: np.asarray(value, dtype=object if key == "texts" else None)[active]
        if key in ROW_INPUTS and value is not None
        else value
        for key, value in options.items()
    }


def _differs(a: sp.csr_matrix, b: sp.csr_matrix) -> np.ndarray:
    """(n_samples,) bool: rows whose 0/1 labels differ between ``a`` and ``b``."""
    diff = (a.astype(bool) != b.astype(bool)).tocsr()
    return np.diff(diff.indptr) > 0


def _mean_noise_rate(report: NoiseReport, labels: sp.csr_matrix) -> float:
    """Mean of the report's class noise rates over the classes labelled in ``labels``."""
    present = np.asarray(labels.astype(bool).sum(axis=0)).ravel() > 0
    return float(report.class_noise_rate[present].mean()) if present.any() else 0.0


# --------------------------------------------------------------------------- resume


def _round_digest(
    zoo: Zoo,
    train: Dataset,
    test: Dataset | None,
    folds: np.ndarray,
    labels: sp.csr_matrix,
    weight: np.ndarray,
    method: str,
    options: dict[str, Any],
    rules: ActionRules,
) -> str:
    """SHA-256 of what a round's result depends on."""
    blob = {
        "version": _FORMAT_VERSION,
        "zoo": zoo_settings(zoo),
        "folds": array_digest(np.asarray(folds, dtype=np.int8)),
        "train": manifest_hash(train),
        "test": manifest_hash(test) if test is not None else None,
        "labels": matrix_digest(labels),
        "weight": array_digest(np.asarray(weight, dtype=np.float32)),
        "method": method,
        "options": {key: _value_digest(value) for key, value in sorted(options.items())},
        "rules": asdict(rules),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _value_digest(value: Any) -> Any:
    """An option as JSON: arrays and matrices by their digest, callables by their name."""
    if sp.issparse(value):
        return matrix_digest(value)
    if isinstance(value, np.ndarray):
        data = value.astype(str) if value.dtype == object else value
        return array_digest(np.asarray(data.shape, np.int64), data)
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    if isinstance(value, list | tuple):
        return [_value_digest(v) for v in value]
    return value if isinstance(value, str | int | float | bool | None) else repr(value)


def _finished(folder: Path, digest: str) -> tuple[RoundRow, NoiseReport] | None:
    """The row and report of a round done under ``digest`` (`webly.resume.finished`), else
    None."""
    record = finished(folder / ROUND_FILE, digest)
    if record is None:
        return None
    try:
        return RoundRow(**record["row"]), NoiseReport.load(folder / REPORT_DIR)
    except (DataError, KeyError, TypeError):
        return None
