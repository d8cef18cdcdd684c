"""TrainConfig.class_weight_power: class re-weighting from a recipe's train settings, the same
as passing `webly.train.class_weights` of the training labels (or of the labels given)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import scipy.sparse as sp
import torch

from webly.data import Dataset
from webly.errors import ConfigError
from webly.models import create_model
from webly.train import TrainConfig, class_weights, fit

CONFIG = TrainConfig(epochs=2, batch_size=32, lr=0.01, seed=0)


def trained(store: Dataset, work: Path, config: TrainConfig, **given: Any) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = create_model("logistic", store.n_classes, {"rgb": 16, "audio": 4})
    fit(net, store, None, config, ("rgb", "audio"), work, **given)
    return net


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_power_is_class_weights_of_the_training_labels(
    small_store: Dataset, tmp_path: Path
) -> None:
    config = TrainConfig(**{**CONFIG.results_settings(), "class_weight_power": 0.5})
    by_power = trained(small_store, tmp_path / "a", config)
    weights = class_weights(small_store.labels, 0.5, n_classes=small_store.n_classes)
    by_hand = trained(small_store, tmp_path / "b", CONFIG, class_weight=weights)
    plain = trained(small_store, tmp_path / "c", CONFIG)
    assert same(by_power, by_hand) and not same(by_power, plain)


def test_power_counts_the_labels_given_in_place_of_the_stores(
    small_store: Dataset, tmp_path: Path
) -> None:
    labels = sp.csr_matrix(small_store.labels.toarray()[:, ::-1])  # other class counts
    config = TrainConfig(**{**CONFIG.results_settings(), "class_weight_power": 1.0})
    by_power = trained(small_store, tmp_path / "a", config, labels=labels)
    weights = class_weights(labels, 1.0)
    by_hand = trained(small_store, tmp_path / "b", CONFIG, labels=labels, class_weight=weights)
    assert same(by_power, by_hand)


def test_settings_leave_an_unset_power_out_and_refuse_a_negative_one() -> None:
    assert "class_weight_power" not in TrainConfig().results_settings()  # earlier hashes hold
    assert TrainConfig(class_weight_power=0.5).results_settings()["class_weight_power"] == 0.5
    for bad in (-0.5, float("nan")):
        with pytest.raises(ConfigError, match=r"class_weight_power is .*; use a value >= 0"):
            TrainConfig(class_weight_power=bad)
    assert TrainConfig(class_weight_power=0).class_weight_power == 0  # every weight 1
