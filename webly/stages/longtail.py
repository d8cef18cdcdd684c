"""The ``longtail`` stage: the final distilled network's classifier re-balanced for the long
tail (`webly.longtail`; the AliProducts solution, Kang et al. 2020), chosen on held-out rows of
the training split, never on the test split.

- ``tau_norm``: the classifier as trained and its tau-normalized copies (each of
  ``longtail.taus``) are scored by ``longtail.metric``. Out of fold when the distill stage
  trained students of the final network's model: each student's fold models score the rows they
  did not train on (`tau_sweep_folds`), the candidates are ranked by their mean over those
  students and the best is applied to the final network (the classifier as trained wins ties,
  and then it is left unchanged). Without such students, the final network itself scores the
  rows of fold 0 of the run's folds; it trained on them (on every row), so its classifier as
  trained looks better there than it is and is not a candidate: the best tau is applied (a tau
  of 0 with ``bias: keep`` is the classifier unchanged, if you want that choice).
- ``crt``: the final network's classifier re-trained on the rows outside fold 0, the rest of
  the network frozen, with class-balanced (or square-root) sampling and its best epoch chosen on
  fold 0 (`retrain_classifier`). The trained classifier's figure on fold 0 is recorded beside
  it, not compared (it trained on those rows). Starts over when the stage runs again.

The artifact::

    RUN/longtail/final/model/          the adjusted network (save_network), written atomically
    RUN/longtail/final/predictions/    its test predictions (a store with a test split)

recorded in the outputs as ``model`` and ``final`` (id -> store), the same keys as the distill
stage's, so `webly.compress.run.run_final` (compress, export) deploys it in place of
distill's. The summary holds the method, the ``chosen`` candidate and its ``tau`` (None: the
classifier as trained, or cRT), the ``sweep`` (each candidate's held-out figure and whether it
could be chosen) and ``bands``: head / medium / tail figures
(`band_report`) of the final network before and after, on the scoring split
(`webly.stages.context.scoring`) when that is the test split, else None.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from webly.config import LongtailConfig, Recipe
from webly.data.store import Dataset, atomic_output
from webly.longtail import (
    BandReport,
    apply_tau,
    band_report,
    lower_is_better,
    resolve_metric,
    retrain_classifier,
    score_network,
    tau_sweep,
    tau_sweep_folds,
)
from webly.metrics.evaluate import loss_sum, task_metric
from webly.metrics.ranking import TopK, select_top_k
from webly.models.network import Network, load_network, save_network
from webly.predictions import Predictions, PredictionWriter
from webly.rundir import DistillRecord, FoldsRecord, LongtailRecord
from webly.stages.context import StageContext, StageResult, scoring, splits
from webly.train.loop import GAP_K, TrainConfig, iter_scores

FINAL, MODEL, STORE = "final", "model", "predictions"
CRT_WORK = "crt-work"
HELD_OUT_FOLD = 0
_KEPT_SETTINGS = ("max_frames", "frame_sampling", "cosine_threshold", "eval_batch_size", "workers")
"""The final network's training settings cRT keeps: frame sampling and the loader's."""


def longtail_config(recipe: Recipe) -> dict[str, Any]:
    section = recipe.longtail
    if section is None:
        return {"longtail": None}
    config: dict[str, Any] = {"longtail": section.model_dump(mode="json")}
    if section.method == "crt":  # the classifier's initialisation and training order
        config["seed"] = recipe.seed
    return config


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


def make_longtail(ctx: StageContext) -> StageResult:
    """Re-balance the final network's classifier; write it and its test predictions."""
    section = ctx.recipe.longtail
    if section is None:
        return StageResult(key="not in the recipe")
    distill = ctx.input(DistillRecord)
    if distill is None or distill.model is None:
        message = "longtail: the distill stage made no final model to adjust; see its errors"
        return StageResult(key=message, errors=(message,))
    started = time.perf_counter()
    ((final_id, store_path),) = distill.final.items()
    original = distill.model
    train, test = splits(ctx)
    assert test is not None  # distill.final trains only with a test split to predict
    folds = np.load(ctx.need(FoldsRecord).folds)
    network = load_network(original)
    if section.method == "tau_norm":
        choice = _choose_tau(ctx, section, network, train, folds)
        if choice.tau is not None:
            apply_tau(network, choice.tau, section.bias)
    else:
        choice = _retrain(ctx, section, network, train, folds)
    folder = ctx.folder / FINAL
    with atomic_output(folder / MODEL, overwrite=True) as tmp:
        save_network(network, tmp)
    scored = scoring(ctx)
    labels = scored.labels if scored.split == "test" else None
    source = Predictions.open(store_path)
    trained_seconds = float(source.fold_metrics.get("full", {}).get("seconds", 0.0))
    after, figures = _predict(
        network, test, labels, folder / STORE, ctx.recipe.zoo.k,
        model={**source.model, "longtail": {"method": section.method, "chosen": choice.chosen}},
        seconds=trained_seconds + time.perf_counter() - started,
    )  # fmt: skip
    bands = None
    if labels is not None:
        before = _top(load_network(original), test)
        bands = {
            name: _bands(
                band_report(
                    top, labels, train.labels, task=test.task, head=section.head, tail=section.tail
                )
            )
            for name, top in (("before", before), ("after", after))
        }
    return StageResult(
        key=_key(choice, bands),
        record=LongtailRecord(
            model=folder / MODEL,
            final={final_id: folder / STORE},
            method=section.method,
            final_id=final_id,
            chosen=choice.chosen,
            tau=choice.tau,
            metric=choice.metric,
            chosen_on=choice.chosen_on,
            sweep=choice.sweep,
            bands=bands,
            bands_on=f"{scored.split} split, {scored.which} labels" if bands else None,
            test=figures,
        ),
    )


def _choose_tau(
    ctx: StageContext, section: LongtailConfig, network: Network, train: Dataset, folds: np.ndarray
) -> _Choice:
    """The best of the classifier as trained and each tau, out of fold over the students of
    the final's model when there are any, else the best tau on fold `HELD_OUT_FOLD` (see the
    module notes)."""
    options: dict[str, Any] = {
        "taus": section.taus, "metric": section.metric, "bias": section.bias,
        "head": section.head, "tail": section.tail,
    }  # fmt: skip
    students = _students_of(ctx, network.config["name"])
    if students:
        sweeps = [
            tau_sweep_folds(
                [load_network(folder / f"fold-{f}" / MODEL) for f in range(n_folds)],
                train,
                folds,
                **options,
            )
            for folder, n_folds in students.values()
        ]
        where = f"out of fold: student(s) {', '.join(students)}, {len(train):,} rows"
    else:
        held_out = train.subset(np.flatnonzero(folds == HELD_OUT_FOLD))
        sweeps = [tau_sweep(network, held_out, train.labels, **options)]
        where = (
            f"fold {HELD_OUT_FOLD} of the training rows ({len(held_out):,}), seen by the final "
            "network in training"
        )
    metric = sweeps[0].metric
    sweep = [_candidate("as trained", None, [s.baseline.metric for s in sweeps], bool(students))]
    for i, value in enumerate(section.taus):
        sweep.append(_candidate(f"tau {value:g}", value, [s.rows[i].metric for s in sweeps]))
    chosen = _best(sweep, metric)
    return _Choice(chosen["candidate"], chosen["tau"], metric, sweep, where)


def _students_of(ctx: StageContext, name: str) -> dict[str, tuple[Path, int]]:
    """The distill stage's students of model ``name``: id -> (prediction store folder's parent,
    number of fold models)."""
    found = {}
    for student, path in ctx.need(DistillRecord).students.items():
        store = Predictions.open(path)
        if store.model["name"] == name:
            found[student] = (path.parent, int(store.model["folds"]))
    return found


def _retrain(
    ctx: StageContext,
    section: LongtailConfig,
    network: Network,
    train: Dataset,
    folds: np.ndarray,
) -> _Choice:
    """cRT of ``network``'s classifier on the rows outside fold `HELD_OUT_FOLD`, its best epoch
    chosen on that fold."""
    held = np.flatnonzero(folds == HELD_OUT_FOLD)
    valid = train.subset(held)
    metric = resolve_metric(section.metric, train.task)
    trained = score_network(network, valid, metric)
    final = ctx.recipe.distill.final if ctx.recipe.distill is not None else None
    settings = {**ctx.recipe.zoo.train, **((final or {}).get("train") or {})}
    crt = section.crt
    config = TrainConfig(
        epochs=crt.epochs, batch_size=crt.batch_size, lr=crt.lr, sampler=crt.sampler,
        seed=ctx.recipe.seed, **{k: v for k, v in settings.items() if k in _KEPT_SETTINGS},
    )  # fmt: skip
    work = ctx.folder / CRT_WORK
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
