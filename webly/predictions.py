"""The prediction store: one model's out-of-fold and test predictions, top-k sparse, on disk.

A store is a folder::

    manifest.json            format version, model config, n_classes, k, rows, fold metrics, CRC32C
    oof.indices.npy          (n_train, k) int32 class ids, -1 = padding     (absent when dense)
    oof.scores.npy           (n_train, k) float16 scores, best first, -inf = padding
    test.indices.npy         (n_test, k) ...
    test.scores.npy          (n_test, k) ...

``oof`` holds one row per training row, in the training store's row order, each predicted by the
fold model that did not see it; ``test`` holds one row per test row (the fold models averaged by
the caller, e.g. with `merge_topk`). When ``n_classes <= k`` a split is stored dense: only
``scores.npy`` of shape (n, n_classes), no index file.

Scores are stored as float16: a stored score differs from the one written by at most
``max(|x| * 2**-11, 2**-25)`` (round to nearest; 2**-25 below float16's normal range), so close
scores may become ties but never swap order. 5M rows x k=100 take 3 GB.

Writes stream: `PredictionWriter` writes blocks of rows, in any order, straight into memory-mapped
``.npy`` files in a hidden folder beside the destination, which is renamed into place by `commit`
after the manifest is written, so an interrupted write leaves nothing that opens. Reads are
memory-mapped (``np.load(mmap_mode="r")``) with the kernel's default read-ahead: a split is read
as a stream of blocks or gathered a fold at a time, and a fold's rows are spread over every page.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import crc32c
import numpy as np

from webly._fs import claim_output, publish_output
from webly.core import TopK, select_top_k
from webly.data.store import read_manifest
from webly.errors import ConfigError, DataError

FORMAT = "webly-predictions"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("oof", "test")

_F16_MAX = float(np.finfo(np.float16).max)
_BLOCK_ROWS = 1 << 16

Rows = slice | Sequence[int] | np.ndarray | None


# --------------------------------------------------------------------------- writing


class PredictionWriter:
    """Streams one model's predictions into a new prediction store at ``path``.

    Parameters
    ----------
    path : str or Path
        Destination folder; it may not exist (or be an empty folder) unless ``overwrite``.
    n_rows : mapping of split name to int
        Rows of each split to write, e.g. ``{"oof": len(train), "test": len(test)}``; splits are
        ``oof`` and ``test``, either may be left out.
    n_classes : int
        Number of classes the model predicts.
    model : mapping
        The model's name and config, any JSON-serialisable dict; kept in the manifest.
    k : int
        Predictions kept per row; a split is stored dense when ``n_classes <= k``.
    overwrite : bool
        Replace an existing store at ``path`` (only when `commit` succeeds).

    Notes
    -----
    Memory held is one byte per row (how often each row was written) plus the block being
    written. Leaving a ``with`` block without `commit` discards everything.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        n_rows: Mapping[str, int],
        n_classes: int,
        model: Mapping[str, Any],
        k: int = 100,
        overwrite: bool = False,
    ) -> None:
        unknown = sorted(set(n_rows) - set(SPLITS))
        if unknown or not n_rows:
            raise ConfigError(
                f"prediction splits {unknown or 'none'} given; n_rows takes 'oof' and/or 'test'"
            )
        if any(int(n) < 0 for n in n_rows.values()):
            raise ConfigError(f"n_rows {dict(n_rows)} holds a negative count; pass row counts")
        if n_classes < 1 or k < 1:
            raise ConfigError(f"n_classes={n_classes}, k={k}; both must be >= 1")
        try:
            self._model_json = json.loads(json.dumps(dict(model)))
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"model config is not JSON-serialisable ({err}); pass a plain dict"
            ) from None
        self.path = Path(path)
        self.n_classes = int(n_classes)
        self.k = int(k)
        self.dense = self.n_classes <= self.k
        self.width = self.n_classes if self.dense else self.k
        self._tmp = claim_output(self.path, overwrite)
        self._arrays: dict[str, dict[str, np.memmap]] = {}
        self._counts: dict[str, np.ndarray] = {}
        self._done = False
        try:
            for split, n in n_rows.items():
                shape = (int(n), self.width)
                files = {"scores": self._open(f"{split}.scores.npy", np.float16, shape)}
                if not self.dense:
                    files["indices"] = self._open(f"{split}.indices.npy", np.int32, shape)
                self._arrays[split] = files
                self._counts[split] = np.zeros(int(n), dtype=np.uint8)
        except BaseException:
            self.abort()
            raise

    def write(
        self, split: str, rows: Sequence[int] | np.ndarray, scores: np.ndarray | TopK
    ) -> None:
        """Write the predictions of ``rows`` of ``split``.

        Parameters
        ----------
        split : {"oof", "test"}
        rows : (B,) int
            Row positions in the split, in any order (a fold's validation rows).
        scores : (B, n_classes) float or TopK of B rows
            Probabilities or scores; a dense array is cut to its top k, a TopK is cut or padded
            to k (or spread to dense when the store is dense).
        """
        counts = self._split_counts(split)
        positions = np.asarray(rows, dtype=np.int64).ravel()
        if positions.size and (positions.min() < 0 or positions.max() >= counts.size):
            raise DataError(
                f"{split} rows range over {positions.min()}..{positions.max()} but the split "
                f"has {counts.size} rows; pass row positions 0..{counts.size - 1}"
            )
        indices, values = self._encode(split, scores, positions.size)
        arrays = self._arrays[split]
        arrays["scores"][positions] = values
        if indices is not None:
            arrays["indices"][positions] = indices
        seen, times = np.unique(positions, return_counts=True)
        counts[seen] = np.minimum(counts[seen].astype(np.int64) + times, 2)

    def commit(self, fold_metrics: Mapping[str, Any] | None = None) -> Predictions:
        """Check coverage, write the manifest and move the store into place.

        Parameters
        ----------
        fold_metrics : mapping, optional
            Per-fold validation metrics (JSON-serialisable), e.g. ``{"0": {"gap": 0.81}}``.

        Raises
        ------
        DataError
            If a row was written zero times or more than once; nothing is left at ``path``.
        """
        if self._done:
            raise DataError(f"{self.path}: this PredictionWriter was already committed or aborted")
        try:
            metrics = json.loads(json.dumps(dict(fold_metrics or {})))
        except (TypeError, ValueError) as err:
            self.abort()
            raise ConfigError(
                f"fold_metrics is not JSON-serialisable ({err}); pass plain numbers"
            ) from None
        for split, counts in self._counts.items():
            self._check_coverage(split, counts)
        try:
            self._publish(metrics)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return Predictions.open(self.path)

    def _publish(self, metrics: dict[str, Any]) -> None:
        splits = {}
        for split, arrays in self._arrays.items():
            files = {}
            for name, array in arrays.items():
                array.flush()
                files[name] = _seal(self._tmp / f"{split}.{name}.npy")
            splits[split] = {"rows": int(self._counts[split].size), "files": files}
        self._arrays.clear()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self._model_json,
            "n_classes": self.n_classes,
            "k": self.k,
            "layout": "dense" if self.dense else "topk",
            "score_dtype": "float16",
            "splits": splits,
            "fold_metrics": metrics,
        }
        with open(self._tmp / MANIFEST, "w") as fh:
            json.dump(manifest, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        publish_output(self._tmp, self.path)

    def abort(self) -> None:
        """Discard everything written; ``path`` keeps what it held before."""
        self._arrays.clear()
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._done = True

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._done:
            self.abort()

    # ---- internals

    def _open(self, name: str, dtype: type, shape: tuple[int, int]) -> np.memmap:
        return np.lib.format.open_memmap(self._tmp / name, mode="w+", dtype=dtype, shape=shape)

    def _split_counts(self, split: str) -> np.ndarray:
        if self._done:
            raise DataError(f"{self.path}: this PredictionWriter was already committed or aborted")
        if split not in self._counts:
            raise DataError(
                f"split {split!r} was not declared; this writer has {sorted(self._counts)} "
                "(pass it in n_rows)"
            )
        return self._counts[split]

    def _encode(
        self, split: str, scores: np.ndarray | TopK, n: int
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """(B, k) int32 indices (None when dense) and (B, width) float16 scores of a block."""
        if isinstance(scores, TopK):
            if scores.n_samples != n:
                raise DataError(f"{split}: {n} rows but a TopK of {scores.n_samples} rows given")
            if scores.indices.size and scores.indices.max() >= self.n_classes:
                raise DataError(
                    f"{split}: TopK holds class {scores.indices.max()} but the store has "
                    f"{self.n_classes} classes (0..{self.n_classes - 1}); check n_classes"
                )
            topk = scores
        else:
            dense = np.asarray(scores)
            if dense.shape != (n, self.n_classes) or dense.dtype.kind not in "fiu":
                raise DataError(
                    f"{split}: scores have shape {dense.shape} and dtype {dense.dtype}; pass "
                    f"real (B, n_classes) = ({n}, {self.n_classes}) scores or a TopK"
                )
            if self.dense:
                if np.isnan(dense).any():
                    raise DataError(f"{split}: scores hold NaN; replace NaN scores")
                return None, _to_float16(split, dense.astype(np.float32, copy=False))
            topk = TopK(*select_top_k(dense.astype(np.float32, copy=False), self.k, sort=True))
        if self.dense:
            out = np.zeros((n, self.n_classes), dtype=np.float32)
            r, c = np.nonzero(topk.indices >= 0)
            out[r, topk.indices[r, c]] = topk.scores[r, c]
            return None, _to_float16(split, out)
        indices, values = select_top_k(topk, self.k, sort=True)
        if indices.shape[1] < self.k:
            pad = ((0, 0), (0, self.k - indices.shape[1]))
            indices = np.pad(indices, pad, constant_values=-1)
            values = np.pad(values, pad, constant_values=-np.inf)
        _to_float16(split, values)  # refuses what float16 cannot hold
        rounded = float16_topk(TopK(indices, values))
        return rounded.indices.astype(np.int32, copy=False), rounded.scores.astype(np.float16)

    def _check_coverage(self, split: str, counts: np.ndarray) -> None:
        what = "the fold model that did not see it" if split == "oof" else "the averaged folds"
        for bad, problem in ((counts == 0, "never written"), (counts > 1, "written twice")):
            rows = np.flatnonzero(bad)
            if rows.size:
                self.abort()
                raise DataError(
                    f"{self.path}: {rows.size} of {counts.size} {split} rows were {problem} "
                    f"(first: row {rows[0]}); each row must be written exactly once, by {what}"
                )


def float16_topk(topk: TopK) -> TopK:
    """``topk`` (sorted best first) with its scores rounded to float16, as a store holds them,
    and each row re-ordered by the rounded score, ties by ascending class (padding last): one
    order whatever float32 noise told tied scores apart, so a deployed ensemble ranks a member's
    classes exactly as the stores its blends and stacker were fitted on."""
    scores = topk.scores.astype(np.float16).astype(np.float32)
    order = np.lexsort((np.where(topk.indices < 0, np.iinfo(np.int32).max, topk.indices), -scores))
    return TopK(
        np.take_along_axis(topk.indices, order, axis=1), np.take_along_axis(scores, order, axis=1)
    )


def _to_float16(split: str, values: np.ndarray) -> np.ndarray:
    overflow = np.isfinite(values) & (np.abs(values) > _F16_MAX)
    if overflow.any():
        raise DataError(
            f"{split}: score {values[overflow][0]} overflows float16 (|x| <= {_F16_MAX:.0f}); "
            "store probabilities or scaled scores"
        )
    return values.astype(np.float16)


def _seal(path: Path) -> dict[str, Any]:
    """fsync ``path`` and describe it: file name, bytes and CRC32C."""
    crc, buffer = 0, bytearray(1 << 22)
    view = memoryview(buffer)
    with open(path, "rb") as fh:
        while size := fh.readinto(buffer):
            crc = crc32c.crc32c(view[:size], crc)
        os.fsync(fh.fileno())
    return {"file": path.name, "bytes": path.stat().st_size, "crc32c": f"{crc:08x}"}


def write_predictions(
    path: str | Path,
    splits: Mapping[str, TopK],
    *,
    n_classes: int,
    model: Mapping[str, Any],
    k: int = 100,
    fold_metrics: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Predictions:
    """Write whole splits of top-k predictions (a blend's, the stacker's) as one store.

    ``splits`` maps ``oof`` and/or ``test`` to a (n_rows, k_s) TopK; the rest is as
    `PredictionWriter`. Returns the committed store.
    """
    n_rows = {split: topk.n_samples for split, topk in splits.items()}
    with PredictionWriter(
        path, n_rows=n_rows, n_classes=n_classes, model=model, k=k, overwrite=overwrite
    ) as writer:
        for split, topk in splits.items():
            for start in range(0, topk.n_samples, _BLOCK_ROWS):
                block = slice(start, start + _BLOCK_ROWS)
                rows = np.arange(start, min(start + _BLOCK_ROWS, topk.n_samples))
                writer.write(split, rows, TopK(topk.indices[block], topk.scores[block]))
        return writer.commit(fold_metrics)


# --------------------------------------------------------------------------- reading


class SplitView:
    """The memory-mapped predictions of one split; gathers copy only the rows they take.

    ``rows`` arguments are None (every row), a slice or a (B,) int array of row positions.
    """

    def __init__(self, name: str, scores: np.ndarray, indices: np.ndarray | None, n_classes: int):
        self.name = name
        self.n_classes = n_classes
        self._scores = scores
        self._indices = indices

    def __len__(self) -> int:
        return int(self._scores.shape[0])

    @property
    def k(self) -> int:
        """Prediction slots per row (n_classes when stored dense)."""
        return int(self._scores.shape[1])

    def topk(self, rows: Rows = None) -> TopK:
        """(B, k) TopK of ``rows``, best first; a dense split is ranked on the fly."""
        picked = self._pick(rows)
        scores = self._scores[picked].astype(np.float32)
        if self._indices is None:
            return TopK.from_dense(scores, self.n_classes)
        return TopK(self._indices[picked], scores)

    def dense(self, rows: Rows = None) -> np.ndarray:
        """(B, n_classes) float32 scores of ``rows``, 0 where a class is not in the top k.

        Builds B x n_classes floats: gather few rows, or use it for small class counts.
        """
        picked = self._pick(rows)
        scores = self._scores[picked].astype(np.float32)
        if self._indices is None:
            return scores
        indices = self._indices[picked]
        out = np.zeros((scores.shape[0], self.n_classes), dtype=np.float32)
        r, c = np.nonzero(indices >= 0)
        out[r, indices[r, c]] = scores[r, c]
        return out

    def blocks(self, block_rows: int = _BLOCK_ROWS) -> Iterator[tuple[int, TopK]]:
        """Stream the split in order: yields ``(first_row, TopK of up to block_rows rows)``."""
        if block_rows < 1:
            raise ConfigError(f"block_rows is {block_rows}; it must be >= 1")
        for start in range(0, len(self), block_rows):
            yield start, self.topk(slice(start, start + block_rows))

    def _pick(self, rows: Rows) -> slice | np.ndarray:
        if rows is None:
            return slice(None)
        if isinstance(rows, slice):
            return rows
        picked = np.asarray(rows, dtype=np.int64).ravel()
        n = len(self)
        if picked.size and (picked.min() < 0 or picked.max() >= n):
            raise DataError(
                f"{self.name} rows range over {picked.min()}..{picked.max()} but the split has "
                f"{n} rows; pass row positions 0..{n - 1}"
            )
        return picked


class Predictions:
    """A read-only, memory-mapped prediction store; open it with `Predictions.open`."""

    def __init__(self, path: Path, manifest: dict[str, Any], splits: dict[str, SplitView]):
        self.path = path
        self.manifest = manifest
        self._splits = splits

    @classmethod
    def open(cls, path: str | Path, verify: bool = False) -> Predictions:
        """Open the store at ``path``; ``verify`` also checks every file's CRC32C."""
        path = Path(path)
        manifest = read_manifest(
            path, FORMAT, FORMAT_VERSION, "a prediction store", "train the model (webly train)",
            "re-train",
        )  # fmt: skip
        n_classes = int(manifest["n_classes"])
        width = n_classes if manifest["layout"] == "dense" else int(manifest["k"])
        splits = {}
        for split, info in manifest["splits"].items():
            shape = (int(info["rows"]), width)
            arrays = {
                name: _load(path, entry, shape, verify) for name, entry in info["files"].items()
            }
            splits[split] = SplitView(split, arrays["scores"], arrays.get("indices"), n_classes)
        return cls(path, manifest, splits)

    @property
    def model(self) -> dict[str, Any]:
        """The model's name and config as given to the writer."""
        return dict(self.manifest["model"])

    @property
    def fold_metrics(self) -> dict[str, Any]:
        """Per-fold validation metrics as given to `PredictionWriter.commit`."""
        return dict(self.manifest["fold_metrics"])

    @property
    def n_classes(self) -> int:
        return int(self.manifest["n_classes"])

    @property
    def k(self) -> int:
        """Prediction slots per row: k, or n_classes when stored dense."""
        return min(int(self.manifest["k"]), self.n_classes)

    @property
    def splits(self) -> list[str]:
        return list(self._splits)

    @property
    def oof(self) -> SplitView:
        """Out-of-fold predictions, one row per training row."""
        return self.split("oof")

    @property
    def test(self) -> SplitView:
        """Test predictions, one row per test row."""
        return self.split("test")

    def split(self, name: str) -> SplitView:
        if name not in self._splits:
            raise DataError(f"{self.path} has no {name!r} predictions (it has: {self.splits})")
        return self._splits[name]

    def topk(self, split: str, rows: Rows = None) -> TopK:
        """(B, k) TopK of ``rows`` of ``split``; see `SplitView.topk`."""
        return self.split(split).topk(rows)

    def dense(self, split: str, rows: Rows = None) -> np.ndarray:
        """(B, n_classes) float32 scores of ``rows`` of ``split``; see `SplitView.dense`."""
        return self.split(split).dense(rows)

    def __repr__(self) -> str:
        rows = ", ".join(f"{s}={len(v)}" for s, v in self._splits.items())
        return f"Predictions({str(self.path)!r}, {rows}, classes={self.n_classes}, k={self.k})"


def _load(folder: Path, entry: dict[str, Any], shape: tuple[int, int], verify: bool) -> np.ndarray:
    file = folder / entry["file"]
    size = file.stat().st_size if file.is_file() else -1
    if size != entry["bytes"]:
        found = "no file" if size < 0 else size
        raise DataError(
            f"{file}: expected {entry['bytes']} bytes, found {found}; the store is damaged, "
            "re-train the model"
        )
    if verify and _seal(file)["crc32c"] != entry["crc32c"]:
        raise DataError(f"{file}: checksum mismatch; the store is damaged, re-train the model")
    try:
        array = np.load(file, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise DataError(f"{file}: unreadable ({err}); the store is damaged, re-train") from None
    dtype = np.int32 if file.name.endswith(".indices.npy") else np.float16
    if array.shape != shape or array.dtype != dtype:
        raise DataError(
            f"{file}: holds {array.dtype} {array.shape}, the manifest says "
            f"{np.dtype(dtype)} {shape}; the store is damaged, re-train the model"
        )
    return array


# --------------------------------------------------------------------------- combining


def merge_topk(
    predictions: Sequence[TopK], weights: Sequence[float] | None = None, k: int | None = None
) -> TopK:
    """Weighted average of several models' top-k predictions of the same rows.

    Each row's score for a class is ``sum_m w_m * s_m / sum_m w_m`` over the models, where a
    model that does not have the class in its top k counts as score 0. This is how a model's
    test predictions average its fold models, and how two members of a zoo blend.

    Parameters
    ----------
    predictions : sequence of TopK, each (n_samples, k_m)
    weights : sequence of float, optional
        One non-negative weight per model, not all 0; equal weights if None.
    k : int, optional
        Predictions kept per row; the largest k_m if None.

    Returns
    -------
    TopK
        (n_samples, k), best first; -1 / -inf pads rows with fewer than k candidates.
    """
    n = _check_aligned(predictions)
    w = np.ones(len(predictions)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(predictions),) or (w < 0).any() or w.sum() <= 0 or not np.isfinite(w).all():
        raise ConfigError(
            f"weights {list(w)} given for {len(predictions)} predictions; pass one finite "
            "weight >= 0 per prediction, not all 0"
        )
    keep = max(p.k for p in predictions) if k is None else k
    if keep < 1:
        raise ConfigError(f"k is {keep}; it must be >= 1")
    used = [(p, np.float32(wm / w.sum())) for p, wm in zip(predictions, w, strict=True) if wm > 0]
    out_indices = np.full((n, keep), -1, dtype=np.int32)
    out_scores = np.full((n, keep), -np.inf, dtype=np.float32)
    for start in range(0, n, _BLOCK_ROWS):
        block = slice(start, start + _BLOCK_ROWS)
        indices = np.concatenate([p.indices[block] for p, _ in used], axis=1)
        scores = np.concatenate(
            [np.where(p.indices[block] >= 0, p.scores[block] * wm, 0) for p, wm in used], axis=1
        )
        merged, sums = _sum_per_row(indices, scores)
        top_indices, top_scores = select_top_k(TopK(merged, sums), keep, sort=True)
        out_indices[block, : top_indices.shape[1]] = top_indices
        out_scores[block, : top_scores.shape[1]] = top_scores
    return TopK(out_indices, out_scores)


def union_candidates(predictions: Sequence[TopK], k: int | None = None) -> np.ndarray:
    """Per row, the union of each model's top-k class ids: the candidates a stacker scores.

    Parameters
    ----------
    predictions : sequence of TopK, each (n_samples, k_m)
    k : int, optional
        Candidates taken from each model (its k best); all of its k_m if None.

    Returns
    -------
    (n_samples, width) int32
        Each row's distinct candidate class ids, ascending, -1 padding at the end; ``width`` is
        the largest union of any row.
    """
    n = _check_aligned(predictions)
    if k is not None and k < 1:
        raise ConfigError(f"k is {k}; it must be >= 1")
    blocks = []
    for start in range(0, n, _BLOCK_ROWS):
        block = slice(start, start + _BLOCK_ROWS)
        parts = [select_top_k(TopK(p.indices[block], p.scores[block]), k)[0] for p in predictions]
        candidates = _distinct_per_row(np.concatenate(parts, axis=1))
        blocks.append(candidates[:, : int((candidates >= 0).sum(axis=1).max(initial=0))])
    width = max((b.shape[1] for b in blocks), default=0)
    out = np.full((n, width), -1, dtype=np.int32)
    for start, candidates in zip(range(0, n, _BLOCK_ROWS), blocks, strict=True):
        out[start : start + candidates.shape[0], : candidates.shape[1]] = candidates
    return out


def _check_aligned(predictions: Sequence[TopK]) -> int:
    if not predictions:
        raise ConfigError("no predictions given; pass at least one TopK")
    sizes = [p.n_samples for p in predictions]
    if len(set(sizes)) > 1:
        raise DataError(f"predictions have {sizes} rows; they must predict the same rows")
    return sizes[0]


def _distinct_per_row(indices: np.ndarray) -> np.ndarray:
    """(B, w) int32 -> each row's distinct class ids, ascending, -1 padding at the end.

    Repeats and padding become a sentinel above every class id and a second sort moves them to
    the end: two sorts cost less than left-aligning by cumulative counts.
    """
    ordered = np.sort(indices, axis=1)
    drop = ordered < 0
    drop[:, 1:] |= ordered[:, 1:] == ordered[:, :-1]
    sentinel = np.iinfo(np.int32).max
    ordered[drop] = sentinel
    ordered.sort(axis=1)
    ordered[ordered == sentinel] = -1
    return ordered


def _sum_per_row(indices: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's distinct class ids, ascending and left-aligned, with their scores summed.

    Parameters
    ----------
    indices : (B, w) int32, -1 = padding
    scores : (B, w) float32, 0 at padding

    Returns
    -------
    indices : (B, w) int32, -1 padding at the end
    scores : (B, w) float32 sums, -inf at padding
    """
    order = np.argsort(indices, axis=1)
    ordered, first, rows, slot = _left_align(np.take_along_axis(indices, order, axis=1))
    values = np.take_along_axis(scores, order, axis=1)
    # Padding sorts first in each row and carries 0, so a run's sum may run into the next row's
    # padding without changing it.
    sums = np.full(indices.shape, -np.inf, dtype=np.float32)
    starts = np.flatnonzero(first)
    if starts.size:
        sums[rows, slot] = np.add.reduceat(values.ravel(), starts)
    return ordered, sums


def _left_align(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Left-align each row's distinct ids of row-sorted (B, w) class ids.

    Returns ``(distinct, first, rows, slot)``: (B, w) int32 distinct ids, -1 padded; (B, w) bool,
    True at the first of each run of equal ids in ``ordered``; and, per run, its row and its
    column in ``distinct``.
    """
    first = ordered >= 0
    first[:, 1:] &= ordered[:, 1:] != ordered[:, :-1]
    rows, _ = np.nonzero(first)
    slot = (np.cumsum(first, axis=1) - 1)[first]
    out = np.full(ordered.shape, -1, dtype=np.int32)
    out[rows, slot] = ordered[first]
    return out, first, rows, slot
