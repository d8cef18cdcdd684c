from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from webly.data import Dataset
from webly.data.products import ProductsLikeConfig, ProductsSummary, synth_products_like
from webly.data.relabel import class_means, confusable_from_means
from webly.errors import ConfigError, DataError

SMALL = ProductsLikeConfig(n_classes=40, n_products=400, test_products_per_class=1, seed=3)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProductsSummary, Path]:
    out = tmp_path_factory.mktemp("products") / "out"
    return synth_products_like(out, ProductsLikeConfig()), out


def test_splits_layout_and_manifest(default_run: tuple[ProductsSummary, Path]) -> None:
    summary, out = default_run
    train, test = Dataset.open(out / "train"), Dataset.open(out / "test")
    assert (len(train), len(test)) == (summary.train_rows, summary.test_rows)
    assert train.task == test.task == "multiclass" and train.n_classes == 1000
    assert train.layout.has_clean_labels and not test.layout.has_clean_labels
    assert train.layout.feature("image").dtype == "float16"
    assert train.layout.feature("image").dim == 256
    source = train.manifest["source"]
    assert source["config"] == json.loads(json.dumps(ProductsLikeConfig().__dict__))
    assert source["noise"] == pytest.approx(summary.noise)
    # The test split is clean and balanced: every class, test_products_per_class products each.
    test_products = {(g, int(c)) for g, c in zip(test.groups, test.labels.indices, strict=True)}
    per_class = np.bincount([c for _, c in test_products], minlength=1000)
    assert (per_class == 2).all()


def test_long_tail_with_every_class_present(default_run: tuple[ProductsSummary, Path]) -> None:
    summary, out = default_run
    train = Dataset.open(out / "train")
    rows_per_class = np.bincount(train.clean_labels.indices, minlength=train.n_classes)
    assert rows_per_class.min() >= 1
    ratio = rows_per_class.max() / rows_per_class.min()
    assert ratio >= 1000 and ratio == pytest.approx(summary.head_tail_ratio)


def test_products_have_one_to_four_instances_sharing_a_latent(
    default_run: tuple[ProductsSummary, Path],
) -> None:
    _, out = default_run
    train = Dataset.open(out / "train")
    groups, clean = train.groups, train.clean_labels.indices
    _, sizes = np.unique(groups, return_counts=True)
    assert sizes.min() == 1 and sizes.max() == 4
    # Rows of a product carry one clean label, one given label and one title.
    for column in (clean, train.labels.indices, train.texts):
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        assert all(len(set(part)) == 1 for part in np.split(column, starts[1:]))
    # Instances of one product are closer than instances of other products of the same class.
    rows = np.flatnonzero(clean == 0)[:400]
    x = train.features(rows, groups=("image",))
    dist = np.linalg.norm(x[:, None] - x[None], axis=2)
    same = groups[rows][:, None] == groups[rows][None, :]
    off_diagonal = ~np.eye(rows.size, dtype=bool)
    assert dist[same & off_diagonal].mean() < 0.7 * dist[~same].mean()


def test_fine_grained_pairs_are_confusable(default_run: tuple[ProductsSummary, Path]) -> None:
    _, out = default_run
    train = Dataset.open(out / "train")
    clean = train.clean_labels
    means = class_means([(train.features(np.arange(len(train)), ("image",)), clean)], 1000)
    nearest = confusable_from_means(means)[:100, 0]  # the 100 most frequent classes
    assert (nearest == (np.arange(100) ^ 1)).mean() >= 0.9
    names = train.class_names
    assert all(names[2 * i].split()[-1] == names[2 * i + 1].split()[-1] for i in range(500))
    assert len(set(names)) == 1000
    # Pair and instance noise (0.15 of the 0.2 changed) relabel a product as its twin.
    changed = clean.indices != train.labels.indices
    to_twin = (train.labels.indices[changed] == (clean.indices[changed] ^ 1)).mean()
    assert 0.65 < to_twin < 0.85


def test_titles_and_descriptions(default_run: tuple[ProductsSummary, Path]) -> None:
    _, out = default_run
    test, train = Dataset.open(out / "test"), Dataset.open(out / "train")
    names = test.class_names
    naming = np.mean([names[c] in t for t, c in zip(test.texts, test.labels.indices, strict=True)])
    assert naming == pytest.approx(0.7 + 0.15, abs=0.03)  # clean: query titles name the class
    query_only = np.mean(
        [names[c] == t for t, c in zip(train.texts, train.labels.indices, strict=True)]
    )
    assert query_only == pytest.approx(0.15, abs=0.02)
    descriptions = test.layout.class_descriptions
    assert descriptions is not None and len(descriptions) == 1000
    for text, cls in zip(test.texts[:300], test.labels.indices[:300], strict=True):
        assert names[cls] in descriptions[cls]
        if names[cls] in text and text != names[cls]:  # "brand colour <name> attribute size"
            attribute = text.split(names[cls], 1)[1].split()[0]
            assert attribute in descriptions[cls].replace(",", " ").split()


def test_realized_noise_rates_match_the_config(tmp_path: Path) -> None:
    config = ProductsLikeConfig(
        n_classes=200, n_products=12_000, symmetric=0.1, pair=0.2, instance=0.15, seed=1
    )
    summary = synth_products_like(tmp_path / "out", config)
    for kind in ("symmetric", "pair", "instance"):
        assert summary.noise[kind] == pytest.approx(getattr(config, kind), abs=0.01)
    assert summary.noise["products_changed"] == pytest.approx(0.45, abs=0.01)
    train = Dataset.open(tmp_path / "out" / "train")
    assert (train.labels.indices != train.clean_labels.indices).mean() == pytest.approx(
        summary.noise["rows_changed"]
    )


def test_zero_noise_keeps_the_truth(tmp_path: Path) -> None:
    config = ProductsLikeConfig(n_classes=40, n_products=400, symmetric=0, pair=0, instance=0)
    synth_products_like(tmp_path / "out", config)
    train = Dataset.open(tmp_path / "out" / "train")
    assert (train.labels != train.clean_labels).nnz == 0


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    synth_products_like(tmp_path / "a", SMALL)
    synth_products_like(tmp_path / "b", SMALL)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    synth_products_like(tmp_path / "c", ProductsLikeConfig(**{**SMALL.__dict__, "seed": 4}))
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"symmetric": 1.0}, r"symmetric rate is 1.0; it must be in \[0, 1\)"),
        ({"pair": -0.1}, r"pair rate is -0.1"),
        ({"symmetric": 0.5, "pair": 0.5}, "noise rates sum to 1"),
        ({"n_classes": 1}, "n_classes is 1; use at least 2"),
        ({"n_products": 0}, "n_products is 0"),
        ({"n_products": 10}, "10 products cannot give each of 40 classes one"),
        ({"instances_per_product": (0, 4)}, r"instances_per_product is \(0, 4\)"),
        ({"instances_per_product": (3, 2)}, "1 <= low <= high"),
        ({"title_names_class": 0.9, "title_query_only": 0.2}, "must be at most 1"),
        ({"test_products_per_class": 0}, "test_products_per_class is 0"),
    ],
)
def test_bad_config_writes_nothing(tmp_path: Path, change: dict[str, object], message: str) -> None:
    config = ProductsLikeConfig(**{**SMALL.__dict__, **change})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        synth_products_like(tmp_path / "out", config)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        synth_products_like(out, SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "keep.txt").exists()
    with pytest.raises(ConfigError, match="is not a folder of webly datasets"):
        synth_products_like(out, SMALL, overwrite=True)  # not webly's: never deleted
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    synth_products_like(out, SMALL)
    synth_products_like(out, SMALL, overwrite=True)  # webly's own: replaced
    assert sorted(p.name for p in out.iterdir()) == ["test", "train"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
