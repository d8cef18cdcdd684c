"""`find_noisy_labels`: the one entry point of noise detection, a pure function over arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from webly.clean._registry import method_entry, recorded_options, resolve_options
from webly.clean.problem import OofLike, build_problem
from webly.clean.verdict import NoiseVerdict, build_verdict
from webly.core import LabelsLike, Task


def find_noisy_labels(
    labels: LabelsLike,
    oof: OofLike | Sequence[OofLike],
    method: str = "confident_learning",
    *,
    task: Task | None = None,
    n_classes: int | None = None,
    **options: Any,
) -> NoiseVerdict:
    """Judge which given labels are wrong (or, multi-label, missing) from out-of-fold predictions.

    Parameters
    ----------
    labels : (n_samples, n_classes) sparse or dense 0/1, or (n_samples,) int class ids
        The given (noisy) labels, e.g. ``Dataset.labels``.
    oof : (n_samples, n_classes) float probabilities, a `TopK`, or a list of either
        Out-of-fold probabilities of the same rows (softmax for multi-class, sigmoid for
        multi-label). With a TopK a class outside a row's top k counts as probability 0 and
        nothing of size n_samples * n_classes is built. A list holds several members'
        predictions: ``ensemble_agreement`` compares them, the other methods average them.
    method : str
        One of `list_methods()`: ``confident_learning`` (default), ``self_confidence``,
        ``margin``, ``disagree_low_conf``, ``ensemble_agreement``, ``cluster`` (needs
        ``features=``), ``semantic`` (needs ``texts=`` and ``class_descriptions=``).
    task : {"multiclass", "multilabel"}, optional
        Inferred when None: 1-d labels, or one label in every row, are multi-class.
    n_classes : int, optional
        Class count, needed only for 1-d labels with TopK predictions whose largest class is
        not used.
    **options
        The method's options (see each method; an option it does not take is refused), and
        the data some methods need (``features``, ``texts``...), which the verdict's
        ``params`` do not record.

    Returns
    -------
    NoiseVerdict

    Raises
    ------
    DataError
        Predictions whose rows or classes do not match the labels, probabilities outside
        [0, 1], multi-class rows that do not sum to 1 where the method needs it.
    ConfigError
        An unknown method or option, or an option value out of range.
    """
    entry = method_entry(method)
    params = resolve_options(entry, options)
    problem = build_problem(labels, oof, task, n_classes)
    found = entry.fn(problem, **params)
    return build_verdict(entry.name, recorded_options(entry, params), problem, found)
