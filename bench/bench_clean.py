"""Issue 5's detection goal: webly's noise detectors side by side with cleanlab, against the truth.

Every dataset here keeps its true labels (``clean_labels``) beside the noisy ones, so each
detector's flags are scored exactly (`webly.metrics.noise`): a row is truly noisy when its given
labels differ from its true ones; multi-label, each differing (row, label) entry is a spurious
(given, not true) or missing (true, not given) label.

Datasets (one table each; every detector reads the SAME out-of-fold predictions):

* ``digits pair 0.2`` and ``digits symmetric 0.2``: scikit-learn's real handwritten digits with
  webly's noise (`webly.data.builtin.builtin_digits`).
* ``products-like``: the multi-class catalogue benchmark (`synth_products_like`), with titles and
  class descriptions, so ``semantic`` runs too.
* ``yt8m-like``: the multi-label video-level benchmark (`synth_yt8m_like`); scored per row and per
  (row, label) entry.
* ``speed``: synthetic predictions at ``--speed-rows`` x ``--speed-classes`` (default 1M x
  1,000): Dirichlet-like rows over a few dozen candidate classes plus a small uniform floor, with
  planted pair and symmetric flips; webly reads their top ``--speed-k`` (a `TopK`), cleanlab the
  same predictions dense (float32, which it needs). Both confident learning by noise rate.

Out-of-fold predictions, multi-class: scikit-learn ``LogisticRegression`` (lbfgs, multinomial) on
the standardised stored features through ``cross_val_predict(method="predict_proba")`` over the
dataset's own 5 folds (``Dataset.folds``: stratified, all rows of a product in one fold), with
``max_iter=100, tol=1e-3`` and BLAS limited to one thread (it is several times faster so on a busy
machine). The detectors read the ``C=0.01`` model's predictions (the best on the true labels);
``ensemble_agreement`` gets three members, ``C`` = 0.01, 0.1 and 1. Multi-label: one-vs-rest
logistic regression (`webly.baselines.fit_logistic`, L-BFGS) per fold, ``l2`` = 1e-4 for the
detectors and 1e-5, 1e-4, 1e-3 for the ensemble.

Detectors: each method of `webly.clean.list_methods()` with its defaults (confident learning also
pruned by class and both; ``cluster`` in both modes on the stored features; ``semantic`` where
the dataset has texts), and cleanlab's ``find_label_issues`` (its default ``prune_by_noise_rate``,
plus ``prune_by_class`` and ``both``; multi-label the `cleanlab.multilabel_classification`
functions that ``find_label_issues(..., multi_label=True)`` delegates to, row and per class).
cleanlab is a benchmark-only dependency (``requirements-bench.txt``). Run:

    .venv/bin/python bench/bench_clean.py [--only digits,products,yt8m,speed] [--products 5000]
        [--product-classes 200] [--videos 3000] [--video-classes 100] [--speed-rows 1000000]
        [--speed-classes 1000] [--speed-k 20] [--cleanlab-jobs 1] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import gc
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cleanlab
import numpy as np
import psutil
import scipy.sparse as sp
import sklearn
import torch
from cleanlab.filter import find_label_issues
from cleanlab.multilabel_classification.filter import (
    find_label_issues as find_multilabel_issues,
)
from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import PredefinedSplit, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import webly
from webly.baselines import fit_logistic, predict_logistic
from webly.clean import NoiseVerdict, find_noisy_labels, list_methods
from webly.core import TopK
from webly.data import Dataset
from webly.data.builtin import builtin_digits
from webly.data.products import ProductsLikeConfig, synth_products_like
from webly.data.synth import YT8MLikeConfig, synth_yt8m_like
from webly.metrics.noise import DetectionScores, detection_scores, noisy_entries, noisy_rows

FOLDS = 5
MAIN_C = 0.01  # the detectors' model (multi-class); the ensemble adds the other two
ENSEMBLE_C = (0.01, 0.1, 1.0)
MAIN_L2 = 1e-4  # multi-label
ENSEMBLE_L2 = (1e-5, 1e-4, 1e-3)
CLEANLAB_FILTERS = ("prune_by_noise_rate", "prune_by_class", "both")  # the first is its default
FALLBACK_ROWS = 200_000  # speed test size when the full one does not fit in memory


@dataclass
class Case:
    """One benchmark ready to judge: given and true labels and the out-of-fold predictions."""

    name: str
    task: str  # "multiclass" | "multilabel"
    labels: sp.csr_matrix  # given, (n, C) 0/1
    clean: sp.csr_matrix  # true
    oof: np.ndarray  # (n, C) float32, the detectors' predictions
    members: list[np.ndarray]  # ensemble members' predictions
    features: np.ndarray
    texts: np.ndarray | None = None
    descriptions: tuple[str, ...] | None = None
    about: str = ""


@dataclass
class Result:
    """One detector's flags scored against the truth."""

    name: str
    rows: DetectionScores
    seconds: float
    spurious: DetectionScores | None = None  # multi-label, per (row, label) entry
    missing: DetectionScores | None = None
    entries: DetectionScores | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_cleanlab(self) -> bool:
        return self.name.startswith("cleanlab")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="digits,products,yt8m,speed")
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--product-classes", type=int, default=200)
    parser.add_argument("--videos", type=int, default=3000)
    parser.add_argument("--video-classes", type=int, default=100)
    parser.add_argument("--speed-rows", type=int, default=1_000_000)
    parser.add_argument("--speed-classes", type=int, default=1000)
    parser.add_argument("--speed-k", type=int, default=20)
    parser.add_argument("--cleanlab-jobs", type=int, default=1, help="cleanlab's n_jobs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="keep the generated data here")
    args = parser.parse_args()
    print(f"`{shlex.join(['.venv/bin/python', *sys.argv])}`\n")
    print(
        f"webly {webly.__version__}, cleanlab {cleanlab.__version__} (n_jobs="
        f"{args.cleanlab_jobs}), scikit-learn {sklearn.__version__}, numpy {np.__version__}; "
        f"{psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB\n"
    )
    torch.set_num_threads(1)
    only = set(args.only.split(","))
    started = time.perf_counter()
    verdicts: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        if "digits" in only:
            for kind in ("pair", "symmetric"):
                verdicts.append(report(digits_case(out, kind, args.seed), args))
        if "products" in only:
            verdicts.append(report(products_case(out, args), args))
        if "yt8m" in only:
            verdicts.append(report(yt8m_case(out, args), args))
    if "speed" in only:
        verdicts.append(speed(args))
    print("## Goals\n")
    for line in verdicts:
        print(f"- {line}")
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


# ----------------------------------------------------------------------------- the datasets


def digits_case(out: Path, kind: str, seed: int) -> Case:
    path = out / f"digits-{kind}"
    if not (path / "train" / "manifest.json").is_file():
        builtin_digits(path, noise=kind, rate=0.2, seed=seed, overwrite=True)
    ds = Dataset.open(path / "train")
    x = ds.features(np.arange(len(ds)), groups=("pixels",))
    return multiclass_case(f"digits {kind} 0.2", ds, x, seed)


def products_case(out: Path, args: argparse.Namespace) -> Case:
    path = out / "products-like"
    config = ProductsLikeConfig(
        n_products=args.products, n_classes=args.product_classes, seed=args.seed
    )
    if not (path / "train" / "manifest.json").is_file():
        print(synth_products_like(path, config, overwrite=True), "\n")
    ds = Dataset.open(path / "train")
    x = ds.features(np.arange(len(ds)), groups=("image",))
    case = multiclass_case("products-like", ds, x, args.seed)
    case.texts, case.descriptions = ds.texts, ds.layout.class_descriptions
    return case


def multiclass_case(name: str, ds: Dataset, x: np.ndarray, seed: int) -> Case:
    """Out-of-fold softmax probabilities of logistic regression, one model per C."""
    assert ds.clean_labels is not None
    y = ds.labels.indices.astype(np.int64)  # one label a row
    cv = PredefinedSplit(ds.folds(FOLDS, seed))
    started = time.perf_counter()
    members = [logistic_oof(x, y, ds.n_classes, cv, c) for c in ENSEMBLE_C]
    seconds = time.perf_counter() - started
    oof = members[ENSEMBLE_C.index(MAIN_C)]
    truth = ds.clean_labels.indices
    accuracy = ", ".join(
        f"C={c:g} {np.mean(m.argmax(axis=1) == truth):.3f}"
        for c, m in zip(ENSEMBLE_C, members, strict=True)
    )
    about = (
        f"{len(ds):,} rows, {ds.n_classes} classes, "
        f"{noisy_rows(ds.labels, ds.clean_labels).sum():,} noisy rows; out-of-fold logistic "
        f"regression ({FOLDS} folds x {len(ENSEMBLE_C)} C, {seconds:.0f} s), accuracy on the "
        f"true labels: {accuracy}"
    )
    return Case(name, "multiclass", ds.labels, ds.clean_labels, oof, members, x, about=about)


def logistic_oof(
    x: np.ndarray, y: np.ndarray, n_classes: int, cv: PredefinedSplit, c: float
) -> np.ndarray:
    """(n, n_classes) float32 out-of-fold predict_proba; a class no row is given gets 0."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=100, tol=1e-3))
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged at max_iter; a class absent from a fold
        probs = cross_val_predict(model, x, y, cv=cv, method="predict_proba")
    out = np.zeros((y.size, n_classes), dtype=np.float32)
    out[:, np.unique(y)] = probs  # columns of the classes present, ascending
    return out


def yt8m_case(out: Path, args: argparse.Namespace) -> Case:
    path = out / "yt8m-like"
    config = YT8MLikeConfig(
        videos=args.videos, classes=args.video_classes, test_videos=0, unlabeled_videos=0,
        seed=args.seed,
    )  # fmt: skip
    if not (path / "train" / "manifest.json").is_file():
        print(synth_yt8m_like(path, config, overwrite=True, workers=1), "\n")
    ds = Dataset.open(path / "train")
    assert ds.clean_labels is not None
    x = ds.features(np.arange(len(ds)))
    folds = ds.folds(FOLDS, args.seed)
    started = time.perf_counter()
    members = [multilabel_oof(x, ds.labels, folds, l2) for l2 in ENSEMBLE_L2]
    seconds = time.perf_counter() - started
    spurious, missing = noisy_entries(ds.labels, ds.clean_labels)
    about = (
        f"{len(ds):,} videos, {ds.n_classes} classes, {ds.labels.nnz:,} given labels; truth: "
        f"{noisy_rows(ds.labels, ds.clean_labels).sum():,} noisy rows, {spurious.nnz:,} spurious "
        f"and {missing.nnz:,} missing labels; out-of-fold one-vs-rest logistic regression "
        f"({FOLDS} folds x {len(ENSEMBLE_L2)} l2, {seconds:.0f} s)"
    )
    oof = members[ENSEMBLE_L2.index(MAIN_L2)]
    return Case("yt8m-like", "multilabel", ds.labels, ds.clean_labels, oof, members, x, about=about)


def multilabel_oof(
    x: np.ndarray, labels: sp.csr_matrix, folds: np.ndarray, l2: float
) -> np.ndarray:
    """(n, C) float32 out-of-fold sigmoid probabilities of `fit_logistic`."""
    out = np.zeros(labels.shape, dtype=np.float32)
    for fold in np.unique(folds):
        test = folds == fold
        weight, bias = fit_logistic(x[~test], labels[~test], l2=l2)
        out[test] = predict_logistic(x[test], weight, bias)
    return out


# ----------------------------------------------------------------------------- the detectors


def webly_detectors(case: Case) -> list[tuple[str, Callable[[], NoiseVerdict]]]:
    """(name, run) of every webly method variant that applies to ``case``."""
    labels, oof = case.labels, case.oof

    def run(method: str, oof_in: Any = oof, **options: Any) -> Callable[[], NoiseVerdict]:
        return lambda: find_noisy_labels(labels, oof_in, method, **options)

    variants: dict[str, list[tuple[str, Callable[[], NoiseVerdict]]]] = {
        "self_confidence": [("self_confidence", run("self_confidence"))],
        "margin": [("margin", run("margin"))],
        "disagree_low_conf": [("disagree_low_conf", run("disagree_low_conf"))],
        "ensemble_agreement": [
            (f"ensemble_agreement ({len(case.members)} members)", run("ensemble_agreement", m))
            for m in [case.members]
        ],
        "cluster": [
            ("cluster kmeans", run("cluster", features=case.features)),
            ("cluster density", run("cluster", features=case.features, mode="density")),
        ],
    }
    if case.task == "multiclass":
        variants["confident_learning"] = [
            (f"confident_learning {p}", run("confident_learning", prune=p))
            for p in ("by_noise_rate", "by_class", "both")
        ]
    else:  # one-vs-rest: pruning by class and by noise rate coincide
        variants["confident_learning"] = [("confident_learning", run("confident_learning"))]
    if case.texts is not None and case.descriptions is not None:
        variants["semantic"] = [
            ("semantic (TF-IDF)", run("semantic", texts=t, class_descriptions=case.descriptions))
            for t in [case.texts]
        ]
    out = []
    for method in list_methods():
        if method in variants:
            out += variants[method]
        elif method != "semantic":  # a method this bench does not know: its defaults
            out.append((f"{method} (defaults)", run(method)))
    return out


def judge_webly(case: Case, name: str, detect: Callable[[], NoiseVerdict]) -> Result:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        verdict = detect()
        seconds = time.perf_counter() - started
    notes = sorted({str(w.message).split("\n")[0] for w in caught})
    rows = detection_scores(verdict.is_noisy, truth_rows(case))
    result = Result(name, rows, seconds, notes=notes)
    if case.task == "multilabel":
        spurious, missing = noisy_entries(case.labels, case.clean)
        assert verdict.suspect_spurious is not None and verdict.suspect_missing is not None
        result.spurious = detection_scores(verdict.suspect_spurious, spurious)
        result.missing = detection_scores(verdict.suspect_missing, missing)
        result.entries = detection_scores(
            either(verdict.suspect_spurious, verdict.suspect_missing), either(spurious, missing)
        )
    return result


def judge_cleanlab(case: Case, jobs: int) -> list[Result]:
    truth = truth_rows(case)
    results = []
    if case.task == "multiclass":
        given = case.labels.indices.astype(np.int64)
        for how in CLEANLAB_FILTERS:
            started = time.perf_counter()
            flags = find_label_issues(given, case.oof, filter_by=how, n_jobs=jobs)
            seconds = time.perf_counter() - started
            results.append(Result(cleanlab_name(how), detection_scores(flags, truth), seconds))
        return results
    labels = sp.csr_matrix(case.labels)
    given_lists = [r.tolist() for r in np.split(labels.indices, labels.indptr[1:-1])]
    for how in CLEANLAB_FILTERS:
        started = time.perf_counter()
        flags = find_multilabel_issues(given_lists, case.oof, filter_by=how, n_jobs=jobs)
        seconds = time.perf_counter() - started
        results.append(Result(cleanlab_name(how), detection_scores(flags, truth), seconds))
    # per (row, class): each class's binary issues; a flagged given label is spurious, a flagged
    # absent one missing
    started = time.perf_counter()
    per_class = find_multilabel_issues_per_class(given_lists, case.oof, n_jobs=jobs)
    seconds = time.perf_counter() - started
    mask = np.asarray(per_class)  # (N, K) in cleanlab 2.9 (its docstring: K masks of N)
    flagged = sp.csr_matrix(mask if mask.shape == case.labels.shape else mask.T, dtype=np.float32)
    given = sp.csr_matrix(case.labels != 0, dtype=np.float32)
    spurious, missing = noisy_entries(case.labels, case.clean)
    result = Result(
        "cleanlab per class (prune_by_noise_rate)",
        detection_scores(np.asarray(flagged.sum(axis=1)).ravel() > 0, truth),
        seconds,
    )
    result.spurious = detection_scores(flagged.multiply(given), spurious)
    result.missing = detection_scores(flagged - flagged.multiply(given), missing)
    result.entries = detection_scores(flagged, either(spurious, missing))
    results.append(result)
    return results


def either(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    """Entries flagged in ``a`` or ``b``."""
    return sp.csr_matrix(a.astype(np.int8) + b.astype(np.int8))


def cleanlab_name(how: str) -> str:
    return f"cleanlab {how}" + (" (its default)" if how == CLEANLAB_FILTERS[0] else "")


def truth_rows(case: Case) -> np.ndarray:
    return noisy_rows(case.labels, case.clean)


# ----------------------------------------------------------------------------- the tables


def report(case: Case, args: argparse.Namespace) -> str:
    results = [judge_webly(case, name, run) for name, run in webly_detectors(case)]
    results += judge_cleanlab(case, args.cleanlab_jobs)
    print(f"## {case.name}\n\n{case.about}\n")
    print("| method | precision | recall | F1 | rows flagged | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        s = r.rows
        print(
            f"| {r.name} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | "
            f"{s.n_predicted:,} | {r.seconds:.2f} |"
        )
    print(f"\n(truth: {results[0].rows.n_true:,} noisy rows of {case.labels.shape[0]:,})\n")
    if case.task == "multilabel":
        print(f"### {case.name} per (row, label) entry\n")
        print(
            "| method | spurious P | spurious R | spurious F1 | missing P | missing R | "
            "missing F1 | all entries F1 | entries flagged |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            if r.spurious is None or r.missing is None or r.entries is None:
                continue
            sp_, mi = r.spurious, r.missing
            print(
                f"| {r.name} | {sp_.precision:.3f} | {sp_.recall:.3f} | {sp_.f1:.3f} | "
                f"{mi.precision:.3f} | {mi.recall:.3f} | {mi.f1:.3f} | {r.entries.f1:.3f} | "
                f"{r.entries.n_predicted:,} |"
            )
        print()
    for r in results:
        for note in r.notes:
            print(f"- {r.name} warned: {note}")
    return goal_line(case.name, results)


def goal_line(name: str, results: list[Result]) -> str:
    webly_best = max((r for r in results if not r.is_cleanlab), key=lambda r: r.rows.f1)
    cleanlab_rows = [r for r in results if r.is_cleanlab and r.name.startswith("cleanlab prune")]
    default = next(r for r in cleanlab_rows if r.name == cleanlab_name(CLEANLAB_FILTERS[0]))
    cl_best = max(
        (r for r in results if r.is_cleanlab and "per class" not in r.name),
        key=lambda r: r.rows.f1,
    )
    met = webly_best.rows.f1 >= default.rows.f1
    line = (
        f"{name}: best webly F1 {webly_best.rows.f1:.3f} ({webly_best.name}) vs cleanlab "
        f"{default.rows.f1:.3f} (prune_by_noise_rate, its default) — "
        f"{'MET' if met else 'NOT met'}"
    )
    if cl_best is not default:
        beats = "at least" if webly_best.rows.f1 >= cl_best.rows.f1 else "below"
        line += f"; {beats} cleanlab's best variant {cl_best.rows.f1:.3f} ({cl_best.name})"
    return line + " (row level)"


# ----------------------------------------------------------------------------- speed


def speed(args: argparse.Namespace) -> str:
    n, c, k = args.speed_rows, args.speed_classes, args.speed_k
    # peak: the dense float32 predictions, cleanlab's copy of them grouped by class, its
    # (n, C) bool confident mask, and temporaries
    need = n * c * 4 * 3.5  # measured: peak RSS 2.8 GB at 200k x 1,000
    available = psutil.virtual_memory().available
    note = ""
    if need > 0.8 * available and n > FALLBACK_ROWS:
        note = (
            f" (asked {n:,} rows, but dense cleanlab input needs ~{need / 2**30:.0f} GiB of the "
            f"{available / 2**30:.0f} GiB available: measured at {FALLBACK_ROWS:,})"
        )
        n = FALLBACK_ROWS
    print(f"## speed: {n:,} rows x {c:,} classes{note}\n")
    started = time.perf_counter()
    dense, topk, given, true = synthetic_predictions(n, c, k, args.seed)
    truth = given != true
    print(
        f"synthetic predictions in {time.perf_counter() - started:.0f} s: {truth.mean():.1%} "
        f"planted flips (half to the class's pair, half to any class); top-1 accuracy on the "
        f"truth {np.mean(topk.indices[:, 0] == true):.3f}; mass outside the top {k}: "
        f"{1 - topk.scores.sum(axis=1, dtype=np.float64).mean():.3f}\n"
    )
    gc.collect()
    started = time.perf_counter()
    verdict = find_noisy_labels(given, topk, "confident_learning", n_classes=c)
    webly_s = time.perf_counter() - started
    webly_scores = detection_scores(verdict.is_noisy, truth)
    del verdict
    gc.collect()
    started = time.perf_counter()
    flags = find_label_issues(given, dense, n_jobs=args.cleanlab_jobs)
    cleanlab_s = time.perf_counter() - started
    cl_scores = detection_scores(flags, truth)
    print("| method | input | precision | recall | F1 | rows flagged | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, where, s, sec in (
        ("webly confident_learning by_noise_rate", f"TopK k={k}", webly_scores, webly_s),
        ("cleanlab find_label_issues prune_by_noise_rate", "dense", cl_scores, cleanlab_s),
    ):
        print(
            f"| {name} | {where} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | "
            f"{s.n_predicted:,} | {sec:.1f} |"
        )
    ratio = cleanlab_s / webly_s
    print(f"\n(truth: {truth.sum():,} noisy rows) webly is {ratio:.1f}x faster\n")
    return (
        f"speed at {n:,} x {c:,}{note}: webly {webly_s:.1f} s (top-{k}) vs cleanlab "
        f"{cleanlab_s:.1f} s (dense, n_jobs={args.cleanlab_jobs}): {ratio:.1f}x — "
        f"{'MET' if ratio >= 5 else 'NOT met'} (goal >= 5x); F1 webly {webly_scores.f1:.3f}, "
        f"cleanlab {cl_scores.f1:.3f}"
    )


def synthetic_predictions(
    n: int, c: int, k: int, seed: int, noise: float = 0.2, candidates: int = 30
) -> tuple[np.ndarray, TopK, np.ndarray, np.ndarray]:
    """Out-of-fold-like predictions with planted label flips.

    Each row's true class is drawn from a mildly long-tailed prior; ``noise`` of the rows get a
    flipped given label (half to the class's pair ``t ^ 1``, half to any other class). Its
    probabilities are Dirichlet-like over ``candidates`` classes (the true class, its pair, the
    given one, random others), Gamma weights with shapes 6 (true; 1.5 on a hard 15% of rows),
    1 (pair), 1 (a flipped given label: the model half learned the noise) and 0.05 (others),
    mixed with a uniform floor of 0.02 over all classes so the dense rows sum to 1.

    Returns
    -------
    dense : (n, c) float32, for cleanlab
    topk : the same predictions' top ``k`` (the floor is below every candidate, so the top ``k``
        of the candidates are the top ``k`` of the dense row)
    given, true : (n,) int64
    """
    rng = np.random.default_rng(seed)
    prior = 1.0 / np.sqrt(np.arange(1, c + 1))
    true = rng.choice(c, size=n, p=prior / prior.sum())
    pair = np.where((true ^ 1) < c, true ^ 1, true - 1)
    given = true.copy()
    flip = rng.random(n) < noise
    to_pair = flip & (rng.random(n) < 0.5)
    given[to_pair] = pair[to_pair]
    anywhere = flip & ~to_pair
    given[anywhere] = (true[anywhere] + rng.integers(1, c, anywhere.sum())) % c

    floor = np.float32(0.02 / c)
    dense = np.full((n, c), floor, dtype=np.float32)
    indices = np.empty((n, k), dtype=np.int32)
    scores = np.empty((n, k), dtype=np.float32)
    block = 1 << 16
    for start in range(0, n, block):
        rows = slice(start, min(n, start + block))
        b = rows.stop - rows.start
        cls = rng.integers(0, c, size=(b, candidates))
        cls[:, 0], cls[:, 1], cls[:, 2] = true[rows], pair[rows], given[rows]
        shape = np.full((b, candidates), 0.05)
        shape[:, 0] = np.where(rng.random(b) < 0.15, 1.5, 6.0)
        shape[:, 1] = 1.0
        shape[:, 2] = np.where(flip[rows], 1.0, 0.05)
        weight = rng.gamma(shape)
        # a class listed twice (given = pair, or a random repeat) keeps one, summed weight
        local = np.repeat(np.arange(b), candidates)
        codes = local.astype(np.int64) * c + cls.ravel()
        uniq, inverse = np.unique(codes, return_inverse=True)
        summed = np.bincount(inverse, weights=weight.ravel())
        u_rows, u_cls = uniq // c, uniq % c
        total = np.bincount(u_rows, weights=summed, minlength=b)
        prob = (0.98 * summed / total[u_rows] + floor).astype(np.float32)
        dense[rows][u_rows, u_cls] = prob
        # top k per row among the (distinct) candidates: pad rows to `candidates` slots
        first = np.searchsorted(u_rows, np.arange(b))
        slot = np.arange(uniq.size) - first[u_rows]
        padded_p = np.full((b, candidates), -1.0, dtype=np.float32)
        padded_c = np.zeros((b, candidates), dtype=np.int32)
        padded_p[u_rows, slot], padded_c[u_rows, slot] = prob, u_cls
        top = np.argsort(-padded_p, axis=1, kind="stable")[:, :k]
        indices[rows] = np.take_along_axis(padded_c, top, axis=1)
        scores[rows] = np.take_along_axis(padded_p, top, axis=1)
    return dense, TopK(indices, scores), given, true


if __name__ == "__main__":
    main()
