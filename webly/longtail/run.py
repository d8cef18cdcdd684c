"""`run_longtail`: a recipe's ``longtail`` section run, the one call behind the pipeline's
``longtail`` stage and ``webly longtail``: the final distilled network's classifier re-balanced
for the long tail (`webly.longtail`; the AliProducts solution, Kang et al. 2020), chosen on
held-out rows of the training split, never on the test split.

- ``tau_norm``: the classifier as trained and its tau-normalized copies (each of ``taus``) are
  scored by ``metric``. Out of fold when the distillation trained students of the final
  network's model: each student's fold models score the rows they did not train on
  (`tau_sweep_folds`), the candidates are ranked by their mean over those students and the best
  is applied to the final network (the classifier as trained wins ties, and then it is left
  unchanged). Without such students, the final network itself scores the rows of fold 0 of the
  zoo's folds; it trained on them (on every row), so its classifier as trained looks better
  there than it is and is not a candidate: the best tau is applied (a tau of 0 with ``bias:
  keep`` is the classifier unchanged, if you want that choice).
- ``crt``: the final network's classifier re-trained on the rows outside fold 0, the rest of
  the network frozen, with class-balanced (or square-root) sampling and its best epoch chosen on
  fold 0 (`retrain_classifier`), seeded and loading rows as the final network was trained. The
  trained classifier's figure on fold 0 is recorded beside it, not compared (it trained on
  those rows). Starts over when it runs again.

The output::

    OUT/final/model/          the adjusted network (save_network), written atomically
    OUT/final/predictions/    its test predictions (a store with a test split)

The summary holds the method, the ``chosen`` candidate and its ``tau`` (None: the classifier as
trained, or cRT), the ``sweep`` (each candidate's held-out figure and whether it could be
chosen) and ``bands``: head / medium / tail figures (`band_report`) of the final network before
and after on the test split, when it has labels (its clean ones when it has them), else None.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from webly._fs import atomic_output
from webly.config import LongtailConfig
from webly.core import GAP_K, TopK, select_top_k
from webly.data.store import Dataset
from webly.longtail.bands import BandReport, band_report
from webly.longtail.crt import retrain_classifier
from webly.longtail.taunorm import (
    apply_tau,
    lower_is_better,
    resolve_metric,
    score_network,
    tau_sweep,
    tau_sweep_folds,
)
from webly.metrics.evaluate import loss_sum, task_metric
from webly.models.network import Network, load_network, save_network
from webly.predictions import Predictions, PredictionWriter
from webly.train.loop import TrainConfig, iter_scores

FINAL, MODEL, STORE = "final", "model", "predictions"
CRT_WORK = "crt-work"
HELD_OUT_FOLD = 0
_KEPT_SETTINGS = ("max_frames", "frame_sampling", "cosine_threshold", "eval_batch_size")
"""The final network's training settings cRT keeps: frame sampling and the loader's."""


@dataclass(frozen=True)
class LongtailInputs:
    """What a longtail run reads: the final network (``final``: its id, ``model``: the saved
    network, ``store``: its prediction store), the ``train`` and ``test`` stores, the zoo's
    ``folds`` of the training rows and the distillation's ``students`` (id -> prediction
    store; those of the final network's model are its out-of-fold judges)."""

    final: str
    model: Path
    store: Path
    train: Dataset
    test: Dataset
    folds: np.ndarray
    students: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class LongtailResult:
    """What a run made: the adjusted network (``model``), its test predictions (``final``: the
    final network's id -> store), the JSON ``summary`` and the run in one line (``key``)."""

    model: Path
    final: dict[str, Path]
    summary: dict[str, Any]
    key: str


def run_longtail(
    section: LongtailConfig, inputs: LongtailInputs, out: str | Path
) -> LongtailResult:
    """Re-balance the final network's classifier as ``section`` says; write it and its test
    predictions to ``out`` (see the module notes)."""
    out = Path(out)
    started = time.perf_counter()
    train, test = inputs.train, inputs.test
    source = Predictions.open(inputs.store)
    network = load_network(inputs.model)
    if section.method == "tau_norm":
        choice = _choose_tau(section, network, train, inputs.folds, inputs.students)
        if choice.tau is not None:
            apply_tau(network, choice.tau, section.bias)
    else:
        choice = _retrain(section, network, train, inputs.folds, source.model, out / CRT_WORK)
    folder = out / FINAL
    with atomic_output(folder / MODEL, overwrite=True) as tmp:
        save_network(network, tmp)
    scored = scored_labels(test)
    labels = scored[0] if scored is not None else None
    trained_seconds = float(source.fold_metrics.get("full", {}).get("seconds", 0.0))
    after, figures = _predict(
        network, test, labels, folder / STORE, int(source.manifest["k"]),
        model={**source.model, "longtail": {"method": section.method, "chosen": choice.chosen}},
        seconds=trained_seconds + time.perf_counter() - started,
    )  # fmt: skip
    bands = None
    if labels is not None:
        before = _top(load_network(inputs.model), test)
        bands = {
            name: _bands(
                band_report(
                    top, labels, train.labels, task=test.task, head=section.head, tail=section.tail
                )
            )
            for name, top in (("before", before), ("after", after))
        }
    return LongtailResult(
        model=folder / MODEL,
        final={inputs.final: folder / STORE},
        summary={
            "method": section.method,
            "final": inputs.final,
            "chosen": choice.chosen,
            "tau": choice.tau,
            "metric": choice.metric,
            "chosen_on": choice.chosen_on,
            "sweep": choice.sweep,
            "bands": bands,
            "bands_on": f"test split, {scored[1]} labels" if scored and bands else None,
            "test": figures,
        },
        key=_key(choice, bands),
    )


def scored_labels(test: Dataset) -> tuple[sp.csr_matrix, str] | None:
    """The labels ``test``'s figures are measured on and which they are: its clean labels when
    it has them, else its given ones; None when it has no labels."""
    if not test.labels.nnz:
        return None
    clean = test.clean_labels
    return (clean, "clean") if clean is not None else (test.labels, "given")


@dataclass(frozen=True)
class _Choice:
    """What the held-out rows chose: the candidate's name, its tau (None: none applied), the
    metric, every candidate (``candidate``, ``tau``, ``metric``, ``eligible``) and where they
    were measured."""

    chosen: str
    tau: float | None
    metric: str
    sweep: list[dict[str, Any]]
    chosen_on: str


def _choose_tau(
    section: LongtailConfig,
    network: Network,
    train: Dataset,
    folds: np.ndarray,
    students: Mapping[str, Path],
) -> _Choice:
    """The best of the classifier as trained and each tau, out of fold over the students of
    the final's model when there are any, else the best tau on fold `HELD_OUT_FOLD` (see the
    module notes)."""
    options: dict[str, Any] = {
        "taus": section.taus, "metric": section.metric, "bias": section.bias,
        "head": section.head, "tail": section.tail,
    }  # fmt: skip
    judges = _students_of(students, network.config["name"])
    if judges:
        sweeps = [
            tau_sweep_folds(
                [load_network(folder / f"fold-{f}" / MODEL) for f in range(n_folds)],
                train,
                folds,
                **options,
            )
            for folder, n_folds in judges.values()
        ]
        where = f"out of fold: student(s) {', '.join(judges)}, {len(train):,} rows"
    else:
        held_out = train.subset(np.flatnonzero(folds == HELD_OUT_FOLD))
        sweeps = [tau_sweep(network, held_out, train.labels, **options)]
        where = (
            f"fold {HELD_OUT_FOLD} of the training rows ({len(held_out):,}), seen by the final "
            "network in training"
        )
    metric = sweeps[0].metric
    sweep = [_candidate("as trained", None, [s.baseline.metric for s in sweeps], bool(judges))]
    for i, value in enumerate(section.taus):
        sweep.append(_candidate(f"tau {value:g}", value, [s.rows[i].metric for s in sweeps]))
    chosen = _best(sweep, metric)
    return _Choice(chosen["candidate"], chosen["tau"], metric, sweep, where)


def _students_of(students: Mapping[str, Path], name: str) -> dict[str, tuple[Path, int]]:
    """The ``students`` (id -> prediction store) of model ``name``: id -> (the store's folder's
    parent, number of fold models)."""
    found = {}
    for student, path in students.items():
        store = Predictions.open(path)
        if store.model["name"] == name:
            found[student] = (Path(path).parent, int(store.model["folds"]))
    return found


def _retrain(
    section: LongtailConfig,
    network: Network,
    train: Dataset,
    folds: np.ndarray,
    trained_as: Mapping[str, Any],
    work: Path,
) -> _Choice:
    """cRT of ``network``'s classifier on the rows outside fold `HELD_OUT_FOLD`, its best epoch
    chosen on that fold; seeded and loading rows as its store's record ``trained_as`` says it
    was trained; checkpoints in ``work``, removed after."""
    held = np.flatnonzero(folds == HELD_OUT_FOLD)
    valid = train.subset(held)
    metric = resolve_metric(section.metric, train.task)
    trained = score_network(network, valid, metric)
    settings = trained_as["config"]["train"]
    crt = section.crt
    config = TrainConfig(
        epochs=crt.epochs, batch_size=crt.batch_size, lr=crt.lr, sampler=crt.sampler,
        seed=int(trained_as["seed"]), **{k: settings[k] for k in _KEPT_SETTINGS if k in settings},
    )  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)  # a checkpoint of another final network
    result = retrain_classifier(
        network, train.subset(np.flatnonzero(folds != HELD_OUT_FOLD)), valid, config, None, work
    )
    shutil.rmtree(work, ignore_errors=True)
    retrained = _candidate("crt", None, [score_network(network, valid, metric)])
    sweep = [_candidate("as trained", None, [trained], eligible=False), retrained]
    retrained["best_epoch"] = result.best_epoch
    where = f"fold {HELD_OUT_FOLD} of the training rows ({held.size:,}), outside cRT's training"
    return _Choice("crt", None, metric, sweep, where)


def _candidate(
    name: str, tau: float | None, figures: list[float], eligible: bool = True
) -> dict[str, Any]:
    """A sweep entry: the mean of ``figures`` (one per sweep) and whether it may be chosen."""
    return {"candidate": name, "tau": tau, "metric": float(np.mean(figures)), "eligible": eligible}


def _best(sweep: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The eligible entry with the best figure; the first of equals."""
    sign = -1.0 if lower_is_better(metric) else 1.0
    eligible = [entry for entry in sweep if entry["eligible"]]
    return max(eligible, key=lambda e: (sign * e["metric"], -eligible.index(e)))


def _predict(
    network: Network,
    test: Dataset,
    labels: sp.csr_matrix | None,
    out: Path,
    k: int,
    model: dict[str, Any],
    seconds: float,
) -> tuple[TopK, dict[str, float | None]]:
    """Write ``network``'s test predictions to a store at ``out``; return each row's top
    `GAP_K` and the split's metric and loss on ``labels`` (None for both without labels)."""
    groups = list(network.config["input_dims"])
    indices, scores, loss = [], [], 0.0
    with PredictionWriter(
        out, n_rows={"test": len(test)}, n_classes=test.n_classes, model=model, k=k,
        overwrite=True,
    ) as writer:  # fmt: skip
        for rows, probs in iter_scores(network, test, groups):
            writer.write("test", rows, probs)
            top = select_top_k(probs, min(GAP_K, test.n_classes), sort=True)
            indices.append(top[0])
            scores.append(top[1])
            if labels is not None:
                loss += loss_sum(probs, labels[rows], test.task)
        top_k = TopK(np.concatenate(indices), np.concatenate(scores))
        figures: dict[str, float | None] = {"metric": None, "loss": None}
        if labels is not None:
            figures = {
                "metric": task_metric(top_k, labels, test.task, GAP_K),
                "loss": loss / len(test),
            }
        writer.commit({"full": {"seconds": seconds}, "test": figures})
    return top_k, figures


def _top(network: Network, ds: Dataset) -> TopK:
    """Each row's `GAP_K` most probable classes under ``network``."""
    groups = list(network.config["input_dims"])
    blocks = [
        select_top_k(probs, min(GAP_K, ds.n_classes), sort=True)
        for _, probs in iter_scores(network, ds, groups)
    ]
    return TopK(np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks]))


def _bands(report: BandReport) -> dict[str, Any]:
    """A `BandReport` as JSON: NaN (a band without scored classes) as None."""
    raw = asdict(report)
    raw["values"] = {b: None if math.isnan(v) else v for b, v in report.values.items()}
    return raw


def _key(choice: _Choice, bands: dict[str, Any] | None) -> str:
    """The stage's headline: what was chosen, on what, and the tail before and after."""
    figures = {c["candidate"]: c["metric"] for c in choice.sweep}
    key = (
        f"{choice.chosen} ({choice.metric} {figures['as trained']:.4f} as trained, "
        f"{figures[choice.chosen]:.4f} chosen, {choice.chosen_on.split(',')[0]})"
    )
    if bands is not None:
        before, after = bands["before"]["values"]["tail"], bands["after"]["values"]["tail"]
        if before is not None and after is not None:
            key += f"; test tail {bands['after']['metric']} {before:.4f} -> {after:.4f}"
    return key
