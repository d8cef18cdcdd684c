"""Teaching unlabeled rows: every row with the teacher's soft targets, or the confident ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.distill.test_pseudo import SCORES, _store
from webly.distill.unlabeled import teach_unlabeled
from webly.errors import DataError


def test_every_row_is_taught_the_teachers_top_k_without_a_threshold(tmp_path: Path) -> None:
    data = _store(tmp_path / "unlabeled", 10, 0)  # 5 classes, multi-class
    rows = np.array([7, 2, 5])
    pseudo = teach_unlabeled(SCORES, data, rows, k=2, min_score=0.2, alpha=0.5, t1=1, t2=3)
    assert pseudo.rows.tolist() == [7, 2, 5] and pseudo.dataset is data
    np.testing.assert_allclose(  # each row's top 2 above 0.2, a distribution over them
        pseudo.targets.toarray(),
        [[0, 0, 1, 0, 0], [0, 0.5 / 0.95, 0, 0.45 / 0.95, 0], [0, 0.8 / 1.4, 0, 0.6 / 1.4, 0]],
        rtol=1e-6,
    )
    assert [pseudo.weight(t) for t in (1, 2, 3)] == [0.0, 0.25, 0.5]


def test_a_threshold_keeps_the_confident_rows_soft_or_hard(tmp_path: Path) -> None:
    data = _store(tmp_path / "unlabeled", 10, 0)
    rows = np.array([4, 8, 9])
    soft = teach_unlabeled(SCORES, data, rows, threshold=0.85)  # top-1 >= 0.85: row 0 only
    assert soft.rows.tolist() == [4]
    np.testing.assert_allclose(soft.targets.toarray(), [[0.1, 0, 0.9, 0, 0]], rtol=1e-6)
    hard = teach_unlabeled(SCORES, data, rows, threshold=0.55, soft=False)
    assert hard.rows.tolist() == [4, 9]
    assert hard.targets.toarray().tolist() == [[0, 0, 1, 0, 0], [0, 1, 0, 0, 0]]


def test_mismatched_rows_and_hard_targets_without_a_threshold_are_refused(
    tmp_path: Path,
) -> None:
    data = _store(tmp_path / "unlabeled", 10, 0)
    with pytest.raises(DataError, match="teacher predicts 3 rows but 2 unlabeled rows"):
        teach_unlabeled(SCORES, data, np.array([0, 1]))
    with pytest.raises(DataError, match="need a threshold"):
        teach_unlabeled(SCORES, data, np.arange(3), soft=False)
