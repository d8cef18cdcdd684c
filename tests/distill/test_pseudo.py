"""Pseudo-labels: the Cdiscount schedule, confident selection, and fit with pseudo rows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from tests.conftest import random_batch
from webly.core import TopK
from webly.data import Dataset, DatasetWriter, FeatureSpec, Layout
from webly.distill.pseudo import PseudoLabels, alpha_schedule, select_pseudo_labels
from webly.errors import ConfigError, DataError
from webly.models import create_model
from webly.train import EpochStats, TrainConfig, fit

GROUPS = ("rgb", "audio")
CONFIG = TrainConfig(epochs=4, batch_size=16, lr=1e-2, mixup_alpha=0.4, seed=1)
SCORES = TopK(
    np.array([[2, 0, -1], [1, 3, 0], [3, 2, 1]], dtype=np.int32),
    np.array([[0.9, 0.1, -np.inf], [0.5, 0.45, 0.05], [0.6, 0.3, 0.8]], dtype=np.float32),
)


def test_schedule_is_zero_then_linear_then_flat() -> None:
    assert [alpha_schedule(t, 2, 4, 3.0) for t in (0, 1, 2, 3, 4, 5, 9)] == [
        0.0, 0.0, 0.0, 1.5, 3.0, 3.0, 3.0,
    ]  # fmt: skip
    assert alpha_schedule(2.5, 2, 4, 1.0) == pytest.approx(0.25)
    assert [alpha_schedule(t, 3, 3, 0.5) for t in (2.9, 3, 4)] == [0.0, 0.5, 0.5]
    with pytest.raises(ConfigError, match="t1=4, t2=2"):
        alpha_schedule(1, 4, 2, 1.0)
    with pytest.raises(ConfigError, match="alpha_f=-1"):
        alpha_schedule(1, 0, 2, -1.0)


def test_multiclass_selection_thresholds_the_top_probability() -> None:
    rows, targets = select_pseudo_labels(SCORES, "multiclass", 0.7, 4)
    assert rows.tolist() == [0, 2]  # row 1's best is 0.5
    assert targets.toarray().tolist() == [[0, 0, 1, 0], [0, 1, 0, 0]]  # row 2's best is class 1
    rows, soft = select_pseudo_labels(SCORES, "multiclass", 0.7, 4, soft=True)
    np.testing.assert_allclose(soft.toarray()[1], [0, 0.8 / 1.7, 0.3 / 1.7, 0.6 / 1.7], rtol=1e-6)
    assert select_pseudo_labels(SCORES, "multiclass", 0.95, 4)[0].size == 0


def test_multilabel_selection_keeps_every_confident_class() -> None:
    rows, targets = select_pseudo_labels(SCORES, "multilabel", 0.45, 4)
    assert rows.tolist() == [0, 1, 2]
    assert targets.toarray().tolist() == [[0, 0, 1, 0], [0, 1, 0, 1], [0, 1, 0, 1]]
    rows, soft = select_pseudo_labels(SCORES, "multilabel", 0.85, 4, soft=True)
    assert rows.tolist() == [0]
    np.testing.assert_allclose(soft.toarray(), [[0.1, 0, 0.9, 0]], rtol=1e-6)


def test_bad_selections_are_refused() -> None:
    with pytest.raises(ConfigError, match="threshold is 0"):
        select_pseudo_labels(SCORES, "multiclass", 0.0, 4)
    with pytest.raises(DataError, match="predict class 3 but the dataset has 3"):
        select_pseudo_labels(SCORES, "multiclass", 0.5, 3)
    logits = TopK(SCORES.indices, SCORES.scores * 5)
    with pytest.raises(DataError, match="leave \\[0, 1\\]"):
        select_pseudo_labels(logits, "multilabel", 0.5, 4)


# --------------------------------------------------------------------------- training


def _store(path: Path, n: int, seed: int, frames: bool = False) -> Dataset:
    level = "frame" if frames else "video"
    features = tuple(FeatureSpec(g, 4, "uint8", level=level) for g in GROUPS)  # type: ignore[arg-type]
    layout = Layout(features=features, n_classes=5, task="multiclass")
    with DatasetWriter(path, layout) as writer:
        writer.write_batch(random_batch(np.random.default_rng(seed), layout, n, max_frames=6))
    return Dataset.open(path)


def _model(frames: bool = False) -> Any:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        if frames:
            return create_model("dbof", 5, {g: 4 for g in GROUPS}, cluster_size=8, hidden=8)
        return create_model("mlp", 5, {g: 4 for g in GROUPS}, hidden=[16], dropout=0.2)


def _pseudo(unlabeled: Dataset, **schedule: float) -> PseudoLabels:
    rows = np.arange(0, len(unlabeled), 2)
    classes = np.random.default_rng(7).integers(0, 5, size=rows.size)
    targets = sp.csr_matrix((np.ones(rows.size), (np.arange(rows.size), classes)), (rows.size, 5))
    return PseudoLabels(unlabeled, rows, targets, **{"t1": 2, "t2": 3, "alpha_f": 1.0, **schedule})


def _fit(train: Dataset, workdir: Path, pseudo: PseudoLabels | None, **kwargs: Any) -> list[Any]:
    """Each epoch's weights."""
    model, snapshots = _model(), []

    def keep(_: EpochStats) -> None:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    fit(model, train, None, CONFIG, GROUPS, workdir, pseudo=pseudo, on_epoch_end=keep, **kwargs)
    return snapshots


class Kill(Exception):
    """Simulates a run killed after an epoch's checkpoint."""


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Dataset, Dataset]:
    return _store(tmp_path / "train", 64, 0), _store(tmp_path / "unlabeled", 40, 1)


def test_pseudo_rows_change_the_weights_only_from_t1_on(
    tmp_path: Path, stores: tuple[Dataset, Dataset]
) -> None:
    train, unlabeled = stores
    plain = _fit(train, tmp_path / "plain", None)
    pseudo = _fit(train, tmp_path / "pseudo", _pseudo(unlabeled))
    # alpha(1) = alpha(2) = 0: the same epochs; alpha(3) = 1: other weights
    assert _same(plain[0], pseudo[0]) and _same(plain[1], pseudo[1])
    assert not _same(plain[2], pseudo[2])
    weightless = _fit(train, tmp_path / "zero", _pseudo(unlabeled, alpha_f=0.0))
    assert _same(plain[-1], weightless[-1])


def test_a_killed_pseudo_run_resumes_to_the_same_weights(
    tmp_path: Path, stores: tuple[Dataset, Dataset]
) -> None:
    train, unlabeled = stores
    whole = _fit(train, tmp_path / "whole", _pseudo(unlabeled))

    def kill(stats: EpochStats) -> None:
        if stats.epoch == 3:
            raise Kill

    with pytest.raises(Kill):
        fit(_model(), train, None, CONFIG, GROUPS, tmp_path / "b", on_epoch_end=kill,
            pseudo=_pseudo(unlabeled))  # fmt: skip
    resumed = _fit(train, tmp_path / "b", _pseudo(unlabeled))
    assert len(resumed) == 1 and _same(whole[-1], resumed[-1])
    # the checkpoint knows the pseudo rows: other settings, or none, do not resume it
    for other in (_pseudo(unlabeled, alpha_f=2.0), None):
        with pytest.raises(ConfigError, match="other training settings"):
            _fit(train, tmp_path / "b", other)


def test_frame_models_train_on_pseudo_rows_of_other_lengths(tmp_path: Path) -> None:
    train = _store(tmp_path / "train", 24, 0, frames=True)
    unlabeled = _store(tmp_path / "unlabeled", 12, 1, frames=True)
    config = replace(CONFIG, epochs=2, batch_size=8, frame_sampling="cosine", max_frames=5)
    result = fit(_model(frames=True), train, None, config, GROUPS, tmp_path / "w",
                 pseudo=_pseudo(unlabeled, t1=0, t2=0))  # fmt: skip
    assert all(np.isfinite(s.loss) for s in result.history)


def test_bad_pseudo_labels_are_refused(tmp_path: Path, stores: tuple[Dataset, Dataset]) -> None:
    train, unlabeled = stores
    with pytest.raises(DataError, match=r"targets are \(20, 5\); they must be \(3, 5\)"):
        PseudoLabels(unlabeled, np.arange(3), _pseudo(unlabeled).targets, 1, 2, 1.0)
    with pytest.raises(DataError, match=r"rows range over 0\.\.40"):
        PseudoLabels(unlabeled, np.array([0, 40]), sp.csr_matrix((2, 5)), 1, 2, 1.0)
    other = _store(tmp_path / "other", 10, 2)
    wrong = Layout(features=other.layout.features, n_classes=6, task="multiclass")
    with DatasetWriter(tmp_path / "six", wrong) as writer:
        writer.write_batch(random_batch(np.random.default_rng(0), wrong, 4))
    six = Dataset.open(tmp_path / "six")
    bad = PseudoLabels(six, np.arange(2), sp.csr_matrix((2, 6)), 1, 2, 1.0)
    with pytest.raises(DataError, match="pseudo-labeled data has 6 multiclass classes"):
        fit(_model(), train, None, CONFIG, GROUPS, tmp_path / "w", pseudo=bad)
