"""Label noise found against the truth, for data whose true labels are known (the generated
benchmarks keep them as ``clean_labels``): each share of noisy labels the clean stage's verdict
found, beside the same share measured on the truth, and a warning when the two are far apart.

Every share is taken over the labels the verdict judged (``NoiseReport.labels``: the given
labels for round 0), so found and true are the same measure of the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from webly.clean.report import NoiseReport
from webly.metrics.noise import DetectionScores, detection_scores, noisy_entries
from webly.report.blocks import Block, Chart, Note
from webly.report.plots import found_and_true

FAR = 2.0  # found under half or over twice the truth is called far from it
NOTICEABLE = 0.01  # shares under 1% on both sides are never called far apart


@dataclass(frozen=True)
class NoiseShare:
    """One measure of how noisy the labels are: the share the verdict found and the true one,
    both in [0, 1]."""

    measure: str
    found: float
    true: float

    @property
    def far(self) -> bool:
        """Whether found and true are more than a factor `FAR` apart (and not both tiny)."""
        if max(self.found, self.true) < NOTICEABLE:
            return False
        return self.found * FAR < self.true or self.found > self.true * FAR


def true_class_noise(labels: sp.csr_matrix, clean_labels: sp.csr_matrix) -> np.ndarray:
    """(n_classes,) float64: the share of each class's labels in ``labels`` (n_samples,
    n_classes) that the true ``clean_labels`` (same shape) do not hold; 0 for a class without
    labels. The true counterpart of `NoiseReport.class_noise_rate`."""
    spurious, _ = noisy_entries(labels, clean_labels)
    spurious.eliminate_zeros()
    n_classes = labels.shape[1]
    given = np.bincount(sp.csr_matrix(labels).indices, minlength=n_classes)
    wrong = np.bincount(spurious.indices, minlength=n_classes)
    return np.divide(wrong, given, out=np.zeros(n_classes), where=given > 0)


@dataclass(frozen=True)
class NoiseTruth:
    """The verdict against the truth: its `NoiseShare` figures and how well the rows it flagged
    match the truly noisy ones."""

    shares: list[NoiseShare]
    detection: DetectionScores


def noise_against_truth(report: NoiseReport, clean_labels: sp.csr_matrix) -> NoiseTruth:
    """Found and true shares of: rows with a wrong label; a class's wrong labels, averaged over
    the labelled classes (the clean stage's "noise estimate"); and, multi-label, given labels
    that are wrong (a share of the given labels) and true labels that are missing (a share of
    the true labels); with the flagged rows scored against the truly noisy ones.

    ``clean_labels``: (n_samples, n_classes) 0/1, the true labels of the report's rows.
    """
    judged = report.labels
    spurious, missing = noisy_entries(judged, clean_labels)
    spurious.eliminate_zeros()
    missing.eliminate_zeros()
    wrong_rows = (np.diff(spurious.indptr) + np.diff(missing.indptr)) > 0
    labelled = np.bincount(judged.indices, minlength=report.n_classes) > 0
    true_rates = true_class_noise(judged, clean_labels)
    shares = [
        NoiseShare("rows with a wrong label", float(report.is_noisy.mean()),
                   float(wrong_rows.mean())),
        NoiseShare(
            "a class's labels that are wrong (mean over classes: the noise estimate)",
            float(report.class_noise_rate[labelled].mean()) if labelled.any() else 0.0,
            float(true_rates[labelled].mean()) if labelled.any() else 0.0,
        ),
    ]  # fmt: skip
    flagged_spurious, flagged_missing = report.suspect_spurious, report.suspect_missing
    if flagged_spurious is not None and flagged_missing is not None:
        given, true = max(judged.nnz, 1), max(clean_labels.nnz, 1)
        shares += [
            NoiseShare("given labels that are wrong", flagged_spurious.nnz / given,
                       spurious.nnz / given),
            NoiseShare("true labels that are missing", flagged_missing.nnz / true,
                       missing.nnz / true),
        ]  # fmt: skip
    return NoiseTruth(shares, detection_scores(report.is_noisy, wrong_rows))


def truth_blocks(report: NoiseReport, clean_labels: sp.csr_matrix) -> list[Block]:
    """The found-against-true chart and, when a share is far from the truth, a warning."""
    truth = noise_against_truth(report, clean_labels)
    scores = truth.detection
    detection = (
        f"The {scores.n_predicted:,} rows it flagged hold {scores.n_correct:,} of the "
        f"{scores.n_true:,} truly noisy ones: precision {scores.precision:.2f}, recall "
        f"{scores.recall:.2f}."
    )
    blocks: list[Block] = [
        Chart(
            "Noise found against the truth",
            found_and_true(
                [s.measure for s in truth.shares],
                np.array([s.found for s in truth.shares]),
                np.array([s.true for s in truth.shares]),
            ),
            f"What the clean stage's verdict ({report.method}) found in the labels it judged "
            f"(orange) and the truth from the data's clean labels (grey). {detection}",
        )
    ]
    far = [s for s in truth.shares if s.far]
    if far:
        under = sum(s.found < s.true for s in far) * 2 >= len(far)
        figures = "; ".join(f"{s.measure}: found {s.found:.1%}, true {s.true:.1%}" for s in far)
        bound = "a lower" if under else "an upper"
        blocks.append(
            Note(
                f"The label-noise estimate is far from the truth ({figures}). {detection} On "
                f"data like this, read the clean stage's noise figures as {bound} bound.",
                warning=True,
            )
        )
    return blocks
