"""`run_clean`'s data inputs from the training store: features for ``cluster``, texts and
class descriptions for ``semantic``, none for prediction-only methods, the recipe's own kept."""

from __future__ import annotations

import numpy as np
import pytest

from webly.clean.run import store_inputs
from webly.data import Dataset
from webly.data.products import ProductsLikeConfig, synth_products_like


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out = tmp_path_factory.mktemp("products")
    config = ProductsLikeConfig(n_classes=6, n_products=30, image_dim=8, latent_dim=4)
    synth_products_like(out, config)
    return Dataset.open(out / "train")


def test_cluster_gets_the_video_level_features(products: Dataset) -> None:
    found = store_inputs("cluster", {}, products)
    assert set(found) == {"features"}
    expected = products.features(np.arange(len(products)), ["image"])
    np.testing.assert_array_equal(found["features"], expected)


def test_semantic_gets_texts_and_descriptions(products: Dataset) -> None:
    found = store_inputs("semantic", {"threshold": 0.5}, products)
    assert products.texts is not None and list(found["texts"]) == list(products.texts)
    assert found["class_descriptions"] == list(products.layout.class_descriptions or ())
    assert len(found["class_descriptions"]) == 6
    given = store_inputs("semantic", {"class_descriptions": ["a"] * 6}, products)
    assert "class_descriptions" not in given and "texts" in given  # the recipe's own wins


def test_prediction_only_methods_and_stores_without_text(
    products: Dataset, small_store: Dataset
) -> None:
    assert store_inputs("confident_learning", {}, products) == {}
    found = store_inputs("semantic", {}, small_store)  # no text column: the method says so
    assert "texts" not in found
    assert found["class_descriptions"] == [str(c) for c in range(20)]  # names stand in
