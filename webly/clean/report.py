"""`NoiseReport`: the clean stage's artifact, a verdict with one action a row, saved atomically.

A report is a folder::

    manifest.json       format version, method and options, task, shape, action rules, counts
    rows.parquet        per row: score, noisy, action, predicted, predicted_prob, and the label
                        lists labels, removed, added (multi-label also spurious, missing)
    classes.parquet     per class: noise_rate (and threshold, for methods that have one)
    confusions.parquet  top (given, true, count) pairs
    transition.parquet  non-zero (given, true, share) entries of the dense transition, if any

It is built in a hidden folder beside the destination and renamed into place, so an
interrupted save leaves the old report or none. No pickle: Parquet tables and JSON only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from webly._fs import atomic_output
from webly.clean.actions import ACTIONS, DROP, ActionRules, choose_actions
from webly.clean.verdict import Confusion, NoiseVerdict
from webly.core import Task
from webly.data.store import MANIFEST, read_manifest
from webly.errors import DataError

FORMAT = "webly-noise-report"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class NoiseReport:
    """A verdict and the action chosen for each row; build it with `from_verdict`.

    Attributes
    ----------
    method, task, params : as in `NoiseVerdict`
    rules : ActionRules
    row_score : (n_samples,) float32
    is_noisy : (n_samples,) bool
    action : (n_samples,) uint8, index into `ACTIONS`
    predicted : (n_samples,) int32
    predicted_prob : (n_samples,) float32
    labels : (n_samples, n_classes) float32 csr_matrix, the given labels
    removed, added : (n_samples, n_classes) bool csr_matrix, label edits of the repairs
    class_noise_rate : (n_classes,) float64
    class_thresholds : (n_classes,) float64, or None
    confusions : tuple of (given, true, estimated rows)
    transition : (n_classes, n_classes) float64, or None
    suspect_spurious, suspect_missing : (n_samples, n_classes) bool csr_matrix, or None
    """

    method: str
    task: Task
    params: dict[str, Any]
    rules: ActionRules
    row_score: np.ndarray
    is_noisy: np.ndarray
    action: np.ndarray
    predicted: np.ndarray
    predicted_prob: np.ndarray
    labels: sp.csr_matrix
    removed: sp.csr_matrix
    added: sp.csr_matrix
    class_noise_rate: np.ndarray
    class_thresholds: np.ndarray | None
    confusions: tuple[Confusion, ...]
    transition: np.ndarray | None
    suspect_spurious: sp.csr_matrix | None
    suspect_missing: sp.csr_matrix | None

    @classmethod
    def from_verdict(cls, verdict: NoiseVerdict, rules: ActionRules | None = None) -> NoiseReport:
        """Choose each row's action by ``rules`` (the defaults of `ActionRules` if None)."""
        rules = rules or ActionRules()
        actions = choose_actions(verdict, rules)
        return cls(
            method=verdict.method,
            task=verdict.task,
            params=dict(verdict.params),
            rules=rules,
            row_score=verdict.row_score,
            is_noisy=verdict.is_noisy,
            action=actions.codes,
            predicted=verdict.predicted,
            predicted_prob=verdict.predicted_prob,
            labels=verdict.labels,
            removed=actions.removed,
            added=actions.added,
            class_noise_rate=verdict.class_noise_rate,
            class_thresholds=verdict.class_thresholds,
            confusions=verdict.confusions,
            transition=verdict.transition,
            suspect_spurious=verdict.suspect_spurious,
            suspect_missing=verdict.suspect_missing,
        )

    @property
    def n_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.labels.shape[1])

    def action_names(self) -> np.ndarray:
        """(n_samples,) str action of each row."""
        return np.asarray(ACTIONS)[self.action]

    def counts(self) -> dict[str, int]:
        """Rows per action, every action listed."""
        found = np.bincount(self.action, minlength=len(ACTIONS))
        return {name: int(found[i]) for i, name in enumerate(ACTIONS)}

    def sample_weights(self) -> np.ndarray:
        """(n_samples,) float32 loss weight of each row for `webly.train.fit(sample_weight=...)`:
        0 dropped, ``rules.down_weight`` down-weighted, 1 otherwise."""
        return self.rules.weights()[self.action]

    def kept_rows(self) -> np.ndarray:
        """(n_kept,) int64 rows not dropped, ascending (for ``Dataset.subset``)."""
        return np.flatnonzero(self.action != DROP)

    def cleaned_labels(self) -> sp.csr_matrix:
        """(n_samples, n_classes) float32 csr_matrix: the given labels with the repairs applied
        and dropped rows emptied (their sample weight is 0; or train on `kept_rows`)."""
        given = self.labels.astype(bool)
        edited = (given > self.removed) + self.added  # set difference, then union
        keep = sp.diags((self.action != DROP).astype(np.float32))
        cleaned = sp.csr_matrix(keep @ edited.astype(np.float32))
        cleaned.eliminate_zeros()
        cleaned.sort_indices()
        return cleaned

    # ---- storage

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the report folder at ``path`` atomically; returns ``path``."""
        path = Path(path)
        columns: dict[str, pa.Array] = {
            "score": pa.array(self.row_score, pa.float32()),
            "noisy": pa.array(self.is_noisy, pa.bool_()),
            "action": pa.DictionaryArray.from_arrays(
                pa.array(self.action, pa.uint8()), pa.array(ACTIONS)
            ),
            "predicted": pa.array(self.predicted, pa.int32()),
            "predicted_prob": pa.array(self.predicted_prob, pa.float32()),
            "labels": _list_column(self.labels),
            "removed": _list_column(self.removed),
            "added": _list_column(self.added),
        }
        if self.suspect_spurious is not None and self.suspect_missing is not None:
            columns["spurious"] = _list_column(self.suspect_spurious)
            columns["missing"] = _list_column(self.suspect_missing)
        classes = {"noise_rate": pa.array(self.class_noise_rate, pa.float64())}
        if self.class_thresholds is not None:
            classes["threshold"] = pa.array(self.class_thresholds, pa.float64())
        pairs = np.array(self.confusions, dtype=np.float64).reshape(-1, 3)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "task": self.task,
            "params": self.params,
            "n_samples": self.n_samples,
            "n_classes": self.n_classes,
            "rules": asdict(self.rules),
            "counts": self.counts(),
            "transition": self.transition is not None,
        }
        with atomic_output(path, overwrite) as tmp:
            pq.write_table(pa.table(columns), tmp / "rows.parquet")
            pq.write_table(pa.table(classes), tmp / "classes.parquet")
            confusions = _pair_table(pairs[:, 0], pairs[:, 1], pairs[:, 2], "count")
            pq.write_table(confusions, tmp / "confusions.parquet")
            if self.transition is not None:
                rows, cols = np.nonzero(self.transition)
                table = _pair_table(rows, cols, self.transition[rows, cols], "share")
                pq.write_table(table, tmp / "transition.parquet")
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> NoiseReport:
        """Read a report written by `save`."""
        path = Path(path)
        manifest = read_manifest(
            path, FORMAT, FORMAT_VERSION, "a noise report",
            "save one with NoiseReport.save", "save the report again",
        )  # fmt: skip
        try:
            return cls._read(path, manifest)
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowException) as err:
            raise DataError(
                f"{path}: unreadable noise report ({err}); save the report again"
            ) from None

    @classmethod
    def _read(cls, path: Path, manifest: dict[str, Any]) -> NoiseReport:
        shape = (int(manifest["n_samples"]), int(manifest["n_classes"]))
        rows = pq.read_table(path / "rows.parquet")
        classes = pq.read_table(path / "classes.parquet")
        confusions = pq.read_table(path / "confusions.parquet")
        if rows.num_rows != shape[0] or classes.num_rows != shape[1]:
            raise ValueError(f"tables hold {rows.num_rows} rows and {classes.num_rows} classes")
        action = rows.column("action").combine_chunks()
        if list(action.dictionary.to_pylist()) != list(ACTIONS):
            raise ValueError(f"actions {action.dictionary.to_pylist()} are not {list(ACTIONS)}")
        transition = None
        if manifest["transition"]:
            table = pq.read_table(path / "transition.parquet")
            transition = np.zeros(shape[1:] * 2, dtype=np.float64)
            transition[_numpy(table, "given"), _numpy(table, "true")] = _numpy(table, "share")
        multilabel = "spurious" in rows.column_names
        return cls(
            method=str(manifest["method"]),
            task=Task.parse(manifest["task"]),
            params=dict(manifest["params"]),
            rules=ActionRules(**manifest["rules"]),
            row_score=_numpy(rows, "score"),
            is_noisy=_numpy(rows, "noisy").astype(bool),
            action=action.indices.to_numpy().astype(np.uint8),
            predicted=_numpy(rows, "predicted"),
            predicted_prob=_numpy(rows, "predicted_prob"),
            labels=_csr_column(rows, "labels", shape).astype(np.float32),
            removed=_csr_column(rows, "removed", shape),
            added=_csr_column(rows, "added", shape),
            class_noise_rate=_numpy(classes, "noise_rate"),
            class_thresholds=(
                _numpy(classes, "threshold") if "threshold" in classes.column_names else None
            ),
            confusions=tuple(
                (int(g), int(t), float(c))
                for g, t, c in zip(
                    _numpy(confusions, "given"),
                    _numpy(confusions, "true"),
                    _numpy(confusions, "count"),
                    strict=True,
                )
            ),
            transition=transition,
            suspect_spurious=_csr_column(rows, "spurious", shape) if multilabel else None,
            suspect_missing=_csr_column(rows, "missing", shape) if multilabel else None,
        )


def _list_column(matrix: sp.csr_matrix) -> pa.ListArray:
    """A CSR matrix's rows as a list<int32> column of class ids."""
    csr = sp.csr_matrix(matrix)
    csr.sort_indices()
    offsets = pa.array(csr.indptr.astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(csr.indices.astype(np.int32)))


def _csr_column(table: pa.Table, name: str, shape: tuple[int, int]) -> sp.csr_matrix:
    """A list<int32> column back to a bool CSR matrix of ``shape``."""
    column = table.column(name).combine_chunks()
    offsets = column.offsets.to_numpy()
    indices = column.values.to_numpy()[offsets[0] : offsets[-1]]
    data = np.ones(indices.size, dtype=bool)
    return sp.csr_matrix((data, indices, offsets - offsets[0]), shape=shape)


def _pair_table(given: np.ndarray, true: np.ndarray, value: np.ndarray, name: str) -> pa.Table:
    return pa.table(
        {
            "given": pa.array(np.asarray(given, dtype=np.int32)),
            "true": pa.array(np.asarray(true, dtype=np.int32)),
            name: pa.array(np.asarray(value, dtype=np.float64)),
        }
    )


def _numpy(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()
