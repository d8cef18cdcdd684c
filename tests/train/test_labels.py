"""Labels and sample weights replacing the store's: `fit(labels=, valid_labels=)` trains as on a
store holding those labels, checkpoints record them; `fit_oof`/`fit_full` slice them per fold,
leave weight-0 rows out, validate under the same labels, and hash them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import webly.train.fold_model as fold_model
from tests.train.test_loop import FULL, Kill, _equal_weights, _kill_after, _mlp, _toy_store
from tests.train.test_oof import N_CLASSES, _store, _zoo
from webly.data import Batch, Dataset, DatasetWriter, FeatureSpec, Layout
from webly.errors import ConfigError, DataError
from webly.predictions import Predictions
from webly.train import fit
from webly.train.loop import hard_labels
from webly.train.oof import fit_full, fit_oof

GROUPS = ("rgb", "audio")


def _with_labels(ds: Dataset, labels: sp.csr_matrix, path: Path) -> Dataset:
    """A copy of ``ds`` (features and ids) whose stored labels are ``labels`` (0/1)."""
    rows = np.arange(len(ds))
    layout = Layout(
        features=(FeatureSpec("rgb", 8), FeatureSpec("audio", 4)), n_classes=ds.n_classes
    )
    with DatasetWriter(path, layout) as writer:
        writer.write_batch(
            Batch(
                list(ds.ids),
                [labels[i].indices for i in rows],
                features={g: ds.features(rows, (g,)) for g in GROUPS},
            )
        )
    return Dataset.open(path)


def _shuffled_labels(ds: Dataset, seed: int) -> sp.csr_matrix:
    """Other 0/1 labels of the same shape: each row gets a random row's labels."""
    rng = np.random.default_rng(seed)
    return sp.csr_matrix(ds.labels[rng.permutation(len(ds))])


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Dataset, Dataset]:
    return _toy_store(tmp_path / "train", 160, 0), _toy_store(tmp_path / "valid", 80, 1)


def test_labels_train_as_a_store_holding_them(tmp_path: Path, toy: Any) -> None:
    train, valid = toy
    labels, valid_labels = _shuffled_labels(train, 1), _shuffled_labels(valid, 2)
    config = replace(FULL, epochs=2)
    given = _mlp()
    result = fit(given, train, valid, config, GROUPS, tmp_path / "given",
                 labels=labels, valid_labels=valid_labels)  # fmt: skip
    stored = _mlp()
    expected = fit(
        stored, _with_labels(train, labels, tmp_path / "t2"),
        _with_labels(valid, valid_labels, tmp_path / "v2"), config, GROUPS, tmp_path / "stored",
    )  # fmt: skip
    assert _equal_weights(given, stored)
    assert result.history == [
        replace(s, seconds=r.seconds, samples_per_s=r.samples_per_s)
        for s, r in zip(expected.history, result.history, strict=True)
    ]
    plain = _mlp()
    fit(plain, train, valid, config, GROUPS, tmp_path / "plain")
    assert not _equal_weights(plain, given)


def test_soft_labels_train_and_differ_from_their_hard_version(tmp_path: Path, toy: Any) -> None:
    train = toy[0]
    soft = sp.csr_matrix(train.labels * np.float32(0.7))
    config = replace(FULL, epochs=1)
    models = [_mlp(), _mlp()]
    for model, labels, name in zip(models, (soft, hard_labels(soft)), "ab", strict=True):
        result = fit(model, train, None, config, GROUPS, tmp_path / name, labels=labels)
        assert np.isfinite(result.history[0].loss)
    assert not _equal_weights(*models)
    np.testing.assert_array_equal(hard_labels(soft).toarray(), train.labels.toarray())


def test_resume_under_other_labels_is_refused(tmp_path: Path, toy: Any) -> None:
    train = toy[0]
    labels = _shuffled_labels(train, 1)
    with pytest.raises(Kill):
        fit(_mlp(), train, None, FULL, GROUPS, tmp_path / "w", labels=labels,
            on_epoch_end=_kill_after(1))  # fmt: skip
    for other in ({"labels": _shuffled_labels(train, 2)}, {}):
        with pytest.raises(ConfigError, match="other training settings"):
            fit(_mlp(), train, None, FULL, GROUPS, tmp_path / "w", **other)
    resumed, whole = _mlp(), _mlp()
    fit(resumed, train, None, FULL, GROUPS, tmp_path / "w", labels=labels)
    fit(whole, train, None, FULL, GROUPS, tmp_path / "whole", labels=labels)
    assert _equal_weights(resumed, whole)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("few rows", r"^labels have shape \(3, 6\); they must be \(160, 6\)"),
        ("scaled", r"^labels hold 1\.5, outside \[0, 1\]; pass 0/1 labels or soft targets"),
        ("nan", r"^labels hold nan, outside \[0, 1\]"),
    ],
)
def test_bad_labels_are_one_line(tmp_path: Path, toy: Any, case: str, message: str) -> None:
    train = toy[0]
    labels: Any = sp.csr_matrix((3, N_CLASSES))
    if case == "scaled":
        labels = sp.csr_matrix(train.labels * np.float32(1.5))
    elif case == "nan":
        labels = train.labels.toarray()
        labels[4, 2] = np.nan
    with pytest.raises(DataError, match=message) as err:
        fit(_mlp(), train, None, FULL, GROUPS, tmp_path / "w", labels=labels)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "w").exists()


def test_valid_labels_need_valid_data_and_weights_must_be_finite(tmp_path: Path, toy: Any) -> None:
    train = toy[0]
    with pytest.raises(ConfigError, match="valid_labels given without valid data"):
        fit(_mlp(), train, None, FULL, GROUPS, tmp_path / "w", valid_labels=train.labels)
    weights = np.ones(len(train))
    weights[3] = -1
    with pytest.raises(DataError, match=r"sample_weight holds -1\.0; pass finite weights >= 0"):
        fit(_mlp(), train, None, FULL, GROUPS, tmp_path / "w", sample_weight=weights)


# --------------------------------------------------------------------------- fit_oof / fit_full


@pytest.fixture
def data(tmp_path: Path) -> tuple[Dataset, Dataset]:
    return _store(tmp_path / "train", 150, 0), _store(tmp_path / "test", 40, 1)


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    real = fold_model.fit

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(fold_model, "fit", spy)
    return calls


def test_fit_oof_slices_labels_and_weights_per_fold_and_hashes_them(
    data: tuple[Dataset, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    calls = _spy(monkeypatch)
    n = len(train)
    labels = sp.lil_matrix(train.labels)
    labels[2, 5], labels[1, :] = 0.6, 0  # a soft label; a row left without labels
    labels = sp.csr_matrix(labels)
    weight = np.ones(n, np.float32)
    weight[::10], weight[5::10] = 0.0, 0.5
    zoo = _zoo({"name": "logistic"})
    fit_oof(zoo, train, test, tmp_path)
    result = fit_oof(zoo, train, test, tmp_path, labels=labels, sample_weight=weight)
    assert not result.members[0].skipped and len(calls) == 6  # a new hash: trained again
    folds = train.folds(3, 0)
    for fold, (args, kwargs) in enumerate(calls[3:]):
        kept = np.flatnonzero((folds != fold) & (weight > 0))
        held = np.flatnonzero((folds == fold) & (weight > 0))
        assert len(args[1]) == kept.size and len(args[2]) == held.size
        np.testing.assert_array_equal(kwargs["labels"].toarray(), labels[kept].toarray())
        np.testing.assert_array_equal(kwargs["sample_weight"], weight[kept])
        np.testing.assert_array_equal(
            kwargs["valid_labels"].toarray(), labels[held].toarray() >= 0.5
        )
    store = Predictions.open(tmp_path / "logistic" / "predictions")
    assert len(store.oof) == n and (store.oof.topk().indices[weight == 0] >= 0).all()
    assert store.model["relabelled"] is True
    again = fit_oof(zoo, train, test, tmp_path, labels=labels, sample_weight=weight)
    assert again.members[0].skipped and len(calls) == 6
    fit_oof(zoo, train, test, tmp_path, labels=labels)  # weights dropped: another hash
    assert len(calls) == 9 and all(len(a[1]) == np.sum(folds != f) for f, (a, _) in
                                   enumerate(calls[6:]))  # fmt: skip


def test_fit_full_trains_on_the_rows_of_positive_weight(
    data: tuple[Dataset, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    calls = _spy(monkeypatch)
    weight = np.ones(len(train), np.float32)
    weight[:50] = 0
    fit_full(_zoo({"name": "logistic"}), train, test, tmp_path, sample_weight=weight)
    ((args, kwargs),) = calls
    assert len(args[1]) == 100 and args[2] is None
    assert kwargs["labels"] is None and kwargs["sample_weight"].shape == (100,)


def test_bad_labels_or_weights_fail_before_training(
    data: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, test = data
    zoo, out = _zoo({"name": "logistic"}), tmp_path / "out"
    with pytest.raises(DataError, match=r"^labels have shape \(3, 6\); they must be \(150, 6\)"):
        fit_oof(zoo, train, test, out, labels=sp.csr_matrix((3, N_CLASSES)))
    with pytest.raises(DataError, match=r"^labels hold 2, outside \[0, 1\]"):
        fit_oof(zoo, train, test, out, labels=sp.csr_matrix(train.labels * 2))
    with pytest.raises(DataError, match="sample_weight is 0 for every row"):
        fit_oof(zoo, train, test, out, sample_weight=np.zeros(len(train)))
    with pytest.raises(DataError, match=r"^sample_weight has shape \(3,\)"):
        fit_full(zoo, train, test, out, sample_weight=np.ones(3))
    soft = sp.csr_matrix(train.labels * np.float32(0.8))
    with pytest.raises(ConfigError, match="lgbm are gradient-boosted trees, which take 0/1"):
        fit_oof(_zoo({"name": "lgbm"}), train, test, out, labels=soft)
    assert not out.exists()
