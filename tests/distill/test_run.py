"""`run_distill` outside a recipe run, as ``webly distill`` calls it: students on an ensemble
entry's soft labels and on its predictions of unlabeled rows, the final model on every row, each
setting chosen on validation, and the inputs it refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.train.test_oof import _store, spy_fit
from webly.config import DistillConfig
from webly.data import Batch, Dataset, DatasetWriter, Layout
from webly.data.split import carve_valid
from webly.distill.run import run_distill
from webly.distill.teachers import DistillInputs, ensemble_entries
from webly.distill.views import frame_views
from webly.ensemble.fit import fit_ensemble, load_entry
from webly.ensemble.members import open_members, zoo_members
from webly.ensemble.stack import StackerConfig
from webly.errors import ConfigError, DataError
from webly.metrics.evaluate import task_metric
from webly.predictions import Predictions
from webly.train import fold_model
from webly.train.oof import fit_oof, held_out_rows, predict_members, predict_zoo
from webly.train.zoo import parse_zoo

TRAIN = {"epochs": 2, "batch_size": 32, "lr": 0.05}
STUDENTS = [{"name": "mlp", "id": "student"}]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> DistillInputs:
    """A 3-fold zoo of two members, its mean blend and stacker; 40 unlabeled rows."""
    root = tmp_path_factory.mktemp("distill")
    train, unlabeled = _store(root / "train", 150, 0), _store(root / "unlabeled", 40, 1)
    zoo = parse_zoo({"folds": 3, "seed": 0, "k": 4, "train": TRAIN,
                     "members": [{"name": "logistic"}, {"name": "mlp"}]})  # fmt: skip
    folds = train.folds(3, 0)
    fit_oof(zoo, train, None, root / "zoo", folds)
    fit_ensemble(
        open_members(zoo_members(root / "zoo"), ("oof",)), train.labels, train.task,
        root / "ens", blends=("mean",), stacker=StackerConfig(rounds=5, seed=0), folds=folds,
    )  # fmt: skip
    return DistillInputs(train, None, folds, zoo, zoo_members(root / "zoo"),
                         ensemble_entries(root / "ens"), unlabeled)  # fmt: skip


def section(**fields: Any) -> DistillConfig:
    return DistillConfig(**{"students": STUDENTS, "lam": 0.5, **fields})


def test_the_ensembles_entries_are_found_by_their_stage_names(inputs: DistillInputs) -> None:
    assert list(inputs.entries) == ["mean", "stacker"]
    figures = {n: Predictions.open(p).fold_metrics["oof"]["metric"] for n, p in
               inputs.entries.items()}  # fmt: skip
    assert inputs.best_entry() == max(figures, key=lambda n: figures[n])


@pytest.mark.slow
def test_students_learn_the_teachers_unlabeled_rows_or_its_confident_ones(
    inputs: DistillInputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taught = spy_fit(monkeypatch, "pseudo")
    every = run_distill(section(teacher="stacker", unlabeled={}), inputs, tmp_path / "every")
    store = Predictions.open(every.students["student"])
    assert store.model["pseudo_rows"] == len(inputs.unlabeled or []) and store.model["distilled"]
    assert every.summary["unlabeled_rows"] == 40
    # the targets: the stacker re-applied to the zoo members' predictions of those rows
    train, unlabeled = inputs.train, inputs.unlabeled
    assert unlabeled is not None
    predicted = predict_zoo(inputs.zoo, train, unlabeled, Path(inputs.members["mlp"]).parents[1])
    entry = load_entry(inputs.entries["stacker"])
    expected = entry.predict([predicted[name] for name in entry.members])
    top1 = np.asarray(taught[0].targets.max(axis=1).toarray()).ravel()
    np.testing.assert_allclose(top1, expected.scores[:, 0], atol=2e-3)

    threshold = float(np.median(expected.scores[:, 0]))  # keeps about half the rows
    sure = run_distill(section(teacher="stacker", unlabeled={"threshold": threshold}), inputs,
                       tmp_path / "sure")  # fmt: skip
    store = Predictions.open(sure.students["student"])
    assert store.model["pseudo_rows"] == (expected.scores[:, 0] >= threshold).sum() < 40
    assert store.model["folds"] == 3


def test_inputs_the_section_does_not_match_are_refused(
    inputs: DistillInputs, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    plain = DistillInputs(inputs.train, None, inputs.folds, inputs.zoo, inputs.members,
                          inputs.entries)  # fmt: skip
    with pytest.raises(ConfigError, match=r"no unlabeled split was given.*--unlabeled-data"):
        run_distill(section(unlabeled={}), plain, out)
    with pytest.raises(ConfigError, match=r"was given but distill\.unlabeled is not set"):
        run_distill(section(), inputs, out)
    wide = Layout(inputs.train.layout.features, n_classes=inputs.train.n_classes + 1)
    with DatasetWriter(tmp_path / "wide", wide) as writer:
        features = {"rgb": np.zeros((1, 8), np.float32), "audio": np.zeros((1, 4), np.float32)}
        writer.write_batch(Batch(["a"], [[0]], features=features))
    other = DistillInputs(inputs.train, None, inputs.folds, inputs.zoo, inputs.members,
                          inputs.entries, Dataset.open(tmp_path / "wide"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"wide has 7 multilabel classes, training data 6"):
        run_distill(section(unlabeled={}), other, out)
    with pytest.raises(ConfigError, match=r"'greedy' is not an ensemble entry; use one of: best"):
        run_distill(section(teacher="greedy"), plain, out)
    alone = DistillInputs(inputs.train, None, inputs.folds, inputs.zoo, inputs.members)
    with pytest.raises(ConfigError, match=r"--ensemble ENSEMBLE_DIR\) or set family: true"):
        run_distill(section(), alone, out)
    with pytest.raises(ConfigError, match=r"distill\.students: student has .* above distill"):
        run_distill(section(max_size=100), plain, out)
    with pytest.raises(ConfigError, match=r"only video-level features \(rgb, audio\), no frames"):
        run_distill(section(final={"name": "logistic"}, frame_views=0.5), plain, out)
    assert not out.exists()


def test_several_lams_each_model_keeps_the_best_on_validation(
    inputs: DistillInputs, tmp_path: Path
) -> None:
    """Out of fold the figure is the out-of-fold metric; on every row it is the metric on the
    rows the training held out: the test split is never looked at (it has no labels here)."""
    plain = DistillInputs(inputs.train, inputs.train, inputs.folds, inputs.zoo, inputs.members,
                          inputs.entries)  # fmt: skip
    result = run_distill(section(lam=[0.5, 1.0], final={"name": "mlp"}), plain, tmp_path)
    tried = {
        lam: Predictions.open(tmp_path / "students" / name / "student" / "predictions")
        for lam, name in ((1.0, "labels"), (0.5, "lam-0.5"))
    }
    assert not tried[1.0].model.get("distilled") and tried[0.5].model["distilled"]
    best = max(tried, key=lambda lam: (tried[lam].fold_metrics["oof"]["metric"], lam == 1.0))
    student, final = result.members
    assert student.oof_metric == tried[best].fold_metrics["oof"]["metric"] and final.id == "mlp"
    assert result.students["student"] == tried[best].path
    assert [t["setting"] for t in result.summary["final_tried"]] == ["labels", "lam-0.5"]
    assert (
        result.model
        == tmp_path / "final" / result.summary["final_setting"] / "mlp" / "full" / "model"
    )
    assert set(result.summary["teacher"]["candidates"]) == {"mean", "stacker", "students' mean"}
    assert result.summary["teacher"]["students"] == inputs.best_entry()
    assert result.key.startswith("2 of 2 students done; final mlp: ")


def test_family_teachers_need_no_ensemble(inputs: DistillInputs, tmp_path: Path) -> None:
    """Each student learns from its model family's members (here mlp's), the final model from
    the better of the family mean and the students' mean; no ensemble entry is read."""
    family = DistillInputs(inputs.train, inputs.train, inputs.folds, inputs.zoo, inputs.members)
    result = run_distill(section(family=True, final={"name": "logistic"}), family, tmp_path)
    assert not result.errors and result.model is not None
    teacher = result.summary["teacher"]
    assert teacher["students"] == "family mean"
    assert set(teacher["candidates"]) == {"family mean", "students' mean"}
    assert teacher["final"] == max(teacher["candidates"], key=teacher["candidates"].get)
    assert Predictions.open(result.students["student"]).model["distilled"]


def _logistic_mean(
    train: Dataset, root: Path, valid: Dataset | None = None, stacker: bool = False
) -> DistillInputs:
    """A 3-fold zoo of one logistic member on ``train`` and its mean blend (``root/zoo``,
    ``root/ens``), with ``stacker`` a stacker too; ``train`` is also the test split."""
    zoo = parse_zoo({"folds": 3, "seed": 0, "k": 4, "train": TRAIN,
                     "members": [{"name": "logistic"}]})  # fmt: skip
    folds = train.folds(3, 0)
    fit_oof(zoo, train, None, root / "zoo", folds)
    fit_ensemble(open_members(zoo_members(root / "zoo"), ("oof",)), train.labels, train.task,
                 root / "ens", blends=("mean",), folds=folds,
                 stacker=StackerConfig(rounds=5, seed=0) if stacker else None)  # fmt: skip
    return DistillInputs(train, train, folds, zoo, zoo_members(root / "zoo"),
                         ensemble_entries(root / "ens"), valid=valid)  # fmt: skip


def test_with_a_validation_split_the_final_model_is_validated_and_chosen_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows carved out before the zoo: the final model trains on every training row, its
    trainer scores the validation store, and its teacher and setting are chosen there."""
    carve_valid(_store(tmp_path / "all", 180, 0).path, 0.2, 0, tmp_path / "train",
                tmp_path / "valid")  # fmt: skip
    train, valid = Dataset.open(tmp_path / "train"), Dataset.open(tmp_path / "valid")
    inputs = _logistic_mean(train, tmp_path, valid, stacker=True)
    zoo, folds = inputs.zoo, inputs.folds
    scored: list[Any] = []
    real = fold_model.fit
    monkeypatch.setattr(fold_model, "fit", lambda *a, **k: scored.append(a[2]) or real(*a, **k))
    final = DistillConfig(final={"name": "mlp"}, lam=[1.0, 0.5], students=STUDENTS)
    result = run_distill(final, inputs, tmp_path / "out")
    # the students' fold models validate on their held-out folds; the final model on the split
    assert [len(v) for v in scored] == [len(train) // 3] * 6 + [len(valid)] * 2
    assert all(v.path == valid.path for v in scored[6:])
    for row in result.summary["students_tried"]:  # each its fold models' mean on the split
        store = tmp_path / "out" / "students" / row["setting"] / "student" / "predictions"
        top = predict_members({"student": store}, train, valid)["student"]
        assert row["valid"] == pytest.approx(task_metric(top, valid.labels, valid.task))
    assert result.model is not None and held_out_rows(result.model) is None  # every row trained
    teacher = result.summary["teacher"]
    assert teacher["chosen on"] == "the validation split"
    entries = {n: f for n, f in teacher["candidates"].items() if n in inputs.entries}
    assert set(entries) == {"mean", "stacker"} and len(set(entries.values())) == 2
    assert teacher["students"] == max(entries, key=lambda n: entries[n])  # on the split too
    entry = load_entry(inputs.entries["mean"])
    predicted = predict_zoo(zoo, train, valid, tmp_path / "zoo")
    on_valid = task_metric(entry.predict([predicted["logistic"]]), valid.labels, valid.task)
    assert teacher["candidates"]["mean"] == pytest.approx(on_valid)
    tried = result.summary["final_tried"]
    for row in tried:  # each setting's figure: its best epoch on the validation store
        fit = json.loads((tmp_path / "out" / "final" / row["setting"] / "mlp" / "full" / "model"
                          / "fit.json").read_text())  # fmt: skip
        assert row["valid"] == max(h["metric"] for h in fit["history"])
    assert result.summary["final_setting"] == max(tried, key=lambda r: r["valid"])["setting"]
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["final_tried"] == tried and written["teacher"] == teacher

    overlapping = DistillInputs(train, train, folds, zoo, inputs.members, inputs.entries,
                                valid=train.subset(np.arange(10)))  # fmt: skip
    with pytest.raises(DataError, match=r"holds 10 of the training rows \(e\.g\. id .*carved"):
        run_distill(final, overlapping, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_the_final_model_at_a_views_setting_learns_the_teachers_predictions_of_the_views(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frame-level data: the final model is also tried on frame-subset views of the rows it
    trains on (none it validates on), taught by the teacher's predictions of the views."""
    train = _store(tmp_path / "train", 120, 0, frames=True)
    inputs = _logistic_mean(train, tmp_path)
    zoo = inputs.zoo
    taught = spy_fit(monkeypatch, "pseudo")
    final = DistillConfig(final={"name": "logistic"}, lam=[1.0, 0.5], frame_views=0.5,
                          teacher="mean")  # fmt: skip
    result = run_distill(final, inputs, tmp_path / "out")
    tried = result.summary["final_tried"]
    assert [(t["setting"], t["views"], t["mixup"]) for t in tried] == [
        ("labels", False, False), ("lam-0.5", False, False), ("lam-0.5-views", True, False)
    ]  # fmt: skip
    twin, plain, viewed = taught
    assert twin is None and plain is None and viewed is not None
    assert viewed.dataset.path == tmp_path / "out" / "views"
    held = held_out_rows(tmp_path / "out" / "final" / "lam-0.5-views" / "logistic" / "full"
                         / "model")  # fmt: skip
    assert held is not None and held.size > 0
    trained = np.setdiff1d(np.arange(len(train)), held)
    assert viewed.rows.size == trained.size == len(viewed.dataset)
    again = frame_views(train, tmp_path / "again", 0.5, zoo.seed, rows=trained)
    assert again.manifest["source"] == viewed.dataset.manifest["source"]
    # the targets: the teacher (the mean blend) re-applied to the views
    predicted = predict_zoo(zoo, train, viewed.dataset, tmp_path / "zoo")
    expected = load_entry(inputs.entries["mean"]).predict([predicted["logistic"]])
    top1 = np.asarray(viewed.targets.max(axis=1).toarray()).ravel()
    np.testing.assert_allclose(top1, expected.scores[:, 0], atol=2e-3)


def test_each_k_of_a_grid_keeps_that_many_of_the_teachers_classes(
    inputs: DistillInputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = DistillInputs(inputs.train, inputs.train, inputs.folds, inputs.zoo, inputs.members,
                          inputs.entries)  # fmt: skip
    taught = spy_fit(monkeypatch, "targets")
    final = DistillConfig(final={"name": "logistic"}, lam=0.5, k=[4, 1], teacher="stacker")
    result = run_distill(final, plain, tmp_path)
    assert [t["setting"] for t in result.summary["final_tried"]] == ["lam-0.5-k4", "lam-0.5-k1"]
    assert [t["k"] for t in result.summary["final_tried"]] == [4, 1]
    wide, narrow = (np.diff(targets.indptr) for targets in taught)
    assert narrow.max() == 1 and wide.max() > 1 and (wide >= narrow).all()
