"""soft_targets: top-k teacher predictions to sparse targets; families and their teachers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from webly.core import Task, TopK
from webly.distill.soft_labels import families, family_teacher, sharpen, soft_targets
from webly.ensemble.members import open_members
from webly.errors import ConfigError, DataError
from webly.predictions import PredictionWriter

TEACHER = TopK(
    np.array([[2, 0, -1], [1, 3, 0]], dtype=np.int32),
    np.array([[0.6, 0.2, -np.inf], [0.5, 0.0004, 0.3]], dtype=np.float32),
)


def test_multilabel_targets_keep_scores_and_drop_tiny_ones() -> None:
    targets = soft_targets(TEACHER, 4, "multilabel")
    expected = np.array([[0.2, 0, 0.6, 0], [0.3, 0.5, 0, 0]], dtype=np.float32)
    np.testing.assert_allclose(targets.toarray(), expected)
    assert targets.nnz == 4  # padding and the 0.0004 score are not stored


def test_multiclass_targets_are_distributions_over_the_kept_classes() -> None:
    targets = soft_targets(TEACHER, 4, "multiclass", k=1).toarray()
    np.testing.assert_allclose(targets, [[0, 0, 1, 0], [0, 1, 0, 0]])
    targets = soft_targets(TEACHER, 4, "multiclass").toarray()
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(targets[0], [0.25, 0, 0.75, 0], rtol=1e-6)


def test_a_teacher_is_sharpened_below_temperature_1_and_softened_above() -> None:
    teacher = TopK(np.array([[2, 0, -1]]), np.array([[0.9, 0.3, 0.0]], dtype=np.float32))
    same = sharpen(teacher, 1.0, Task.MULTILABEL)
    assert same is teacher
    sharp = sharpen(teacher, 0.5, Task.MULTILABEL)  # log-odds doubled: 0.9 -> 81/82
    np.testing.assert_allclose(sharp.scores[0, :2], [81 / 82, 9 / 58], rtol=1e-5)
    assert sharp.scores[0, 2] == teacher.scores[0, 2] and (sharp.indices == teacher.indices).all()
    soft = sharpen(teacher, 2.0, Task.MULTILABEL)
    assert 0.5 < soft.scores[0, 0] < 0.9 and 0.3 < soft.scores[0, 1] < 0.5
    # multi-class: p ** (1 / T), a distribution again once soft_targets normalises it
    targets = soft_targets(sharpen(teacher, 0.5, Task.MULTICLASS), 3, Task.MULTICLASS)
    np.testing.assert_allclose(targets.toarray(), [[0.09 / 0.9, 0.0, 0.81 / 0.9]], rtol=1e-5)


def test_bad_teachers_are_refused() -> None:
    with pytest.raises(DataError, match="predicts class 3 but the dataset has 3 classes"):
        soft_targets(TEACHER, 3, "multilabel")
    logits = TopK(TEACHER.indices, np.where(TEACHER.indices >= 0, 4.0, -np.inf))
    with pytest.raises(DataError, match="not logits"):
        soft_targets(logits, 4, "multilabel")
    with pytest.raises(ConfigError, match="task is 'ranking'; use multilabel or multiclass"):
        soft_targets(TEACHER, 4, "ranking")


def test_families_group_members_by_model_name(tmp_path: Path) -> None:
    paths = {}
    for member, name, value in (("a", "mlp", 0.2), ("b", "dbof", 0.9), ("c", "mlp", 0.6)):
        paths[member] = tmp_path / member
        with PredictionWriter(
            paths[member], n_rows={"oof": 2}, n_classes=3, model={"name": name}
        ) as writer:
            writer.write("oof", np.arange(2), np.full((2, 3), value, dtype=np.float32))
            writer.commit()
    members = open_members(paths)
    assert families(members) == {"mlp": ["a", "c"], "dbof": ["b"]}
    teacher = family_teacher(members, ["a", "c"])
    np.testing.assert_allclose(np.sort(teacher.scores, axis=1), 0.4, atol=1e-3)
