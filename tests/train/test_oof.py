"""fit_oof: OOF coverage by the unseen fold model, test averaging, determinism, resume, bad
input failing before training, NaN members, lgbm and frame-level members."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import webly.train.fold_model as fold_model
import webly.train.oof as oof_module
from tests.train.test_loop import Kill, _kill_after
from webly.core import TopK
from webly.data import Batch, Dataset, DatasetWriter, FeatureSpec, Layout
from webly.distill.pseudo import PseudoLabels
from webly.ensemble.members import zoo_members
from webly.errors import ConfigError, DataError
from webly.models.gbdt import LgbmModel
from webly.models.network import load_network
from webly.predictions import Predictions
from webly.train import iter_scores
from webly.train.loop import held_out_rows as loop_held_out
from webly.train.oof import (
    ZooResult,
    fit_full,
    fit_oof,
    held_out_rows,
    predict_zoo,
    recorded_zoo,
    train_zoo,
)
from webly.train.zoo import parse_zoo, plan_zoo

N_CLASSES = 6
TRAIN = {"epochs": 2, "batch_size": 32, "lr": 0.05}


def _store(path: Path, n: int, seed: int, frames: bool = False) -> Dataset:
    """Learnable toy data: class c is on where rgb feature c exceeds 0.3; clean labels kept.
    ``frames`` adds a frame-level group ``frame_rgb`` (1..5 frames a row)."""
    rng = np.random.default_rng(seed)
    rgb = rng.normal(size=(n, 8)).astype(np.float32)
    audio = rng.normal(size=(n, 4)).astype(np.float32)
    labels = [np.flatnonzero(row[:N_CLASSES] > 0.3) for row in rgb]
    specs = [FeatureSpec("rgb", 8), FeatureSpec("audio", 4)]
    frame_rows: dict[str, list[np.ndarray]] = {}
    if frames:
        specs.append(FeatureSpec("frame_rgb", 8, level="frame"))
        frame_rows["frame_rgb"] = [
            np.repeat(row[None], t, axis=0)
            for row, t in zip(rgb, rng.integers(1, 6, n), strict=True)
        ]
    layout = Layout(features=tuple(specs), n_classes=N_CLASSES, has_clean_labels=True)
    with DatasetWriter(path, layout) as writer:
        writer.write_batch(
            Batch(
                [f"v{i}" for i in range(n)], labels, features={"rgb": rgb, "audio": audio},
                frames=frame_rows, clean_labels=labels,
            )
        )  # fmt: skip
    return Dataset.open(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Dataset]:
    root = tmp_path_factory.mktemp("oof-data")
    return _store(root / "train", 150, 0), _store(root / "test", 40, 1)


def _zoo(*members: dict[str, Any], **settings: Any) -> Any:
    return parse_zoo({"folds": 3, "seed": 0, "k": 4, "train": TRAIN, **settings,
                      "members": list(members)})  # fmt: skip


def test_oof_rows_come_from_the_unseen_fold_model_and_test_averages_folds(
    data: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, test = data
    result = fit_oof(_zoo({"name": "logistic"}), train, test, tmp_path)
    assert not result.failed
    store = Predictions.open(tmp_path / "logistic" / "predictions")
    assert len(store.oof) == len(train) and len(store.test) == len(test)
    assert store.model["config"]["name"] == "logistic" and store.model["config_hash"]
    folds = train.folds(3, 0)
    test_sum = np.zeros((len(test), N_CLASSES), np.float32)
    for fold in range(3):
        model = load_network(tmp_path / "logistic" / f"fold-{fold}" / "model")
        rows = np.flatnonzero(folds == fold)[:2]
        (_, probs), *_ = iter_scores(model, train.subset(rows), ["rgb", "audio"])
        top = store.oof.topk(rows)  # k=4 of 6 classes: the model's own top 4
        np.testing.assert_array_equal(np.sort(top.indices), np.sort(np.argsort(-probs)[:, :4]))
        np.testing.assert_allclose(top.scores, np.take_along_axis(probs, top.indices, 1), atol=2e-3)
        test_sum += next(iter_scores(model, test, ["rgb", "audio"]))[1]
        assert 0.0 <= store.fold_metrics[str(fold)]["metric"] <= 1.0
    # k=4 < 6 classes: stored top-4 of the average of the three fold models
    top = np.argsort(-test_sum, axis=1)[:, :4]
    np.testing.assert_array_equal(np.sort(store.test.topk().indices, axis=1), np.sort(top, axis=1))
    np.testing.assert_allclose(
        store.test.dense(), np.where(store.test.dense() > 0, test_sum / 3, 0), atol=2e-3
    )
    (member,) = result.members
    assert member.test_metric is not None and member.test_metric > 0.5
    assert member.oof_loss is not None and 0 < member.oof_loss < 1
    (row,) = result.table()
    assert row["model"] == "logistic" and row["frame-level"] is False
    assert row["scored on"] == "test" and row["GAP@20"] == member.test_metric


def test_same_seed_same_predictions(data: tuple[Dataset, Dataset], tmp_path: Path) -> None:
    train, test = data
    zoo = _zoo({"name": "mlp", "hparams": {"hidden": [8], "dropout": 0.2},
                "train": {"mixup_alpha": 0.4}})  # fmt: skip
    stores = []
    for name in ("a", "b"):
        fit_oof(zoo, train, test, tmp_path / name)
        stores.append(Predictions.open(tmp_path / name / "mlp" / "predictions"))
    for split in ("oof", "test"):
        a, b = (s.split(split).topk() for s in stores)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.scores, b.scores)


def spy_fit(monkeypatch: pytest.MonkeyPatch, keyword: str | None = None) -> list[Any]:
    """Record, for every trainer run by fit_oof / fit_full, its ``keyword`` argument (the
    member id, from the workdir, when None)."""
    calls: list[Any] = []
    real = fold_model.fit

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(Path(args[5]).parent.name if keyword is None else kwargs[keyword])
        return real(*args, **kwargs)

    monkeypatch.setattr(fold_model, "fit", spy)
    return calls


def test_resume_skips_finished_members_and_retrains_only_a_changed_one(
    data: tuple[Dataset, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    calls = spy_fit(monkeypatch)
    logistic, mlp = {"name": "logistic"}, {"name": "mlp", "hparams": {"hidden": [8]}}
    first = fit_oof(_zoo(logistic, mlp), train, test, tmp_path)
    assert calls == ["logistic"] * 3 + ["mlp"] * 3
    calls.clear()
    again = fit_oof(_zoo(logistic, mlp), train, test, tmp_path)
    assert calls == [] and all(m.skipped for m in again.members)
    assert again.members == [
        oof_module.replace(m, skipped=True) for m in first.members
    ]  # figures read back from the stores
    changed = fit_oof(_zoo(logistic, {**mlp, "hparams": {"hidden": [12]}}), train, test, tmp_path)
    assert calls == ["mlp"] * 3
    assert [m.skipped for m in changed.members] == [True, False]
    store = Predictions.open(tmp_path / "mlp" / "predictions")
    assert store.model["config"]["hparams"] == {"hidden": [12]}


def test_saved_fold_models_are_loaded_not_retrained(
    data: tuple[Dataset, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    zoo = _zoo({"name": "logistic"})
    fit_oof(zoo, train, test, tmp_path)
    before = Predictions.open(tmp_path / "logistic" / "predictions").oof.topk()
    (tmp_path / "logistic" / "predictions" / "manifest.json").unlink()  # killed before commit
    calls = spy_fit(monkeypatch)
    fit_oof(zoo, train, test, tmp_path)
    assert calls == []
    after = Predictions.open(tmp_path / "logistic" / "predictions").oof.topk()
    np.testing.assert_array_equal(before.scores, after.scores)


@pytest.mark.parametrize(
    ("members", "settings", "message"),
    [
        (
            [{"name": "resnet"}],
            {},
            r"zoo: members\[1\]\.name: unknown model 'resnet'; did you mean 'resnet_av'",
        ),
        (
            [{"name": "mlp", "hparams": {"width": 3}}],
            {},
            r"zoo: members\[1\]\.hparams\.width: .*no such hyper-parameter.*hidden",
        ),
        (
            [{"name": "mlp", "train": {"epoch": 3}}],
            {},
            r"zoo: members\[1\]\.train\.epoch: unknown setting; did you mean 'epochs'",
        ),
        (
            [{"name": "logistic"}],
            {"train": {"seed": 1}},
            r"zoo: train\.seed: remove it; the zoo's seed drives",
        ),
        (
            [{"name": "logistic"}, {"name": "logistic"}],
            {},
            r"members\[2\]: id 'logistic' is used twice",
        ),
        ([{"name": "logistic", "groups": ["text"]}], {}, r"group 'text' but the data lacks"),
        ([{"name": "dbof"}], {}, r"frame-level but the data has no frame-level feature groups"),
        ([{"name": "logistic"}], {"folds": 1}, r"folds is 1; use 2..127"),
        ([{"name": "mlp", "options": {"gating": True}}], {}, r"options.gating: Extra inputs"),
        ([{"name": "lgbm", "hparams": {"n_estimators": 0}}], {}, r"n_estimators is 0"),
        ([{"name": "logistic", "id": "../x"}], {}, r"members\[1\]\.id: .* is not a folder name"),
    ],
)
def test_bad_zoo_fails_before_training(
    data: tuple[Dataset, Dataset],
    tmp_path: Path,
    members: list[dict[str, Any]],
    settings: dict[str, Any],
    message: str,
) -> None:
    train, test = data
    ok = {"name": "mlp", "id": "ok", "hparams": {"hidden": [4]}}  # valid, ahead of the bad one
    with pytest.raises(ConfigError, match=message) as err:
        fit_oof(_zoo(ok, *members, **settings), train, test, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_nan_member_is_recorded_and_the_others_finish(
    data: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, test = data
    zoo = _zoo({"name": "logistic", "id": "wild", "train": {"lr": 1e30}}, {"name": "logistic"})
    result = fit_oof(zoo, train, test, tmp_path)
    (failed,) = result.failed
    assert failed.id == "wild" and "training loss is nan" in (failed.error or "")
    assert failed.oof_metric is None
    assert not (tmp_path / "wild" / "predictions").exists()
    assert result.members[1].error is None and result.members[1].oof_metric is not None
    assert Predictions.open(tmp_path / "logistic" / "predictions")
    assert [r["error"] is not None for r in result.table()] == [True, False]


def test_lgbm_member(data: tuple[Dataset, Dataset], tmp_path: Path) -> None:
    train, test = data
    hparams = {"n_estimators": 5, "min_child_samples": 5, "num_leaves": 4}
    result = fit_oof(_zoo({"name": "lgbm", "hparams": hparams}), train, test, tmp_path)
    (member,) = result.members
    assert member.error is None and member.level == "gbdt"
    assert member.oof_metric is not None and member.oof_metric > 0.3
    store = Predictions.open(tmp_path / "lgbm" / "predictions")
    folds = train.folds(3, 0)
    rows = np.flatnonzero(folds == 1)[:2]
    model = LgbmModel.load(tmp_path / "lgbm" / "fold-1" / "model")
    probs = model.predict(train.features(rows, ["rgb", "audio"]))
    top = store.oof.topk(rows)
    np.testing.assert_allclose(top.scores, np.take_along_axis(probs, top.indices, 1), atol=2e-3)


def test_frame_member_reads_frame_groups(tmp_path: Path) -> None:
    train, test = _store(tmp_path / "tr", 90, 0, frames=True), _store(tmp_path / "te", 20, 1, True)
    zoo = _zoo({"name": "dbof", "hparams": {"cluster_size": 4, "hidden": 8}}, {"name": "logistic"})
    result = fit_oof(zoo, train, test, tmp_path / "out")
    assert not result.failed
    assert [r["frame-level"] for r in result.table()] == [True, False]
    configs = [Predictions.open(tmp_path / "out" / m / "predictions").model["config"]
               for m in ("dbof", "logistic")]  # fmt: skip
    assert configs[0]["groups"] == ["frame_rgb"] and configs[1]["groups"] == ["rgb", "audio"]


def test_train_zoo_reads_a_zoo_file(data: tuple[Dataset, Dataset], tmp_path: Path) -> None:
    train, _ = data
    zoo_file = tmp_path / "zoo.yaml"
    zoo_file.write_text("folds: 2\ntrain: {epochs: 1}\nmembers:\n  - {name: logistic}\n")
    result = train_zoo(zoo_file, train.path, None, tmp_path / "out")
    assert isinstance(result, ZooResult)
    (row,) = result.table()
    assert row["scored on"] == "oof" and row["GAP@20"] is not None
    assert Predictions.open(tmp_path / "out" / "logistic" / "predictions").splits == ["oof"]


def test_folds_passed_in_are_every_members_folds(
    data: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, _ = data
    folds = np.repeat(np.arange(3, dtype=np.int8), [30, 60, 60])  # train.folds: 50 each
    fit_oof(_zoo({"name": "logistic"}), train, None, tmp_path, folds=folds)
    store = Predictions.open(tmp_path / "logistic" / "predictions")
    assert [store.fold_metrics[str(f)]["rows"] for f in range(3)] == [30, 60, 60]
    for bad in (folds[:-1], folds + 1, np.zeros(len(train), np.int8), folds.astype(float)):
        with pytest.raises(ConfigError, match=r"zoo\.folds = 3 non-empty folds; pass train\.folds"):
            fit_oof(_zoo({"name": "logistic"}), train, None, tmp_path / "bad", folds=bad)
    assert not (tmp_path / "bad").exists()


def test_teacher_targets_reach_each_fold_and_change_the_hash(
    data: tuple[Dataset, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    seen = spy_fit(monkeypatch, "targets")
    teacher = sp.csr_matrix(np.full((len(train), N_CLASSES), 0.25, dtype=np.float32))
    teacher[0, 0] = 0.9
    zoo = _zoo({"name": "logistic"})
    plain = fit_oof(zoo, train, test, tmp_path)
    student = fit_oof(zoo, train, test, tmp_path, teacher=teacher)
    assert not plain.members[0].skipped and not student.members[0].skipped  # new hash: retrained
    assert seen[0] is None and len(seen) == 6
    folds = train.folds(3, 0)
    for fold, targets in enumerate(seen[3:]):
        kept = np.flatnonzero(folds != fold)
        assert targets.shape == (kept.size, N_CLASSES)
        assert targets[0, 0] == (0.9 if kept[0] == 0 else 0.25)
    assert Predictions.open(tmp_path / "logistic" / "predictions").model["distilled"] is True


def test_teacher_of_the_wrong_shape_or_for_trees_is_refused(
    data: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, test = data
    with pytest.raises(DataError, match=r"teacher soft targets are \(3, 6\).*\(150, 6\)"):
        fit_oof(_zoo({"name": "logistic"}), train, test, tmp_path, teacher=sp.csr_matrix((3, 6)))
    teacher = sp.csr_matrix((len(train), N_CLASSES), dtype=np.float32)
    with pytest.raises(ConfigError, match="lgbm are gradient-boosted trees"):
        fit_oof(_zoo({"name": "lgbm"}), train, test, tmp_path, teacher=teacher)
    assert not any(tmp_path.iterdir())


def test_fit_full_records_the_rows_its_network_held_out(
    data: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    """The rows `fit` validated on, as store rows: the weighted-out rows are never among them,
    and they are the positions `held_out_rows` draws from the used rows."""
    train, test = data
    weight = np.ones(len(train), np.float32)
    weight[:50] = 0
    zoo = _zoo({"name": "logistic", "train": {"epochs": 1}})
    fit_full(zoo, train, test, tmp_path, sample_weight=weight)
    held = held_out_rows(tmp_path / "logistic" / "full" / "model")
    assert held is not None and held.dtype == np.int64
    used = np.flatnonzero(weight > 0)
    (member,) = plan_zoo(zoo, train)
    config = member.train_config(0)
    positions = loop_held_out(len(used), config.valid_fraction, config.seed)
    assert positions is not None
    np.testing.assert_array_equal(held, used[positions])
    assert held.size == round(len(used) * config.valid_fraction) and (held >= 50).all()
    fit_oof(zoo, train, test, tmp_path / "oof", np.arange(len(train)) % 3)
    assert held_out_rows(tmp_path / "oof" / "logistic" / "fold-0" / "model") is None


def test_fit_full_trains_once_on_every_row_and_resumes(
    data: tuple[Dataset, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    calls = spy_fit(monkeypatch)
    zoo = _zoo({"name": "logistic"}, {"name": "lgbm", "hparams": {"n_estimators": 5}})
    result = fit_full(zoo, train, test, tmp_path)
    assert calls == ["logistic"] and not result.failed
    store = Predictions.open(tmp_path / "logistic" / "predictions")
    assert store.splits == ["test"] and store.model["folds"] == 0
    model = load_network(tmp_path / "logistic" / "full" / "model")
    (_, probs), *_ = iter_scores(model, test, ["rgb", "audio"])
    np.testing.assert_allclose(
        store.test.dense(), np.where(store.test.dense() > 0, probs, 0), atol=2e-3
    )
    logistic = result.members[0]
    assert logistic.oof_metric is None and logistic.test_metric is not None
    assert logistic.test_metric > 0.5 and logistic.seconds > 0
    assert fit_full(zoo, train, test, tmp_path).members[0].skipped and calls == ["logistic"]
    with pytest.raises(ConfigError, match="needs a test split"):
        fit_full(_zoo({"name": "mlp"}), train, None, tmp_path / "none")


def _dense(top: TopK, n_classes: int) -> np.ndarray:
    dense = np.zeros((top.n_samples, n_classes), np.float32)
    np.put_along_axis(dense, top.indices.astype(np.int64), top.scores, axis=1)
    return dense


def test_predict_zoo_is_each_members_fold_mean_like_the_test_split(
    data: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, test = data
    zoo = _zoo({"name": "logistic"}, {"name": "lgbm", "hparams": {"n_estimators": 5}})
    fit_oof(zoo, train, test, tmp_path)
    predicted = predict_zoo(zoo, train, test.subset(np.arange(30)), tmp_path)
    assert list(predicted) == ["logistic", "lgbm"]
    for name, top in predicted.items():
        assert top.indices.shape == (30, 4)
        assert (np.diff(top.scores, axis=1) <= 0).all()  # best first
        stored = Predictions.open(tmp_path / name / "predictions").test.dense()[:30]
        np.testing.assert_allclose(_dense(top, N_CLASSES), stored, atol=2e-3)


def test_recorded_zoo_rebuilds_the_zoo_a_folder_was_trained_from(
    data: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, test = data
    zoo = _zoo(
        {"name": "logistic", "train": {"lr": 0.1}},
        {"name": "mlp", "id": "mlp_cg", "hparams": {"hidden": [8]}, "groups": ["rgb"],
         "options": {"context_gating": True}},
        {"name": "lgbm", "hparams": {"n_estimators": 5}},
    )  # fmt: skip
    fit_oof(zoo, train, None, tmp_path / "zoo")
    rebuilt = recorded_zoo(zoo_members(tmp_path / "zoo", ["mlp_cg", "lgbm", "logistic"]))
    assert [m.member_id for m in rebuilt.members] == ["mlp_cg", "lgbm", "logistic"]
    assert (rebuilt.folds, rebuilt.seed) == (3, 0)
    original = {m.id: m.config for m in plan_zoo(zoo, train)}
    configs = {m.id: m.config for m in plan_zoo(rebuilt, train)}
    assert configs["lgbm"]["hparams"] == original.pop("lgbm")["hparams"]  # no train settings
    assert {name: configs[name] for name in original} == original
    rows = test.subset(np.arange(10))
    again = predict_zoo(rebuilt, train, rows, tmp_path / "zoo")
    for name, top in predict_zoo(zoo, train, rows, tmp_path / "zoo").items():
        np.testing.assert_array_equal(again[name].scores, top.scores)

    fit_oof(_zoo({"name": "logistic"}, folds=2), train, None, tmp_path / "other")
    stores = {"mlp_cg": tmp_path / "zoo" / "mlp_cg" / "predictions",
              "logistic": tmp_path / "other" / "logistic" / "predictions"}  # fmt: skip
    with pytest.raises(DataError, match=r"mlp_cg: 3 folds, seed 0; logistic: 2 folds.*one zoo"):
        recorded_zoo(stores)


def test_predict_zoo_needs_the_trained_fold_models(
    data: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, test = data
    with pytest.raises(DataError, match=r"member logistic has no fold model in .*fold-0"):
        predict_zoo(_zoo({"name": "logistic"}), train, test, tmp_path)


def _pseudo(ds: Dataset, n: int) -> PseudoLabels:
    targets = sp.csr_matrix(np.full((n, ds.n_classes), 0.5, np.float32))
    return PseudoLabels(ds, np.arange(n), targets, t1=0, t2=0, alpha_f=1.0)


def test_pseudo_rows_reach_every_fold_model_and_change_the_hash(
    data: tuple[Dataset, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    seen = spy_fit(monkeypatch, "pseudo")
    zoo = _zoo({"name": "logistic"})
    pseudo = _pseudo(test, 12)
    fit_full(zoo, train, test, tmp_path)
    taught = fit_full(zoo, train, test, tmp_path, pseudo=pseudo)
    assert not taught.members[0].skipped  # a new hash: trained again
    assert seen == [None, pseudo]
    assert Predictions.open(tmp_path / "logistic" / "predictions").model["pseudo_rows"] == 12
    assert fit_full(zoo, train, test, tmp_path, pseudo=_pseudo(test, 12)).members[0].skipped
    fit_oof(zoo, train, test, tmp_path / "oof", pseudo=pseudo)
    assert seen[2:] == [pseudo] * 3


def test_pseudo_rows_for_trees_or_of_another_dataset_are_refused(
    data: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, test = data
    with pytest.raises(ConfigError, match=r"lgbm are gradient-boosted trees.*pseudo-labeled"):
        fit_full(_zoo({"name": "lgbm"}), train, test, tmp_path, pseudo=_pseudo(test, 4))
    wide = Layout(train.layout.features, n_classes=N_CLASSES + 1)
    with DatasetWriter(tmp_path / "wide", wide) as writer:
        features = {"rgb": np.zeros((1, 8), np.float32), "audio": np.zeros((1, 4), np.float32)}
        writer.write_batch(Batch(["a"], [[0]], features=features))
    with pytest.raises(DataError, match="pseudo-labeled data has 7 multilabel classes"):
        fit_oof(_zoo({"name": "logistic"}), train, test, tmp_path / "wide-run",
                pseudo=_pseudo(Dataset.open(tmp_path / "wide"), 1))  # fmt: skip
    assert not (tmp_path / "lgbm").exists() and not (tmp_path / "wide-run").exists()


TRAINER_FILES = ("checkpoint.pt", "best.pt")


def _fold_files(out: Path, member: str) -> dict[str, set[str]]:
    """The entries of each of ``member``'s fold folders (``fold-<f>``, ``full``), by folder."""
    return {
        d.name: {p.name for p in d.iterdir()}
        for d in sorted((out / member).iterdir())
        if d.name.startswith("fold-") or d.name == "full"
    }


def test_saved_fold_models_drop_their_trainer_checkpoints_unless_kept(
    data: tuple[Dataset, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    members = ({"name": "logistic"}, {"name": "lgbm", "hparams": {"n_estimators": 5}})
    fit_oof(_zoo(*members), train, test, tmp_path / "dropped")
    fit_full(_zoo(*members), train, test, tmp_path / "full")
    for out, parts in ((tmp_path / "dropped", ["fold-0", "fold-1", "fold-2"]),
                       (tmp_path / "full", ["full"])):  # fmt: skip
        for member in ("logistic", "lgbm"):
            assert _fold_files(out, member) == {part: {"model"} for part in parts}
    kept = fit_oof(_zoo(*members, keep_checkpoints=True), train, test, tmp_path / "kept")
    assert not kept.failed
    for part, names in _fold_files(tmp_path / "kept", "logistic").items():
        assert names == {"model", *TRAINER_FILES}, part
    assert _fold_files(tmp_path / "kept", "lgbm") == {f"fold-{f}": {"model"} for f in range(3)}
    stores = [Predictions.open(tmp_path / run / "logistic" / "predictions")
              for run in ("dropped", "kept")]  # fmt: skip
    assert stores[0].model["config_hash"] == stores[1].model["config_hash"]  # no result changes
    np.testing.assert_array_equal(stores[0].oof.topk().scores, stores[1].oof.topk().scores)
    # the same hash: the other value finds the member finished and touches nothing
    again = fit_oof(_zoo(*members), train, test, tmp_path / "kept")
    assert all(m.skipped for m in again.members)
    assert all(TRAINER_FILES[0] in n for n in _fold_files(tmp_path / "kept", "logistic").values())
    # killed before the store's commit: the saved fold models are loaded, not trained, and
    # their trainer files dropped then
    (tmp_path / "kept" / "logistic" / "predictions" / "manifest.json").unlink()
    calls = spy_fit(monkeypatch)
    fit_oof(_zoo(*members), train, test, tmp_path / "kept")
    assert calls == []
    assert _fold_files(tmp_path / "kept", "logistic") == {f"fold-{f}": {"model"} for f in range(3)}


def test_run_killed_mid_fold_resumes_to_the_uninterrupted_result_and_drops_checkpoints(
    data: tuple[Dataset, Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    zoo = _zoo({"name": "mlp", "hparams": {"hidden": [8], "dropout": 0.2}})
    fit_oof(zoo, train, test, tmp_path / "whole")
    real = fold_model.fit
    started: list[int] = []  # the fold of every trainer run
    trained: list[tuple[int, int]] = []  # (fold, epoch) of the epochs the resumed run trains
    kill = [True]

    def killed_in_fold_1(*args: Any, **kwargs: Any) -> Any:
        fold = int(Path(args[5]).name.removeprefix("fold-"))
        started.append(fold)
        if kill[0]:
            if fold == 1:
                kwargs["on_epoch_end"] = _kill_after(1)  # after epoch 1 of 2 is checkpointed
        else:
            kwargs["on_epoch_end"] = lambda stats: trained.append((fold, stats.epoch))
        return real(*args, **kwargs)

    monkeypatch.setattr(fold_model, "fit", killed_in_fold_1)
    with pytest.raises(Kill):
        fit_oof(zoo, train, test, tmp_path / "b")
    assert started == [0, 1]
    assert _fold_files(tmp_path / "b", "mlp") == {
        "fold-0": {"model"},  # saved: its trainer files are gone
        "fold-1": {*TRAINER_FILES, "attempts.json"},  # the epoch-1 checkpoint to resume
    }
    kill[0] = False
    assert not fit_oof(zoo, train, test, tmp_path / "b").failed
    assert started == [0, 1, 1, 2]  # fold 0 loaded
    assert trained == [(1, 2), (2, 1), (2, 2)]  # fold 1 resumed at epoch 2
    assert _fold_files(tmp_path / "b", "mlp") == {f"fold-{f}": {"model"} for f in range(3)}
    whole, resumed = (Predictions.open(tmp_path / run / "mlp" / "predictions")
                      for run in ("whole", "b"))  # fmt: skip
    for split in ("oof", "test"):
        a, b = whole.split(split).topk(), resumed.split(split).topk()
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.scores, b.scores)
    for fold in range(3):
        a, b = (load_network(tmp_path / run / "mlp" / f"fold-{fold}" / "model").state_dict()
                for run in ("whole", "b"))  # fmt: skip
        assert all(torch.equal(a[name], b[name]) for name in a)


def test_resumed_folds_say_so_and_count_the_seconds_of_every_attempt(
    data: tuple[Dataset, Dataset],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    train, test = data
    zoo = _zoo({"name": "mlp", "hparams": {"hidden": [8]}})
    real = fold_model.fit

    def killed_in_fold_1(*args: Any, **kwargs: Any) -> Any:
        if Path(args[5]).name == "fold-1":
            kwargs["on_epoch_end"] = _kill_after(1)  # after epoch 1 of 2 is checkpointed
        return real(*args, **kwargs)

    monkeypatch.setattr(fold_model, "fit", killed_in_fold_1)
    with pytest.raises(Kill):
        fit_oof(zoo, train, test, tmp_path)
    monkeypatch.setattr(fold_model, "fit", real)
    assert "resumed" not in capsys.readouterr().err
    fold_0, fold_1 = tmp_path / "mlp" / "fold-0", tmp_path / "mlp" / "fold-1"
    first = oof_module.fold_seconds(fold_0)
    assert first > 0 and not (fold_0 / "attempts.json").exists()
    # the killed attempt counts up to its last checkpoint; say earlier attempts spent 1000 s
    attempts = json.loads((fold_1 / "attempts.json").read_text())
    (fold_1 / "attempts.json").write_text(json.dumps({**attempts, "seconds": 1000.0}))
    checkpoint = (fold_1 / "checkpoint.pt").stat().st_mtime
    os.utime(fold_1 / "checkpoint.pt", (checkpoint, attempts["started"] + 50.0))
    assert oof_module._earlier_seconds(fold_1) == pytest.approx(1050.0)
    fit_oof(zoo, train, test, tmp_path)
    err = capsys.readouterr().err
    assert "mlp fold 1/3 resumed: its model was saved by an earlier run" in err
    assert "mlp fold 2/3 resumed: from its trainer checkpoint" in err
    assert "fold 3/3 resumed" not in err
    store = Predictions.open(tmp_path / "mlp" / "predictions")
    assert store.fold_metrics["0"]["seconds"] == first  # not the time it took to load it
    assert store.fold_metrics["1"]["seconds"] >= 1050.0
    assert store.fold_metrics["2"]["seconds"] < 1000.0
    assert not (fold_1 / "attempts.json").exists()
