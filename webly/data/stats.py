"""What a dataset holds, in numbers: rows, labels per row, class frequencies, features, frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from webly.core import Task
from webly.data.store import Dataset

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


@dataclass(frozen=True)
class DatasetStats:
    """Summary statistics of a dataset (all counts are rows unless named otherwise)."""

    rows: int
    n_classes: int
    task: Task
    labels_per_row: float
    rows_without_labels: int
    class_count_quantiles: dict[float, float]
    classes_without_rows: int
    classes_under_5_rows: int
    feature_groups: list[tuple[str, str, int, str]]
    frames_per_row: tuple[int, float, int] | None
    n_groups: int | None
    has_text: bool
    label_noise: dict[str, float] | None

    def lines(self) -> list[tuple[str, str]]:
        """(name, value) rows for display."""
        quantiles = " / ".join(f"{v:g}" for v in self.class_count_quantiles.values())
        out = [
            ("rows", f"{self.rows:,}"),
            ("classes", f"{self.n_classes:,} ({self.task})"),
            ("labels per row", f"{self.labels_per_row:.2f}"),
            ("rows without labels", f"{self.rows_without_labels:,}"),
            ("rows per class (min/5%/25%/50%/75%/95%/max)", quantiles),
            (
                "classes with no row / with < 5 rows",
                f"{self.classes_without_rows:,} / {self.classes_under_5_rows:,}",
            ),
        ]
        for name, level, dim, dtype in self.feature_groups:
            out.append((f"feature group {name!r}", f"{level} level, {dim} x {dtype}"))
        if self.frames_per_row is not None:
            lo, mean, hi = self.frames_per_row
            out.append(("frames per row (min/mean/max)", f"{lo} / {mean:.1f} / {hi}"))
        if self.n_groups is not None:
            out.append(
                ("groups", f"{self.n_groups:,} ({self.rows / max(self.n_groups, 1):.2f} rows each)")
            )
        out.append(("text metadata", "yes" if self.has_text else "no"))
        if self.label_noise is not None:
            noise = self.label_noise
            out.append(
                (
                    "label noise vs clean_labels",
                    f"{noise['missing']:.1%} of true labels missing, "
                    f"{noise['spurious']:.1%} of given labels spurious",
                )
            )
        return out


def dataset_stats(ds: Dataset) -> DatasetStats:
    """Compute `DatasetStats` in one pass over the label column and the frame offsets."""
    labels = ds.labels
    per_row = np.diff(labels.indptr)
    counts = np.bincount(labels.indices, minlength=ds.n_classes)
    frame_groups = [f for f in ds.layout.features if f.level == "frame"]
    frames = None
    if frame_groups:
        n = ds.n_frames()
        frames = (int(n.min()), float(n.mean()), int(n.max()))
    groups = ds.groups
    noise = None
    clean = ds.clean_labels
    if clean is not None:
        agree = labels.multiply(clean).sum()
        noise = {
            "missing": float(1 - agree / max(clean.nnz, 1)),
            "spurious": float(1 - agree / max(labels.nnz, 1)),
        }
    return DatasetStats(
        rows=len(ds),
        n_classes=ds.n_classes,
        task=ds.task,
        labels_per_row=float(per_row.mean()) if len(ds) else 0.0,
        rows_without_labels=int((per_row == 0).sum()),
        class_count_quantiles={q: float(np.quantile(counts, q)) for q in QUANTILES},
        classes_without_rows=int((counts == 0).sum()),
        classes_under_5_rows=int((counts < 5).sum()),
        feature_groups=[(f.name, f.level, f.dim, f.dtype) for f in ds.layout.features],
        frames_per_row=frames,
        n_groups=int(np.unique(groups).size) if groups is not None else None,
        has_text=ds.layout.has_text,
        label_noise=noise,
    )
