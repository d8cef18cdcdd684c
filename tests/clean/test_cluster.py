"""``cluster``: k-means and density per class in a feature space, on Gaussian blobs with planted
noise (each noisy row lies in its true class's blob but is given another class)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import webly.clean.cluster as cluster_module
from tests.clean.conftest import Planted, planted_multiclass
from webly.clean import NoiseReport, find_noisy_labels
from webly.errors import ConfigError, DataError, WeblyError, WeblyWarning
from webly.metrics.noise import detection_scores, noisy_entries


def blobs(classes: np.ndarray, n_blobs: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    """(n, dim) features: a tight Gaussian blob (std 1, centre at norm 10) per class id."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (n_blobs, dim))
    centres *= 10 / np.linalg.norm(centres, axis=1, keepdims=True)
    return centres[classes] + rng.normal(0, 1, (classes.size, dim))


@pytest.fixture(scope="module")
def planted() -> Planted:
    return planted_multiclass(n=1500, n_classes=8, rate=0.2, seed=2)


@pytest.fixture(scope="module")
def features(planted: Planted) -> np.ndarray:
    return blobs(np.asarray(planted.true), 8)


@pytest.mark.parametrize(
    ("mode", "options"),
    [("kmeans", {}), ("density", {}), ("kmeans", {"metric": "euclidean"})],
)
def test_flags_rows_that_lie_in_another_class_blob(
    planted: Planted, features: np.ndarray, mode: str, options: dict[str, Any]
) -> None:
    verdict = find_noisy_labels(
        planted.given, planted.probs, "cluster", features=features, mode=mode, **options
    )
    noisy = planted.given != planted.true
    scores = detection_scores(verdict.is_noisy, noisy)
    assert scores.precision >= 0.8 and scores.recall >= 0.8, scores
    assert verdict.row_score[noisy].mean() > verdict.row_score[~noisy].mean() + 0.3
    assert verdict.method == "cluster" and verdict.params["mode"] == mode
    assert "features" not in verdict.params  # data is not recorded
    # the estimated rates follow the planted ones
    truth = np.bincount(planted.given[noisy], minlength=8) / np.bincount(planted.given)
    assert np.abs(verdict.class_noise_rate - truth).max() < 0.1


def test_kmeans_score_formula_on_a_hand_made_class() -> None:
    # class 0: 40 rows near (1, 0) that the model trusts, 10 near (-1, 0) it does not; 2 clusters
    x = np.array([[1.0, 0.0]] * 40 + [[-1.0, 0.0]] * 10) + 1e-3 * np.arange(50)[:, None]
    probs = np.tile([0.9, 0.1], (50, 1))
    probs[40:] = [0.2, 0.8]
    verdict = find_noisy_labels(
        np.zeros(50, int), probs, "cluster", n_classes=2, features=x, metric="euclidean",
        clusters=2, min_class_rows=2,
    )  # fmt: skip
    # core: the 10 most probable rows (top 20%), r ~ (1, 0); median distance to r: R ~ 0.02.
    # far cluster: share 0.2, d ~ 2 -> 1 - min(1, 2 * 0.2) * R / d ~ 1; near: share 0.8, d ~ 0
    far_d = np.linalg.norm(x[40:].mean(axis=0) - x[:10].mean(axis=0))
    radius = np.median(np.linalg.norm(x - x[:10].mean(axis=0), axis=1))
    np.testing.assert_allclose(verdict.row_score[40:], 1 - 0.4 * radius / far_d, rtol=1e-5)
    near_d = np.linalg.norm(x[:40].mean(axis=0) - x[:10].mean(axis=0))
    np.testing.assert_allclose(verdict.row_score[:40], 1 - min(1, radius / near_d), atol=1e-6)
    np.testing.assert_array_equal(verdict.is_noisy, np.arange(50) >= 40)
    assert verdict.class_noise_rate[0] == pytest.approx(0.2)
    np.testing.assert_array_equal(verdict.predicted[40:], 1)
    assert verdict.confusions == ((0, 1, 10.0),)


def test_density_score_and_split(planted: Planted, features: np.ndarray) -> None:
    by_quantile = find_noisy_labels(
        planted.given, planted.probs, "cluster", features=features, mode="density", quantile=0.1
    )
    # each class flags its least dense 10%
    counts = np.bincount(planted.given)
    flagged = np.bincount(planted.given[by_quantile.is_noisy], minlength=8)
    assert np.abs(flagged - 0.1 * counts).max() <= 1
    # scores: 0 up to the class median, then 1 - median / rho
    for c in range(8):
        score = by_quantile.row_score[planted.given == c]
        assert np.mean(score == 0) >= 0.5 and score.max() < 1
    # an explicit threshold on the score instead of the quantile
    by_score = find_noisy_labels(
        planted.given, planted.probs, "cluster", features=features, mode="density",
        threshold=0.3,
    )  # fmt: skip
    np.testing.assert_array_equal(by_score.is_noisy, by_score.row_score > 0.3)
    np.testing.assert_allclose(by_score.row_score, by_quantile.row_score)
    scores = detection_scores(by_score.is_noisy, planted.given != planted.true)
    assert scores.precision >= 0.8 and scores.recall >= 0.8, scores


def test_small_classes_warn_and_are_never_flagged(planted: Planted, features: np.ndarray) -> None:
    given = np.asarray(planted.given).copy()
    given[:4] = 8  # a ninth class of 4 rows, all of them lying in other blobs
    probs = np.hstack([planted.probs * 0.99, np.full((given.size, 1), 0.01)])
    for mode in ("kmeans", "density"):
        with pytest.warns(
            WeblyWarning, match=r"cluster: 1 classes have fewer than min_class_rows=5"
        ):
            verdict = find_noisy_labels(given, probs, "cluster", features=features, mode=mode)
        assert not verdict.is_noisy[:4].any() and (verdict.row_score[:4] == 0).all()
        assert verdict.class_noise_rate[8] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeblyWarning)  # min_class_rows=4 judges it, no warning
        find_noisy_labels(given, probs, "cluster", features=features, min_class_rows=4)


def test_seeded_and_bounded(
    planted: Planted, features: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    noisy = planted.given != planted.true
    runs = [
        find_noisy_labels(planted.given, planted.probs, "cluster", features=features, seed=s)
        for s in (3, 3)
    ]
    np.testing.assert_array_equal(runs[0].row_score, runs[1].row_score)
    np.testing.assert_array_equal(runs[0].is_noisy, runs[1].is_noisy)
    # fitted on a 60-row sample of each class, all rows assigned / queried in 32-row blocks
    monkeypatch.setattr(cluster_module, "_BLOCK_ROWS", 32)
    options = {"features": features, "max_fit_rows": 60}
    for mode in ("kmeans", "density"):
        sampled = [
            find_noisy_labels(planted.given, planted.probs, "cluster", mode=mode, seed=s, **options)
            for s in (5, 5, 6)
        ]
        np.testing.assert_array_equal(sampled[0].row_score, sampled[1].row_score)
        for verdict in sampled[::2]:
            scores = detection_scores(verdict.is_noisy, noisy)
            assert scores.precision >= 0.75 and scores.recall >= 0.75, (mode, scores)


def topics_multilabel(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray]:
    """1,000 rows, 5 topics of 2 classes (a topic's rows carry 1 or 2 of its classes), one blob
    per topic; 20% of the rows get a spurious label of another topic. Returns given, true,
    sigmoid probabilities of a model of the truth, features."""
    rng = np.random.default_rng(seed)
    n, n_classes = 1000, 10
    topic = rng.integers(0, 5, n)
    true = np.zeros((n, n_classes), dtype=bool)
    pick = rng.integers(0, 3, n)  # first class, second class, or both
    true[np.arange(n), 2 * topic] = pick != 1
    true[np.arange(n), 2 * topic + 1] = pick != 0
    given = true.copy()
    spurious_rows = np.flatnonzero(rng.random(n) < 0.2)
    other = (topic[spurious_rows] + rng.integers(1, 5, spurious_rows.size)) % 5
    given[spurious_rows, 2 * other + rng.integers(0, 2, spurious_rows.size)] = True
    logits = rng.normal(0, 1, true.shape) + np.where(true, 3.0, -3.0)
    probs = 1 / (1 + np.exp(-logits))
    features = blobs(topic, 5, seed=seed + 1)
    return sp.csr_matrix(given, dtype=np.float32), sp.csr_matrix(true), probs, features


@pytest.mark.parametrize(("mode", "options"), [("kmeans", {}), ("density", {"threshold": 0.5})])
def test_multilabel_entries_are_judged_per_class(
    mode: str, options: dict[str, Any], tmp_path: Path
) -> None:
    # (density's default quantile split flags 20% of each class; ~14% of its labels are planted)
    given, true, probs, features = topics_multilabel()
    verdict = find_noisy_labels(given, probs, "cluster", features=features, mode=mode, **options)
    assert verdict.task == "multilabel"
    spurious, _ = noisy_entries(given, true)
    assert verdict.suspect_spurious is not None and verdict.suspect_missing is not None
    scores = detection_scores(verdict.suspect_spurious, spurious)
    assert scores.precision >= 0.8 and scores.recall >= 0.8, scores
    assert verdict.suspect_missing.nnz == 0
    # a row scores its most suspect entry; rows with a spurious label are the flagged rows
    row_has = np.diff(sp.csr_matrix(spurious).indptr) > 0
    row_scores = detection_scores(verdict.is_noisy, row_has)
    assert row_scores.precision >= 0.8 and row_scores.recall >= 0.8, row_scores
    # the report removes the spurious labels the model also doubts
    report = NoiseReport.from_verdict(verdict)
    removed = report.removed.multiply(spurious)
    assert removed.nnz >= 0.8 * report.removed.nnz > 0
    loaded = NoiseReport.load(report.save(tmp_path / "noise"))
    assert loaded.params == verdict.params and loaded.method == "cluster"
    assert json.loads((tmp_path / "noise" / "manifest.json").read_text())["params"]["mode"] == mode


def test_report_from_a_multiclass_verdict(
    planted: Planted, features: np.ndarray, tmp_path: Path
) -> None:
    verdict = find_noisy_labels(planted.given, planted.probs, "cluster", features=features)
    report = NoiseReport.from_verdict(verdict)
    assert report.counts()["keep"] == verdict.n_samples - verdict.n_noisy
    relabelled = report.action == 3  # relabel: to the confident prediction, mostly the truth
    assert relabelled.sum() > 0
    assert np.mean(report.cleaned_labels()[relabelled].indices == planted.true[relabelled]) > 0.95
    loaded = NoiseReport.load(report.save(tmp_path / "noise"))
    np.testing.assert_array_equal(loaded.action, report.action)
    assert loaded.params == {
        "mode": "kmeans", "clusters": None, "top_fraction": 0.2, "neighbors": 10,
        "quantile": 0.2, "threshold": None, "metric": "cosine", "min_class_rows": 5,
        "max_fit_rows": 20_000, "seed": 0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"features": None}, DataError, r"cluster needs features but got none; pass features="),
        ({"features": np.zeros((10, 2))}, DataError, r"features have 10 rows but labels have 4"),
        ({"features": np.zeros(4)}, DataError, r"features have shape \(4,\) and dtype float64"),
        ({"features": np.array([[0.0], [np.nan], [1], [2]])}, DataError,
         r"features hold nan at row 1; pass finite features"),
        ({"mode": "dbscan"}, ConfigError, r"mode is 'dbscan'; pass one of kmeans, density"),
        ({"metric": "l1"}, ConfigError, r"metric is 'l1'; pass one of cosine, euclidean"),
        ({"clusters": 0}, ConfigError, r"clusters is 0; pass an integer >= 1 or None"),
        ({"top_fraction": 0}, ConfigError, r"top_fraction is 0; pass a number in \(0, 1\]"),
        ({"quantile": 1.0}, ConfigError, r"quantile is 1.0; pass a number in \[0.0, 1.0\)"),
        ({"threshold": 2}, ConfigError, r"threshold is 2; pass a number in \[0.0, 1.0\]"),
        ({"min_class_rows": 1}, ConfigError, r"min_class_rows is 1; pass an integer >= 2"),
        ({"neighbors": 2.5}, ConfigError, r"neighbors is 2.5; pass an integer >= 1"),
    ],
)  # fmt: skip
def test_bad_input(options: dict[str, Any], error: type[WeblyError], match: str) -> None:
    options = {"features": np.ones((4, 2)), **options}
    labels, probs = np.array([0, 1, 0, 1]), np.tile([0.6, 0.4], (4, 1))
    with pytest.raises(error, match=match) as caught:
        find_noisy_labels(labels, probs, "cluster", **options)
    assert "\n" not in str(caught.value)
