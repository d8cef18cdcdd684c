"""``semantic``: does a row's text describe its given class? (WebVision's meta-information match)

Each row's ``texts`` entry (a title, description or tags) and each class's entry of
``class_descriptions`` (its name or a description) are encoded as vectors and compared by cosine
similarity ``sim(i, c)``. Row ``i``'s best match ``best_i = max_j sim(i, j)`` is measured against
its typical, unrelated class ``base_i = median_j sim(i, j)``; a given label ``c`` scores by how
far below the best match it lies on that scale, times how clearly the best match stands out::

    spread = best_i - base_i
    q      = clip((sim(i, c) - base_i) / spread, 0, 1)        (q = 1 when spread = 0)
    score  = (1 - q) * (1 - exp(-spread / temperature))

and is flagged when ``score > threshold`` (defaults 0.05 and 0.75: a label whose similarity lies
in the lower quarter between the row's typical class and its best match, when the best match
stands out by well over 0.05). A label matching like an unrelated class scores near 1, the best
match 0; a row whose text matches no class (empty text, or no shared term) has spread 0 and is
never flagged. Measuring from the median, not from 0, keeps the score meaningful for encoders
whose unrelated texts still have a cosine well above 0 (sentence embeddings). The out-of-fold
predictions do not enter the score; they only give the verdict's predicted class.

Multi-class: a flagged row is estimated to be of its best-matching class (the transition and
confusions say where the texts point). Multi-label: each given label is judged on its own, so a
text that describes two of its labels, one more strongly, keeps both (q well above 0), and a
flagged label is a suspect spurious one (no missing labels are proposed); a row scores its
largest entry score.

The encoder is pluggable: ``encoder=None`` uses TF-IDF (scikit-learn) over word 1-2-grams and
character 3-5-grams within words, each L2-normalised and concatenated (so ``sim`` is the mean of
the word and character cosines), fitted on the descriptions and up to ``max_fit_texts`` texts (a
random sample from ``seed`` beyond that). Any callable ``encoder(list[str]) -> (m, d)`` float
array (dense or scipy sparse), e.g. a sentence-embedding model, replaces it; its vectors are
L2-normalised here. Texts are encoded ``TEXT_BLOCK`` at a time and compared with all
descriptions in blocks of at most ``SIM_ENTRIES`` similarities; only each row's best match and
its given labels' similarities are kept, never an (n_samples, n_classes) matrix.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from webly.clean._registry import check_range, register_method
from webly.clean.cluster import no_entries
from webly.clean.problem import NoiseProblem
from webly.clean.probs import label_hits, label_probs, label_rows, sorted_row_max
from webly.clean.verdict import Detection, multiclass_detection, multilabel_detection
from webly.errors import ConfigError, DataError, WeblyWarning

Vectors: TypeAlias = np.ndarray | sp.csr_matrix
Encoder: TypeAlias = Callable[[list[str]], Any]
TEXT_BLOCK = 4096  # texts encoded at a time
SIM_ENTRIES = 1 << 22  # (rows, classes) similarities computed at a time
_NEEDS_TEXT = (
    "semantic needs a text column but {what}; import the dataset with one (webly data "
    "import-table ... --text COLUMN) and pass texts=Dataset.texts"
)


@register_method("semantic", inputs=("texts", "class_descriptions", "encoder"))
def semantic(
    problem: NoiseProblem,
    *,
    texts: Sequence[str | None] | np.ndarray | None = None,
    class_descriptions: Sequence[str] | np.ndarray | None = None,
    encoder: Encoder | None = None,
    temperature: float = 0.05,
    threshold: float = 0.75,
    max_fit_texts: int = 100_000,
    seed: int = 0,
) -> Detection:
    """Flag labels whose class description matches the row's text clearly worse than another
    class's does; see the module docstring.

    Parameters
    ----------
    problem : NoiseProblem
    texts : (n_samples,) str, or None
        Each row's text in the labels' row order; None or "" where a row has none.
    class_descriptions : (n_classes,) str
        Each class's name or description, in class order.
    encoder : callable, optional
        ``encoder(list of m str) -> (m, d)`` float array or sparse matrix; TF-IDF when None.
    temperature : float > 0
        Spread (best match minus median similarity) at which the evidence factor is
        ``1 - 1/e``.
    threshold : float in [0, 1]
        Labels scoring above it are flagged.
    max_fit_texts : int
        TF-IDF: texts the vocabulary and IDF are fitted on at most (>= 1).
    seed : int
        TF-IDF: seeds the sample of texts it is fitted on.
    """
    if not (isinstance(temperature, int | float) and not isinstance(temperature, bool)) or not (
        temperature > 0 and math.isfinite(temperature)
    ):
        raise ConfigError(f"temperature is {temperature!r}; pass a number > 0")
    check_range("threshold", threshold, 0.0, 1.0)
    for name, value, low in (("max_fit_texts", max_fit_texts, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} is {value!r}; pass an integer >= {low}")
    if encoder is not None and not callable(encoder):
        raise ConfigError(
            f"encoder is {encoder!r}; pass a callable mapping a list of m strings to an (m, d) "
            "float array, or None for TF-IDF"
        )
    rows_text = check_texts(texts, problem.n_samples)
    descriptions = check_descriptions(class_descriptions, problem.n_classes)
    if encoder is None:
        encode = tfidf_encoder(descriptions, rows_text, max_fit_texts, seed)
    else:
        encode = _checked(encoder)
    best, base, best_class, given_sim = match_texts(encode, rows_text, descriptions, problem.labels)
    labels = problem.labels
    rows_of_entry = label_rows(labels)
    spread = (best - base)[rows_of_entry]  # (nnz,) >= 0
    position = np.divide(
        given_sim - base[rows_of_entry], spread, out=np.ones_like(spread), where=spread > 0
    )
    score = (1 - np.clip(position, 0, 1)) * -np.expm1(-spread / temperature)
    flagged = score > threshold
    if not problem.task.multilabel:  # one entry a row, in row order
        true = np.where(flagged, best_class, labels.indices)
        pairs = sp.csr_matrix(
            (np.ones(true.size), (labels.indices, true)), shape=(problem.n_classes,) * 2
        )
        return multiclass_detection(problem, score, flagged, pairs=pairs)
    p_label = label_probs(problem.probs, labels, label_hits(problem.probs, labels))
    row_score = sorted_row_max(rows_of_entry, score, problem.n_samples)
    return multilabel_detection(problem, p_label, flagged, no_entries(), row_score)


def match_texts(
    encode: Callable[[list[str]], Vectors],
    texts: list[str],
    descriptions: list[str],
    labels: sp.csr_matrix,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each row's best and median similarity, its best-matching class and its given labels'
    similarities, in blocks.

    Parameters
    ----------
    encode : callable
        ``encode(list of m str) -> (m, d)`` unit-norm rows (dense or CSR); the same ``d`` for
        texts and descriptions.
    texts : (n_samples,) str
    descriptions : (n_classes,) str
    labels : (n_samples, n_classes) canonical 0/1 csr_matrix

    Returns
    -------
    best : (n_samples,) float64
        Largest similarity of each row's text to any description.
    base : (n_samples,) float64
        Median similarity of each row's text to the descriptions.
    best_class : (n_samples,) int32
        The class it belongs to (the first of ties).
    given_sim : (nnz,) float64
        Similarity of each given label (CSR order).
    """
    n_samples, n_classes = labels.shape
    classes = encode(descriptions)  # (n_classes, d)
    best = np.zeros(n_samples, dtype=np.float64)
    base = np.zeros(n_samples, dtype=np.float64)
    best_class = np.zeros(n_samples, dtype=np.int32)
    given_sim = np.zeros(labels.nnz, dtype=np.float64)
    step = max(1, SIM_ENTRIES // n_classes)
    for start in range(0, n_samples, TEXT_BLOCK):
        stop = min(start + TEXT_BLOCK, n_samples)
        vectors = encode(texts[start:stop])
        if vectors.shape[1] != classes.shape[1]:
            raise ConfigError(
                f"encoder returned {vectors.shape[1]} dimensions for texts but "
                f"{classes.shape[1]} for class descriptions; pass an encoder with one output size"
            )
        for sub in range(start, stop, step):
            end = min(sub + step, stop)
            sims = _similarities(vectors[sub - start : end - start], classes)  # (b, n_classes)
            local = np.arange(end - sub)
            best_class[sub:end] = np.argmax(sims, axis=1)
            best[sub:end] = sims[local, best_class[sub:end]]
            base[sub:end] = np.median(sims, axis=1)
            first, last = labels.indptr[sub], labels.indptr[end]
            entry_rows = np.repeat(local, np.diff(labels.indptr[sub : end + 1]))
            given_sim[first:last] = sims[entry_rows, labels.indices[first:last]]
    return best, base, best_class, given_sim


def tfidf_encoder(
    descriptions: list[str], texts: list[str], max_fit_texts: int, seed: int
) -> Callable[[list[str]], sp.csr_matrix]:
    """The default encoder: word 1-2-gram and character 3-5-gram TF-IDF, fitted on
    ``descriptions`` and up to ``max_fit_texts`` non-empty ``texts``; it returns (m, V) float32
    CSR rows of unit norm (zero for a text without a known term)."""
    if len(texts) > max_fit_texts:
        chosen = np.random.default_rng(seed).choice(len(texts), max_fit_texts, replace=False)
        texts = [texts[i] for i in np.sort(chosen)]
    corpus = descriptions + [t for t in texts if t.strip()]
    common: dict[str, Any] = {"sublinear_tf": True, "strip_accents": "unicode", "dtype": np.float32}
    words = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), **common).fit(corpus)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common).fit(corpus)

    def encode(batch: list[str]) -> sp.csr_matrix:
        both = sp.hstack([words.transform(batch), chars.transform(batch)], format="csr")
        return sp.csr_matrix(normalize(both))

    return encode


def check_texts(texts: Any, n_samples: int) -> list[str]:
    """``texts`` as a list of n_samples str (None -> ""); a one-line DataError when there is no
    text, a length mismatch or an entry that is not a string."""
    if texts is None:
        raise DataError(_NEEDS_TEXT.format(what="texts is None"))
    if isinstance(texts, str | bytes):
        raise DataError("texts is one string; pass one text per labelled row")
    items = list(texts)
    if len(items) != n_samples:
        raise DataError(
            f"texts have {len(items)} entries but labels have {n_samples} rows; pass one text "
            "per labelled row, in the same order (None or '' where a row has none)"
        )
    out = [_text(item, "texts", i) for i, item in enumerate(items)]
    if not any(t.strip() for t in out):
        raise DataError(_NEEDS_TEXT.format(what=f"all {n_samples} texts are empty"))
    return out


def check_descriptions(descriptions: Any, n_classes: int) -> list[str]:
    """``class_descriptions`` as a list of n_classes str; a class without one is warned of."""
    if descriptions is None:
        raise DataError(
            "semantic needs class_descriptions but got None; pass one name or description per "
            "class, in class order (e.g. Dataset.class_names)"
        )
    if isinstance(descriptions, str | bytes):
        raise DataError("class_descriptions is one string; pass one description per class")
    items = list(descriptions)
    if len(items) != n_classes:
        raise DataError(
            f"class_descriptions have {len(items)} entries but labels have {n_classes} classes; "
            "pass one description per class, in class order"
        )
    out = [_text(item, "class_descriptions", i) for i, item in enumerate(items)]
    blank = [i for i, t in enumerate(out) if not t.strip()]
    if len(blank) == n_classes:
        raise DataError(
            f"all {n_classes} class_descriptions are empty; pass each class's name or description"
        )
    if blank:
        shown = ", ".join(str(c) for c in blank[:10]) + (", ..." if len(blank) > 10 else "")
        warnings.warn(
            f"semantic: {len(blank)} classes have an empty description (classes {shown}); their "
            "labels are flagged whenever a row's text matches another class",
            WeblyWarning,
            stacklevel=4,
        )
    return out


def _text(item: Any, name: str, index: int) -> str:
    if item is None or (isinstance(item, float) and math.isnan(item)):
        return ""
    if not isinstance(item, str):
        raise DataError(
            f"{name}[{index}] is {item!r} ({type(item).__name__}); pass strings (None or '' "
            "where there is none)"
        )
    return item


def _checked(encoder: Encoder) -> Callable[[list[str]], Vectors]:
    """``encoder`` with its output checked ((m, d), finite) and rows L2-normalised."""

    def encode(batch: list[str]) -> Vectors:
        out = encoder(list(batch))
        try:
            vectors: Vectors = (
                sp.csr_matrix(out, dtype=np.float32)
                if sp.issparse(out)
                else np.asarray(out, dtype=np.float32)
            )
        except (TypeError, ValueError):
            raise ConfigError(
                f"encoder returned {type(out).__name__}, not numbers; pass an encoder that maps "
                "m strings to an (m, d) float array (a torch tensor: .cpu().numpy())"
            ) from None
        values = vectors.data if sp.issparse(vectors) else vectors
        if vectors.ndim != 2 or vectors.shape[0] != len(batch) or vectors.shape[1] == 0:
            raise ConfigError(
                f"encoder returned shape {vectors.shape} for {len(batch)} strings; pass an "
                "encoder that maps m strings to an (m, d) float array"
            )
        if not np.isfinite(values).all():
            raise ConfigError(
                "encoder returned a NaN or infinite value; pass an encoder with finite outputs"
            )
        if sp.issparse(vectors):
            return sp.csr_matrix(normalize(vectors))
        return np.asarray(normalize(vectors), dtype=np.float32)

    return encode


def _similarities(texts: Vectors, classes: Vectors) -> np.ndarray:
    """(b, n_classes) float64 cosine similarities of unit-norm rows."""
    product: Any = texts @ classes.T
    dense = product.toarray() if sp.issparse(product) else np.asarray(product)
    return np.asarray(dense, dtype=np.float64)
