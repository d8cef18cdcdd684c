from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tests.conftest import random_batch
from webly.data import Dataset, DatasetWriter, FeatureSpec, Layout
from webly.data.relabel import add_noise, class_means, margin_difficulty
from webly.errors import ConfigError, DataError


def _store(path: Path, task: str, n: int = 2000, frames: bool = False) -> Path:
    features = [FeatureSpec("emb", 8, "uint8"), FeatureSpec("extra", 3, "float16")]
    if frames:
        features.append(FeatureSpec("clip", 4, "uint8", level="frame"))
    layout = Layout(
        features=tuple(features),
        n_classes=12,
        task=task,  # type: ignore[arg-type]
        has_group=True,
        has_text=True,
    )
    rng = np.random.default_rng(0)
    with DatasetWriter(path, layout, shard_bytes=20_000) as writer:
        for part in range(4):
            batch = random_batch(rng, layout, n // 4, prefix=f"r{part}-", max_frames=3)
            # Features carry the class, so class means and difficulty mean something.
            first = np.array([np.min(labels) for labels in batch.labels])
            batch.features["emb"] = np.clip(
                np.eye(12, 8)[first] + rng.normal(scale=0.4, size=(len(first), 8)), -2, 2
            )
            writer.write_batch(batch)
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_multiclass_noise_copies_everything_else(tmp_path: Path) -> None:
    store = _store(tmp_path / "in", "multiclass", frames=True)
    before = _digest(store)
    original = Dataset.open(store)
    noisy = add_noise(store, tmp_path / "out", "pair", 0.3, seed=2)
    assert _digest(store) == before
    assert len(list(original.iter_chunks())) > 1  # copied chunk by chunk
    assert (noisy.clean_labels != original.labels).nnz == 0
    changed = noisy.labels.indices != noisy.clean_labels.indices
    assert changed.mean() == pytest.approx(0.3, abs=0.01)
    rows = np.arange(len(original))
    for group in ("emb", "extra"):
        np.testing.assert_array_equal(
            noisy.features(rows, (group,)), original.features(rows, (group,))
        )
    np.testing.assert_array_equal(
        noisy.frames(rows[:50], ("clip",))[0], original.frames(rows[:50], ("clip",))[0]
    )
    assert list(noisy.ids) == list(original.ids) and list(noisy.texts) == list(original.texts)
    assert list(noisy.groups) == list(original.groups)
    source = noisy.manifest["source"]
    assert (source["kind"], source["rate"], source["seed"], source["feature_group"]) == (
        "pair",
        0.3,
        2,
        "emb",
    )
    assert source["realized"]["rows_changed"] == pytest.approx(changed.mean())


def test_noise_on_top_keeps_the_first_truth(tmp_path: Path) -> None:
    store = _store(tmp_path / "in", "multiclass")
    once = add_noise(store, tmp_path / "once", "symmetric", 0.2, seed=0)
    twice = add_noise(tmp_path / "once", tmp_path / "twice", "instance", 0.2, seed=1)
    assert (twice.clean_labels != once.clean_labels).nnz == 0
    source = twice.manifest["source"]
    assert source["realized"]["rows_changed"] == pytest.approx(0.2, abs=0.03)
    assert source["realized_vs_truth"]["rows_changed"] > 0.3


def test_multilabel_missing_and_spurious(tmp_path: Path) -> None:
    store = _store(tmp_path / "in", "multilabel")
    n_labels = Dataset.open(store).labels.nnz
    dropped = add_noise(store, tmp_path / "missing", "missing", 0.3, seed=0)
    assert dropped.labels.nnz == n_labels - round(0.3 * n_labels)
    assert dropped.manifest["source"]["realized"]["missing"] == pytest.approx(0.3, abs=0.01)
    added = add_noise(store, tmp_path / "spurious", "spurious", 0.1, seed=0, feature_group="extra")
    assert added.manifest["source"]["realized"]["spurious"] == pytest.approx(0.1 / 1.1, abs=0.01)
    assert added.manifest["source"]["feature_group"] == "extra"


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    store = _store(tmp_path / "in", "multiclass", n=400)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        add_noise(store, tmp_path / name, "instance", 0.2, seed=seed)
    shards = {n: _digest(tmp_path / n) for n in "abc"}
    assert shards["a"] == shards["b"] != shards["c"]


def test_class_means_and_difficulty() -> None:
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [1.5, 0.0]])
    labels = sp.csr_matrix(np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]]))
    means = class_means([(x[:2], labels[:2]), (x[2:], labels[2:])], 3)
    np.testing.assert_allclose(means[:2], [[1.0, 0.0], [0.0, 4.0]])
    assert np.isnan(means[2]).all()  # no row holds class 2
    difficulty = margin_difficulty(x, labels, means)
    np.testing.assert_allclose(difficulty, [1 / np.hypot(0, 4), 1 / np.hypot(2, 4), 0.0, 0.0])


@pytest.mark.parametrize(
    ("task", "kwargs", "error", "message"),
    [
        ("multiclass", {"kind": "flip"}, ConfigError, "noise kind 'flip' is unknown; use one of"),
        ("multiclass", {"rate": 1.0}, ConfigError, r"noise rate 1.0 is outside \[0, 1\)"),
        (
            "multilabel",
            {"kind": "symmetric"},
            ConfigError,
            "symmetric noise does not fit a multilabel dataset; use one of missing, spurious, "
            "instance",
        ),
        (
            "multiclass",
            {"kind": "missing"},
            ConfigError,
            "missing noise does not fit a multiclass dataset; use one of symmetric, pair",
        ),
        ("multiclass", {"feature_group": "clip"}, DataError, "'clip' is frame level"),
        ("multiclass", {"feature_group": "nope"}, DataError, "'nope' is not in this dataset"),
    ],
)
def test_bad_requests_write_nothing(
    tmp_path: Path, task: str, kwargs: dict[str, object], error: type, message: str
) -> None:
    store = _store(tmp_path / "in", task, n=40, frames=True)
    before = _digest(store)
    arguments = {"kind": "pair", "rate": 0.2, **kwargs}
    with pytest.raises(error, match=message):
        add_noise(store, tmp_path / "out", **arguments)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"] and _digest(store) == before


def test_bad_paths_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        add_noise(tmp_path / "missing", tmp_path / "out", "pair", 0.2)
    store = _store(tmp_path / "in", "multiclass", n=40)
    before = _digest(store)
    with pytest.raises(ConfigError, match="is the input"):
        add_noise(store, store, "pair", 0.2, overwrite=True)
    with pytest.raises(ConfigError, match="holds the input"):
        add_noise(store, tmp_path, "pair", 0.2, overwrite=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        add_noise(store, tmp_path / "out", "pair", 0.2)
    with pytest.raises(ConfigError, match="is not a webly dataset"):
        add_noise(store, tmp_path / "out", "pair", 0.2, overwrite=True)  # not webly's to delete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x"] and _digest(store) == before
    (tmp_path / "out" / "x").unlink()
    add_noise(store, tmp_path / "out", "symmetric", 0.1)
    add_noise(store, tmp_path / "out", "pair", 0.2, overwrite=True)  # a dataset: replaced
    assert Dataset.open(tmp_path / "out").layout.has_clean_labels
    assert Dataset.open(tmp_path / "out").manifest["source"]["kind"] == "pair"
