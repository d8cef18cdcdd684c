"""Group aggregation: one prediction per group of rows (a product's 1–4 images), scored per group.

Cdiscount listed each product with 1–4 images and scored the product, not the image. Its
winners combined the images' predictions with:

- ``mean``: the mean of the instances' probabilities, per class;
- ``belief`` (the belief-based aggregation of Pan & Sun): per candidate class of the group (the
  union of its rows' top-k classes), an instance whose probability for the class lies outside
  the Gaussian 95% interval of the *other* instances (their mean +- ``z`` x their standard
  deviation) is dropped, and the class scores the mean of the instances kept. One image of the
  wrong object (a box, a label, another product) stops dragging the product's scores;
- ``first``: a single instance, the group's first row (the baseline).

Conventions:

- A row that does not have a class among its top-k counts as probability 0 for it (as
  `webly.predictions.merge_topk` counts it), so a class only one image proposes is that image's
  probability against the others' zeros.
- The leave-one-out standard deviation is the sample one (``ddof=1``) of the ``m - 1`` other
  instances, so it needs two others: in groups of 1 or 2 rows nothing is dropped and
  ``belief`` equals ``mean``. An instance is kept when ``|p - mean| <= z * std + 1e-6`` (the
  slack absorbs float rounding: identical instances are never dropped). Should every instance
  of a class be dropped (possible only for a small ``z``), the class scores the plain mean.
- Groups come out in order of first appearance in ``groups`` (the dataset's order when a
  product's rows are contiguous, as `webly.data.products` writes them), and `group_labels`
  returns the labels of the same groups in the same order.

Everything is vectorised over groups: rows are sorted by group once and processed in blocks of
consecutive groups laid out as ``(groups, largest group)`` rows of at most `BLOCK_ROWS` cells;
each group's entries are sorted by class within its own row and the per-(group, class) sums
taken with ``np.bincount``. No ``(n_groups, n_classes)`` matrix is built, so millions of rows
and thousands of classes fit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from webly.core import Task, TopK, select_top_k
from webly.errors import ConfigError, DataError

Method = Literal["mean", "belief", "first"]
METHODS = ("mean", "belief", "first")
BLOCK_ROWS = 65_536
_SLACK = 1e-6


def aggregate_groups(
    scores: TopK | np.ndarray,
    groups: np.ndarray,
    method: Method = "mean",
    z: float = 1.96,
    k: int | None = None,
) -> tuple[np.ndarray, TopK]:
    """Combine the predictions of each group's rows into one prediction per group.

    Parameters
    ----------
    scores : TopK (n_samples, k_in) or (n_samples, n_classes) float array
        Each row's probabilities (dense only when n_classes is small).
    groups : (n_samples,) array of group ids (str or int, e.g. `Dataset.groups`), in any order
    method : ``"mean"``, ``"belief"`` or ``"first"`` (see the module docstring)
    z : half-width of ``belief``'s interval in standard deviations (1.96: 95%)
    k : classes kept per group; ``k_in`` (dense: n_classes) if None

    Returns
    -------
    group_ids : (n_groups,) the distinct ids of ``groups``, in order of first appearance
    TopK (n_groups, k)
        Each group's best classes, best first; -1 / -inf pad groups with fewer than k
        candidates.
    """
    if method not in METHODS:
        raise ConfigError(f"aggregation method {method!r} is unknown; use one of {METHODS}")
    if not (np.isfinite(z) and z > 0):
        raise ConfigError(f"z is {z}; use a number of standard deviations > 0, e.g. 1.96")
    topk = _as_topk(scores)
    group_ids, group_of, first_rows = _group_index(groups, topk.n_samples)
    keep = topk.k if k is None else k
    if keep < 1:
        raise ConfigError(f"k is {keep}; it must be >= 1")
    if method == "first":
        indices, values = select_top_k(
            TopK(topk.indices[first_rows], topk.scores[first_rows]), keep, sort=True
        )
        return group_ids, _pad(indices, values, keep)
    out_indices = np.full((group_ids.size, keep), -1, dtype=np.int32)
    out_scores = np.full((group_ids.size, keep), -np.inf, dtype=np.float32)
    sizes = np.bincount(group_of, minlength=group_ids.size)
    for first_group, rows in _blocks(group_of, sizes):
        block = slice(first_group, first_group + rows.shape[0])
        candidates = _group_scores(topk, rows, sizes[block], method, z)
        indices, values = select_top_k(candidates, keep, sort=True)
        out_indices[block, : indices.shape[1]] = indices
        out_scores[block, : values.shape[1]] = values
    return group_ids, TopK(out_indices, out_scores)


def group_labels(
    labels: sp.spmatrix,
    groups: np.ndarray,
    task: Task = Task.MULTILABEL,
) -> sp.csr_matrix:
    """Each group's labels, for scoring `aggregate_groups`' output.

    Parameters
    ----------
    labels : (n_samples, n_classes) sparse 0/1, e.g. `Dataset.labels` or ``clean_labels``
    groups : (n_samples,) group ids, as given to `aggregate_groups`
    task : ``"multilabel"``: a group's labels are the union of its rows' labels;
        ``"multiclass"``: the labels of its first row (a listing carries one category, so its
        rows agree; taking one keeps exactly one label per group)

    Returns
    -------
    csr_matrix (n_groups, n_classes) float32 0/1, groups in `aggregate_groups`' order
    """
    labels = sp.csr_matrix(labels)
    group_ids, group_of, first_rows = _group_index(groups, labels.shape[0])
    if not Task.parse(task).multilabel:
        return sp.csr_matrix(labels[first_rows], dtype=np.float32)
    n = labels.shape[0]
    member = sp.csr_matrix(
        (np.ones(n, np.float32), (group_of, np.arange(n))), shape=(group_ids.size, n)
    )
    union = sp.csr_matrix(member @ labels, dtype=np.float32)
    union.eliminate_zeros()
    union.data[:] = 1.0
    return union


def group_index(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The groups of ``groups`` as `aggregate_groups` orders them, and each row's group.

    Returns
    -------
    group_ids : (n_groups,) distinct ids in order of first appearance
    group_of : (n_samples,) int64 position of each row's group in ``group_ids`` (e.g. to give
        a group's prediction back to its rows: ``per_group[group_of]``)
    """
    group_ids, group_of, _ = _group_index(groups, None)
    return group_ids, group_of


# --------------------------------------------------------------------------- internals


def _as_topk(scores: TopK | np.ndarray) -> TopK:
    if isinstance(scores, TopK):
        return scores
    dense = np.asarray(scores)
    if dense.ndim != 2:
        raise DataError(
            f"scores have shape {dense.shape}; pass a TopK or an (n_samples, n_classes) array"
        )
    classes = np.broadcast_to(np.arange(dense.shape[1], dtype=np.int32), dense.shape)
    return TopK(classes, dense)


def _group_index(
    groups: np.ndarray, n_samples: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct ids in order of first appearance, (n_samples,) int64 group of each row, and
    (n_groups,) int64 first row of each group; ``n_samples`` None accepts any length."""
    if groups is None:
        raise ConfigError(
            "no group ids given (the dataset has no group column); import the data with a "
            "group column, e.g. one id per product"
        )
    ids = np.asarray(groups)
    if ids.ndim != 1 or ids.size != (ids.size if n_samples is None else n_samples):
        wanted = "" if n_samples is None else f" ({n_samples},)"
        raise DataError(f"groups have shape {ids.shape}; pass one group id per row{wanted}")
    try:
        encoded = pa.array(ids).dictionary_encode()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise DataError(f"group ids are not all of one type ({err}); pass str or int ids") from None
    if encoded.null_count:
        raise DataError(f"{encoded.null_count} rows have no group id; give every row a group")
    group_of = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    # Codes number groups by first appearance: a row opens its group iff its code exceeds
    # every code before it.
    opens = np.ones(ids.size, dtype=bool)
    opens[1:] = group_of[1:] > np.maximum.accumulate(group_of)[:-1]
    return encoded.dictionary.to_numpy(zero_copy_only=False), group_of, np.flatnonzero(opens)


def _blocks(group_of: np.ndarray, sizes: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first group, rows)`` over runs of consecutive groups: ``rows`` is
    ``(n_groups_in_run, largest group)`` int64, each group's rows in order, -1 padded, and
    holds at most `BLOCK_ROWS` cells (or one group)."""
    order = np.argsort(group_of, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    first = 0
    while first < sizes.size:
        widest = np.maximum.accumulate(sizes[first : first + BLOCK_ROWS])
        fits = np.arange(1, widest.size + 1) * widest <= BLOCK_ROWS  # a prefix: it only grows
        stop = first + max(1, int(fits.sum()))
        counts = sizes[first:stop]
        rows = np.full((stop - first, int(counts.max())), -1, dtype=np.int64)
        owner = np.repeat(np.arange(stop - first), counts)
        slot = np.arange(owner.size) - np.repeat(bounds[first:stop] - bounds[first], counts)
        rows[owner, slot] = order[bounds[first] : bounds[stop]]
        yield first, rows
        first = stop


def _group_scores(
    topk: TopK, rows: np.ndarray, sizes: np.ndarray, method: Method, z: float
) -> TopK:
    """Every candidate class of each group of a block, with its aggregated score.

    Parameters
    ----------
    rows : (G, M) int64 rows of each group, -1 padded (see `_blocks`)
    sizes : (G,) rows of each group

    Returns
    -------
    TopK (G, W): each group's distinct candidate classes, ascending, and their scores
    """
    n_groups = rows.shape[0]
    filled = rows >= 0
    picked = np.where(filled, rows, 0)
    indices = np.where(filled[:, :, None], topk.indices[picked], -1).reshape(n_groups, -1)
    order = np.argsort(indices, axis=1, kind="stable")  # padding first, then by class
    classes = np.take_along_axis(indices, order, axis=1)  # (G, M * k_in)
    present = classes >= 0
    values = np.take_along_axis(topk.scores[picked].reshape(n_groups, -1), order, axis=1)
    opens = present.copy()  # the first entry of each (group, class) pair
    opens[:, 1:] &= classes[:, 1:] != classes[:, :-1]
    n_pairs = int(opens.sum())
    pair_of = (np.cumsum(opens.ravel()) - 1)[present.ravel()]  # (E,) pair of each entry
    x = values[present].astype(np.float64)  # (E,) row order = ravel order
    pair_group, _ = np.nonzero(opens)
    m = sizes[pair_group].astype(np.float64)  # (P,) rows of the pair's group
    total = np.bincount(pair_of, weights=x, minlength=n_pairs)
    score = total / m
    if method == "belief":
        square = np.bincount(pair_of, weights=x * x, minlength=n_pairs)
        absent = m - np.bincount(pair_of, minlength=n_pairs)  # rows at probability 0
        # Each present instance against the others; the absent ones share one test.
        kept = _inside(x, total[pair_of], square[pair_of], m[pair_of], z)
        kept_sum = np.bincount(pair_of, weights=np.where(kept, x, 0.0), minlength=n_pairs)
        kept_count = np.bincount(pair_of, weights=kept, minlength=n_pairs)
        kept_count += absent * _inside(np.zeros(n_pairs), total, square, m, z)
        score = np.divide(kept_sum, kept_count, out=score, where=kept_count > 0)
    slot = (np.cumsum(opens, axis=1) - 1)[opens]
    width = int(opens.sum(axis=1).max(initial=0))
    out_classes = np.full((n_groups, max(width, 1)), -1, dtype=np.int32)
    out_scores = np.full(out_classes.shape, -np.inf, dtype=np.float32)
    out_classes[pair_group, slot] = classes[opens]
    out_scores[pair_group, slot] = score
    return TopK(out_classes, out_scores)


def _inside(
    x: np.ndarray, total: np.ndarray, square: np.ndarray, m: np.ndarray, z: float
) -> np.ndarray:
    """Whether each value ``x`` lies within ``z`` sample standard deviations of the mean of the
    other ``m - 1`` values of its set (sum ``total`` and sum of squares ``square`` including
    ``x``); always True for sets of fewer than 3."""
    others = m - 1.0
    small = others < 2.0
    safe = np.where(small, 2.0, others)
    mean = (total - x) / safe
    var = np.maximum((square - x * x - safe * mean * mean) / (safe - 1.0), 0.0)
    return small | (np.abs(x - mean) <= z * np.sqrt(var) + _SLACK)


def _pad(indices: np.ndarray, values: np.ndarray, k: int) -> TopK:
    """A (n, k) TopK from (n, k') selections with k' <= k."""
    out_indices = np.full((indices.shape[0], k), -1, dtype=np.int32)
    out_scores = np.full((indices.shape[0], k), -np.inf, dtype=np.float32)
    out_indices[:, : indices.shape[1]] = indices
    out_scores[:, : values.shape[1]] = values
    return TopK(out_indices, out_scores)
