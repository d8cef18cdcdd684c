"""Kaggle submission files: ``VideoId,LabelConfidencePairs`` CSV holding top-k predictions,
written, read, and scored against a dataset's labels.

One line per row: ``id,cls score cls score ...``, best first. Files are written atomically and
read line by line, so a submission of millions of rows never sits in memory as text.
"""

from __future__ import annotations

import os
import warnings
from array import array
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from webly._fs import replaced_file
from webly.core import TopK
from webly.data.store import Dataset
from webly.errors import DataError, WeblyWarning
from webly.metrics.evaluate import ranking_metrics

HEADER = "VideoId,LabelConfidencePairs"


def write_submission(
    path: str | os.PathLike[str],
    ids: Sequence[str],
    topk: TopK,
    class_ids: Sequence[str | int] | None = None,
) -> None:
    """Write top-k predictions as a submission CSV, atomically.

    Parameters
    ----------
    path : path-like
        Destination; replaced in one step (temp file in the same folder, fsync, rename).
    ids : sequence of n_samples str
        Row ids (e.g. video ids); no commas or line breaks.
    topk : TopK
        (n_samples, k) predictions; written best first with 6-decimal scores, padding skipped.
    class_ids : sequence of str or int, optional
        Name written for each class index (e.g. the original label ids); the index itself if
        omitted.
    """
    if len(ids) != topk.n_samples:
        raise DataError(
            f"{len(ids)} ids for {topk.n_samples} rows of predictions; pass one id per row"
        )
    if class_ids is not None and topk.indices.size and topk.indices.max() >= len(class_ids):
        raise DataError(
            f"predictions use class {topk.indices.max()} but class_ids name only "
            f"{len(class_ids)} classes; pass a name for every class"
        )
    names = [str(c) for c in class_ids] if class_ids is not None else None
    order = np.argsort(-topk.scores, axis=1, kind="stable")
    indices = np.take_along_axis(topk.indices, order, axis=1)
    scores = np.take_along_axis(topk.scores, order, axis=1)
    with replaced_file(path, "w") as handle:
        handle.write(HEADER + "\n")
        for row, row_id in enumerate(ids):
            if "," in row_id or "\n" in row_id or "\r" in row_id:
                raise DataError(
                    f"id {row_id!r} of row {row} holds a comma or line break; "
                    "submission ids must be plain tokens"
                )
            keep = indices[row] >= 0
            pairs = " ".join(
                f"{names[c] if names is not None else c} {s:.6f}"
                for c, s in zip(
                    indices[row][keep].tolist(), scores[row][keep].tolist(), strict=True
                )
            )
            handle.write(f"{row_id},{pairs}\n")


def read_submission(
    path: str | os.PathLike[str], id_to_row: Mapping[str, int] | None, n_classes: int
) -> tuple[list[str], TopK]:
    """Read a submission CSV line by line.

    Parameters
    ----------
    path : path-like
        A ``VideoId,LabelConfidencePairs`` file.
    id_to_row : mapping of id -> row, optional
        When given, every id must be in it (checked while reading, so an error names the
        line); use `align_submission` to order the rows like the label store.
    n_classes : int
        Class ids must lie in 0..n_classes-1.

    Returns
    -------
    ids : list of n_lines str
        Ids in file order; a repeated id keeps its first line (with a `WeblyWarning`).
    topk : TopK
        (n_lines, k) with k the most pairs on a line (at least 1); shorter lines are padded
        with -1 / -inf; pairs in file order.
    """
    source = Path(path)
    ids: list[str] = []
    first_line: dict[str, int] = {}
    duplicates: list[tuple[str, int]] = []
    classes, scores = array("i"), array("f")
    counts = array("q")
    try:
        with source.open(encoding="utf-8") as handle:
            header = handle.readline().strip().lstrip("\ufeff")
            if header != HEADER:
                raise DataError(
                    f"{source}:1: header is {header[:60]!r}, expected {HEADER!r}; "
                    "is this a Kaggle submission file?"
                )
            for number, line in enumerate(handle, start=2):
                if not line.strip():
                    continue
                row_id, pairs = _parse_line(source, number, line, n_classes)
                if row_id in first_line:
                    duplicates.append((row_id, number))
                    continue
                if id_to_row is not None and row_id not in id_to_row:
                    raise DataError(
                        f"{source}:{number}: id {row_id!r} is not in the label store; "
                        "check that the submission is for this dataset"
                    )
                first_line[row_id] = number
                ids.append(row_id)
                classes.extend(c for c, _ in pairs)
                scores.extend(s for _, s in pairs)
                counts.append(len(pairs))
    except FileNotFoundError:
        raise DataError(f"{source}: no such submission file; check the path") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(
            f"{source}: cannot read the submission ({error}); pass a readable UTF-8 CSV"
        ) from None
    if duplicates:
        row_id, number = duplicates[0]
        warnings.warn(
            f"{source}: {len(duplicates)} repeated ids, first {row_id!r} on line {number} "
            f"(first seen on line {first_line[row_id]}); kept each id's first line",
            WeblyWarning,
            stacklevel=2,
        )
    return ids, _padded(
        np.frombuffer(classes, np.int32),
        np.frombuffer(scores, np.float32),
        np.frombuffer(counts, np.int64),
    )


def align_submission(ids_sub: Sequence[str], topk_sub: TopK, store_ids: Sequence[str]) -> TopK:
    """Reorder submission rows to a label store's rows.

    Parameters
    ----------
    ids_sub : sequence of n_lines str
        Submission ids, as `read_submission` returns them.
    topk_sub : TopK
        (n_lines, k) submission predictions.
    store_ids : sequence of n_samples str
        The label store's ids in row order.

    Returns
    -------
    TopK
        (n_samples, k); store rows without a submission line are all padding (no predictions;
        their positives still count in GAP's denominator).
    """
    if len(ids_sub) != topk_sub.n_samples:
        raise DataError(
            f"{len(ids_sub)} submission ids for {topk_sub.n_samples} rows of predictions; "
            "pass the ids and TopK that read_submission returned"
        )
    row_of = {row_id: row for row, row_id in enumerate(store_ids)}
    if len(row_of) != len(store_ids):
        raise DataError(
            f"the store ids repeat ({len(store_ids) - len(row_of)} repeats); "
            "store ids must be unique"
        )
    rows = np.fromiter((row_of.get(i, -1) for i in ids_sub), np.int64, count=len(ids_sub))
    missing = np.flatnonzero(rows < 0)
    if missing.size:
        raise DataError(
            f"{missing.size} submission ids are not in the store, first {ids_sub[missing[0]]!r}; "
            "check that the submission is for this dataset"
        )
    if np.unique(rows).size != rows.size:
        raise DataError("submission ids repeat; pass each id once (read_submission drops repeats)")
    shape = (len(store_ids), topk_sub.k)
    indices = np.full(shape, -1, dtype=np.int32)
    scores = np.full(shape, -np.inf, dtype=np.float32)
    indices[rows], scores[rows] = topk_sub.indices, topk_sub.scores
    return TopK(indices, scores)


def score_submission(path: Path, store: Dataset, k: int = 20) -> dict[str, float]:
    """Score a ``VideoId,LabelConfidencePairs`` file against ``store``'s labels
    (`webly.metrics.evaluate.ranking_metrics`).

    Rows of the store without a line in the file count as rows with no predictions.
    """
    store_ids = store.ids
    ids, topk = read_submission(
        path, {str(i): row for row, i in enumerate(store_ids)}, store.n_classes
    )
    return ranking_metrics(align_submission(ids, topk, list(store_ids)), store.labels, k=k)


def _parse_line(
    source: Path, number: int, line: str, n_classes: int
) -> tuple[str, list[tuple[int, float]]]:
    """Split ``id,cls score ...`` into the id and its (class, score) pairs."""
    row_id, comma, rest = line.rstrip("\r\n").partition(",")
    row_id = row_id.strip()
    if not comma or not row_id:
        raise DataError(
            f"{source}:{number}: expected 'id,cls score cls score ...', got {line[:60]!r}; "
            "fix the line"
        )
    tokens = rest.split()
    if len(tokens) % 2:
        raise DataError(
            f"{source}:{number}: {len(tokens)} tokens in LabelConfidencePairs, an odd count; "
            "each class needs a score"
        )
    pairs = []
    seen = set()
    for position in range(0, len(tokens), 2):
        try:
            cls, score = int(tokens[position]), float(tokens[position + 1])
        except ValueError:
            raise DataError(
                f"{source}:{number}: pair {tokens[position]!r} {tokens[position + 1]!r} is "
                "not an integer class and a number; fix the line"
            ) from None
        if not np.isfinite(score):
            raise DataError(
                f"{source}:{number}: score {tokens[position + 1]!r} is not a finite number; "
                "write finite scores"
            )
        if not 0 <= cls < n_classes:
            raise DataError(
                f"{source}:{number}: class {cls} is outside 0..{n_classes - 1}; "
                "check n_classes or the class ids"
            )
        if cls in seen:
            raise DataError(
                f"{source}:{number}: class {cls} appears twice; list each class once a line"
            )
        seen.add(cls)
        pairs.append((cls, score))
    return row_id, pairs


def _padded(classes: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> TopK:
    """Pack ragged rows into a padded TopK.

    Parameters
    ----------
    classes : (total,) int32, scores : (total,) float32
        All pairs, row after row.
    counts : (n_lines,) int64
        Pairs per row.
    """
    k = max(int(counts.max(initial=0)), 1)
    indices = np.full((counts.size, k), -1, dtype=np.int32)
    values = np.full((counts.size, k), -np.inf, dtype=np.float32)
    rows = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    columns = np.arange(classes.size) - np.repeat(starts, counts)
    indices[rows, columns] = classes
    values[rows, columns] = scores
    return TopK(indices, values)
