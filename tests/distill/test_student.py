"""Students on a teacher's soft labels, and on its predictions of unlabeled rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.train.test_oof import _store
from webly.data import Batch, Dataset, DatasetWriter, Layout
from webly.distill.student import predict_teacher, train_students
from webly.ensemble.fit import fit_ensemble, load_entry
from webly.ensemble.members import open_members, zoo_members
from webly.ensemble.stack import StackerConfig
from webly.errors import ConfigError
from webly.predictions import Predictions
from webly.train.oof import fit_oof, predict_zoo
from webly.train.zoo import Zoo, parse_zoo

TRAIN = {"epochs": 2, "batch_size": 32, "lr": 0.05}
STUDENTS = parse_zoo({"folds": 3, "train": TRAIN, "members": [{"name": "mlp"}]})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset, Dataset, Zoo]:
    """A 3-fold zoo of two members, its mean blend and stacker; 40 unlabeled rows."""
    root = tmp_path_factory.mktemp("students")
    train, unlabeled = _store(root / "train", 150, 0), _store(root / "unlabeled", 40, 1)
    zoo = parse_zoo({"folds": 3, "seed": 0, "k": 4, "train": TRAIN,
                     "members": [{"name": "logistic"}, {"name": "mlp"}]})  # fmt: skip
    fit_oof(zoo, train, None, root / "zoo")
    fit_ensemble(
        open_members(zoo_members(root / "zoo"), ("oof",)), train.labels, train.task,
        root / "ens", blends=("mean",), stacker=StackerConfig(rounds=5, seed=0),
        folds=train.folds(3, 0),
    )  # fmt: skip
    return root, train, unlabeled, zoo


@pytest.mark.slow
def test_the_teacher_predicts_other_rows_through_the_zoo_behind_it(
    trained: tuple[Path, Dataset, Dataset, Zoo],
) -> None:
    root, train, unlabeled, zoo = trained
    predicted = predict_zoo(zoo, train, unlabeled, root / "zoo")
    for store in (root / "ens" / "blend-mean", root / "ens" / "stacker" / "predictions"):
        entry = load_entry(store)
        assert entry.members == ("logistic", "mlp")
        expected = entry.predict([predicted[name] for name in entry.members])
        got = predict_teacher(store, root / "zoo", train, unlabeled)
        assert got.n_samples == len(unlabeled)
        np.testing.assert_array_equal(got.indices, expected.indices)
        np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-6)
    member = predict_teacher(root / "zoo" / "mlp" / "predictions", root / "zoo", train, unlabeled)
    np.testing.assert_array_equal(member.scores, predicted["mlp"].scores)


@pytest.mark.slow
def test_students_learn_the_teachers_unlabeled_rows_or_its_confident_ones(
    trained: tuple[Path, Dataset, Dataset, Zoo], tmp_path: Path
) -> None:
    root, train, unlabeled, _ = trained
    teacher = root / "ens" / "stacker" / "predictions"
    args = (STUDENTS, teacher, train, unlabeled)
    train_students(*args, tmp_path / "every", full=True, unlabeled=unlabeled,
                   zoo_dir=root / "zoo")  # fmt: skip
    store = Predictions.open(tmp_path / "every" / "mlp" / "predictions")
    assert store.model["pseudo_rows"] == len(unlabeled) and store.model["distilled"]

    top1 = predict_teacher(teacher, root / "zoo", train, unlabeled).scores[:, 0]
    threshold = float(np.median(top1))  # keeps about half the rows
    train_students(*args, tmp_path / "sure", unlabeled=unlabeled, zoo_dir=root / "zoo",
                   threshold=threshold)  # fmt: skip
    store = Predictions.open(tmp_path / "sure" / "mlp" / "predictions")
    assert store.model["pseudo_rows"] == (top1 >= threshold).sum() < len(unlabeled)
    assert store.model["folds"] == 3


def test_unlabeled_rows_without_the_zoo_or_of_other_classes_are_refused(
    trained: tuple[Path, Dataset, Dataset, Zoo], tmp_path: Path
) -> None:
    root, train, unlabeled, _ = trained
    teacher = root / "ens" / "blend-mean"
    with pytest.raises(ConfigError, match=r"trained zoo behind the teacher.*--zoo-dir"):
        train_students(STUDENTS, teacher, train, None, tmp_path / "out", unlabeled=unlabeled)
    wide = Layout(train.layout.features, n_classes=train.n_classes + 1)
    with DatasetWriter(tmp_path / "wide", wide) as writer:
        features = {"rgb": np.zeros((1, 8), np.float32), "audio": np.zeros((1, 4), np.float32)}
        writer.write_batch(Batch(["a"], [[0]], features=features))
    with pytest.raises(ConfigError, match=r"wide has 7 multilabel classes, training data 6"):
        train_students(STUDENTS, teacher, train, None, tmp_path / "out",
                       unlabeled=Dataset.open(tmp_path / "wide"), zoo_dir=root / "zoo")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_several_lams_each_student_keeps_the_best_on_validation(
    trained: tuple[Path, Dataset, Dataset, Zoo], tmp_path: Path
) -> None:
    """Out of fold the figure is the out-of-fold metric; on every row it is the metric on the
    rows the training held out: the test split is never looked at (it has no labels here)."""
    root, train, _, _ = trained
    teacher = root / "ens" / "stacker" / "predictions"
    oof = train_students(STUDENTS, teacher, train, None, tmp_path / "oof", lam=[0.5, 1.0])
    tried = {
        lam: Predictions.open(tmp_path / "oof" / name / "mlp" / "predictions")
        for lam, name in ((1.0, "labels"), (0.5, "lam-0.5"))
    }
    assert not tried[1.0].model.get("distilled") and tried[0.5].model["distilled"]
    best = max(tried, key=lambda lam: (tried[lam].fold_metrics["oof"]["metric"], lam == 1.0))
    (student,) = oof.members
    assert student.oof_metric == tried[best].fold_metrics["oof"]["metric"]
    full = train_students(STUDENTS, teacher, train, train, tmp_path / "full", lam=[1.0, 0.0],
                          full=True)  # fmt: skip
    assert len(full.members) == 1 and (tmp_path / "full" / "lam-0" / "mlp" / "full").is_dir()
    with pytest.raises(ConfigError, match=r"distill\.lam: 2 is outside \[0, 1\]"):
        train_students(STUDENTS, teacher, train, None, tmp_path / "bad", lam=[2.0])
