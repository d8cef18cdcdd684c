"""``semantic``: rows whose text describes another class than the given one, with the default
TF-IDF encoder and with a user's encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import webly.clean.semantic as semantic_module
from webly.clean import NoiseReport, find_noisy_labels
from webly.errors import ConfigError, DataError, WeblyError, WeblyWarning
from webly.metrics.noise import detection_scores, noisy_entries

DESCRIPTIONS = [
    "brambling, Fringilla montifringilla: a Eurasian finch, a small songbird",
    "billiard ball: a hard ball for pool and snooker on a table",
    "Toyota Corolla: a compact car, a sedan automobile",
    "apple: an orchard fruit, red or green, from the apple tree",
    "violin: a bowed string instrument, the fiddle",
    "tulip: a spring flower of the lily family, grown in gardens",
]
KEYWORDS = [
    ["brambling", "finch", "songbird", "Fringilla", "montifringilla"],
    ["billiard", "ball", "pool", "snooker", "table"],
    ["Toyota", "Corolla", "car", "sedan", "automobile"],
    ["apple", "orchard", "fruit", "tree", "apples"],
    ["violin", "fiddle", "string", "instrument", "bowed"],
    ["tulip", "tulips", "flower", "garden", "spring"],
]
FILLER = ["high quality", "stock photo of", "my", "image", "picture", "HD", "2019", "new", "the"]


def caption(rng: np.random.Generator, classes: list[int], per: int | None = None) -> str:
    """A web-like title naming ``per`` (default 1 or 2) keywords of each class in ``classes``
    among filler words."""
    words = [
        str(w) for c in classes for w in rng.choice(KEYWORDS[c], per or rng.integers(1, 3), False)
    ]
    words += [str(w) for w in rng.choice(FILLER, rng.integers(1, 4), replace=False)]
    return " ".join(rng.permutation(words))


def planted_texts(
    n: int = 600, rate: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Given labels, true labels, texts (of the true class; 5% empty) and softmax probabilities
    of a model of the truth; ``rate`` of the labels flipped to another class."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 6, n)
    given = np.where(rng.random(n) < rate, (true + rng.integers(1, 6, n)) % 6, true)
    texts = ["" if rng.random() < 0.05 else caption(rng, [int(c)]) for c in true]
    logits = rng.normal(0, 1, (n, 6))
    logits[np.arange(n), true] += 3.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return given, true, texts, probs


def test_flags_texts_that_describe_another_class(tmp_path: Path) -> None:
    given, true, texts, probs = planted_texts()
    verdict = find_noisy_labels(
        given, probs, "semantic", texts=texts, class_descriptions=DESCRIPTIONS
    )
    noisy = given != true
    scores = detection_scores(verdict.is_noisy, noisy)
    assert scores.precision >= 0.8 and scores.recall >= 0.8, scores
    empty = np.array([not t for t in texts])
    assert (verdict.row_score[empty] == 0).all() and not verdict.is_noisy[empty].any()
    # where the texts point: flagged rows counted as their text's class
    assert verdict.confusions[0][2] >= 5
    found = verdict.confusions[0]
    assert np.sum((given == found[0]) & (true == found[1])) >= found[2] * 0.8
    truth = np.bincount(given[noisy], minlength=6) / np.bincount(given)
    assert np.abs(verdict.class_noise_rate - truth).max() < 0.1
    assert verdict.params == {"temperature": 0.05, "threshold": 0.75, "max_fit_texts": 100_000,
                              "seed": 0}  # fmt: skip
    report = NoiseReport.from_verdict(verdict)
    assert report.counts()["keep"] == verdict.n_samples - verdict.n_noisy
    loaded = NoiseReport.load(report.save(tmp_path / "noise"))
    assert loaded.method == "semantic" and loaded.params == verdict.params
    np.testing.assert_array_equal(loaded.action, report.action)


def test_blocks_and_fit_sample_give_the_same_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    given, _, texts, probs = planted_texts(n=300, seed=1)
    whole = find_noisy_labels(
        given, probs, "semantic", texts=texts, class_descriptions=DESCRIPTIONS
    )
    monkeypatch.setattr(semantic_module, "TEXT_BLOCK", 64)
    monkeypatch.setattr(semantic_module, "SIM_ENTRIES", 6 * 7)  # 7 rows of similarities a time
    blocked = find_noisy_labels(
        given, probs, "semantic", texts=texts, class_descriptions=DESCRIPTIONS
    )
    np.testing.assert_allclose(blocked.row_score, whole.row_score, rtol=1e-6)
    np.testing.assert_array_equal(blocked.is_noisy, whole.is_noisy)
    sampled = find_noisy_labels(
        given, probs, "semantic", texts=texts, class_descriptions=DESCRIPTIONS, max_fit_texts=50
    )
    assert np.mean(sampled.is_noisy == whole.is_noisy) > 0.95


class FakeEncoder:
    """Known vectors: description c -> e_c; text "t<i>" -> ``vectors[i]``; records its calls."""

    def __init__(self, descriptions: list[str], vectors: np.ndarray) -> None:
        self.lookup = {d: np.eye(vectors.shape[1])[c] for c, d in enumerate(descriptions)}
        self.lookup |= {f"t{i}": v for i, v in enumerate(vectors)}
        self.calls: list[list[str]] = []

    def __call__(self, batch: list[str]) -> np.ndarray:
        self.calls.append(batch)
        return np.array([self.lookup[s] for s in batch])


def expected_scores(vectors: np.ndarray, given: np.ndarray, temperature: float) -> np.ndarray:
    """The documented score, computed directly: classes are the unit axes."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    best, base = sims.max(axis=1), np.median(sims, axis=1)
    spread = best - base
    q = np.ones_like(spread)
    np.divide(sims[np.arange(given.size), given] - base, spread, out=q, where=spread > 0)
    return (1 - np.clip(q, 0, 1)) * (1 - np.exp(-spread / temperature))


def test_a_custom_encoder_drives_the_scores() -> None:
    names = ["cat", "dog", "car", "sky"]
    vectors = np.array(
        [[6.0, 8, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 3, 4], [1, 1, 0, 0], [1, 0, 9, 1]]
    )  # any norm: the method normalises
    encoder = FakeEncoder(names, vectors)
    given = np.array([0, 1, 1, 0, 1, 0])
    probs = np.full((6, 4), 0.25)
    texts = [f"t{i}" for i in range(6)]
    verdict = find_noisy_labels(
        given, probs, "semantic", texts=texts, class_descriptions=names, encoder=encoder
    )
    assert encoder.calls == [names, texts]
    # row 0: cat below dog but well above the median -> kept; 1: its best match; 2: no vector,
    # no evidence; 3: cat matches like an unrelated class, sky best -> flagged; 4: ties its
    # best; 5: cat at the median, car best -> flagged
    np.testing.assert_allclose(verdict.row_score, expected_scores(vectors, given, 0.05), atol=1e-6)
    np.testing.assert_array_equal(verdict.is_noisy, [False, False, False, True, False, True])
    assert verdict.row_score[0] == pytest.approx(0.4, abs=1e-3)
    assert verdict.confusions == ((0, 2, 1.0), (0, 3, 1.0))
    assert "encoder" not in verdict.params and "texts" not in verdict.params
    lenient = find_noisy_labels(
        given, probs, "semantic", texts=texts, class_descriptions=names, encoder=encoder,
        temperature=2.0,
    )  # fmt: skip
    np.testing.assert_allclose(lenient.row_score, expected_scores(vectors, given, 2.0), atol=1e-6)
    assert not lenient.is_noisy.any()  # spreads of ~0.5 are weak evidence on this scale
    # a sparse output works as well
    as_sparse = find_noisy_labels(
        given, probs, "semantic", texts=texts, class_descriptions=names,
        encoder=lambda batch: sp.csr_matrix(encoder(batch)),
    )  # fmt: skip
    np.testing.assert_allclose(as_sparse.row_score, verdict.row_score, rtol=1e-6)


def test_multilabel_judges_each_given_label() -> None:
    # texts name each true label with 2 keywords (a label named much more weakly than another
    # of the row, 1 keyword against 2, is at times taken for spurious: precision ~0.8)
    rng = np.random.default_rng(3)
    n = 400
    true = np.zeros((n, 6), dtype=bool)
    for row in range(n):
        true[row, rng.choice(6, rng.integers(1, 3), replace=False)] = True
    given = true.copy()
    extra = np.flatnonzero(rng.random(n) < 0.2)
    for row in extra:
        given[row, rng.choice(np.flatnonzero(~true[row]))] = True
    texts = [caption(rng, list(np.flatnonzero(t)), per=2) for t in true]
    probs = 1 / (1 + np.exp(-(rng.normal(0, 1, true.shape) + np.where(true, 3.0, -3.0))))
    labels = sp.csr_matrix(given, dtype=np.float32)
    verdict = find_noisy_labels(
        labels, probs, "semantic", texts=texts, class_descriptions=DESCRIPTIONS
    )
    assert verdict.task == "multilabel" and verdict.suspect_spurious is not None
    spurious, _ = noisy_entries(labels, sp.csr_matrix(true))
    scores = detection_scores(verdict.suspect_spurious, spurious)
    assert scores.precision >= 0.8 and scores.recall >= 0.8, scores
    assert verdict.suspect_missing is not None and verdict.suspect_missing.nnz == 0
    report = NoiseReport.from_verdict(verdict)
    assert report.removed.multiply(spurious).nnz == report.removed.nnz > 0


NO_TEXT = r"semantic needs a text column but {}; import the dataset with one \(webly data"


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"texts": None}, DataError, NO_TEXT.format("texts is None")),
        ({"texts": ["", None, " ", ""]}, DataError, NO_TEXT.format("all 4 texts are empty")),
        ({"texts": ["a", "b"]}, DataError, r"texts have 2 entries but labels have 4 rows"),
        ({"texts": ["a", "b", 3, "d"]}, DataError, r"texts\[2\] is 3 \(int\); pass strings"),
        ({"texts": "abcd"}, DataError, r"texts is one string; pass one text per labelled row"),
        ({"class_descriptions": None}, DataError, r"semantic needs class_descriptions but got"),
        ({"class_descriptions": ["x"]}, DataError,
         r"class_descriptions have 1 entries but labels have 2 classes"),
        ({"class_descriptions": ["", ""]}, DataError, r"all 2 class_descriptions are empty"),
        ({"encoder": "bert"}, ConfigError, r"encoder is 'bert'; pass a callable"),
        ({"encoder": lambda b: np.ones(len(b))}, ConfigError,
         r"encoder returned shape \(2,\) for 2 strings"),
        ({"encoder": lambda b: np.full((len(b), 2), np.nan)}, ConfigError,
         r"encoder returned a NaN"),
        ({"encoder": lambda b: ["x"] * len(b)}, ConfigError, r"encoder returned list, not numbers"),
        ({"temperature": 0}, ConfigError, r"temperature is 0; pass a number > 0"),
        ({"threshold": -1}, ConfigError, r"threshold is -1; pass a number in \[0.0, 1.0\]"),
        ({"max_fit_texts": 0}, ConfigError, r"max_fit_texts is 0; pass an integer >= 1"),
    ],
)  # fmt: skip
def test_bad_input(options: dict[str, Any], error: type[WeblyError], match: str) -> None:
    options = {"texts": ["red cat", "dog", "cat", ""], "class_descriptions": ["cat", "dog"],
               **options}  # fmt: skip
    labels, probs = np.array([0, 1, 0, 1]), np.tile([0.6, 0.4], (4, 1))
    with pytest.raises(error, match=match) as caught:
        find_noisy_labels(labels, probs, "semantic", **options)
    assert "\n" not in str(caught.value)


def test_a_class_without_description_warns() -> None:
    labels, probs = np.array([0, 1, 0, 1]), np.tile([0.6, 0.4], (4, 1))
    texts = ["red cat", "a dog", "cat", "cat"]
    with pytest.warns(WeblyWarning, match=r"semantic: 1 classes have an empty description"):
        verdict = find_noisy_labels(
            labels, probs, "semantic", texts=texts, class_descriptions=["cat", " "]
        )
    np.testing.assert_array_equal(verdict.is_noisy, [False, False, False, True])
    assert json.dumps(verdict.params)  # JSON-able without the data
