"""tau_normalize, apply_tau and tau_sweep: the math, the sweep's table and choice on a
long-tailed toy problem, multi-label, and every bad input."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.longtail.conftest import DIM, HEAD, N_CLASSES, TAIL, train_network, write_store
from webly.data import Dataset
from webly.errors import ConfigError, DataError
from webly.longtail import TauSweep, apply_tau, tau_normalize, tau_sweep
from webly.models import create_model

WEIGHT = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def logistic(long_tail: tuple[Dataset, Dataset], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Logistic regression fitted with instance-balanced sampling on the long-tailed split."""
    return train_network("logistic", long_tail[0], tmp_path_factory.mktemp("logistic"))


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_tau_normalize_math(as_tensor: bool) -> None:
    weight: Any = torch.from_numpy(WEIGHT.copy()) if as_tensor else WEIGHT.copy()
    same = tau_normalize(weight, 0.0)
    assert type(same) is type(weight) and same.dtype == weight.dtype
    assert np.array_equal(np.asarray(same), WEIGHT)  # tau = 0: bit-identical
    unit = np.asarray(tau_normalize(weight, 1.0))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), [1, 1, 0, 1], rtol=1e-6)
    np.testing.assert_allclose(unit[0], [0.6, 0.8], rtol=1e-6)  # directions kept
    half = np.asarray(tau_normalize(weight, 0.5))
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), [5**0.5, 0.5**0.5, 0, 1], rtol=1e-6)
    assert np.array_equal(np.asarray(weight), WEIGHT)  # input untouched


def test_apply_tau_in_place_bias_zeroed_or_kept() -> None:
    net = create_model("logistic", N_CLASSES, {"x": 2})
    with torch.no_grad():
        net.classifier.weight.copy_(torch.from_numpy(WEIGHT))
        net.classifier.bias.fill_(0.5)
    kept = copy.deepcopy(net)
    apply_tau(net, 1.0)
    apply_tau(kept, 1.0, bias="keep")
    np.testing.assert_allclose(net.classifier.weight.detach().norm(dim=1), [1, 1, 0, 1], rtol=1e-6)
    assert torch.equal(net.classifier.weight, kept.classifier.weight)
    assert torch.all(net.classifier.bias == 0) and torch.all(kept.classifier.bias == 0.5)


def test_sweep_picks_a_tau_that_lifts_the_tail(
    logistic: Any, long_tail: tuple[Dataset, Dataset]
) -> None:
    train, valid = long_tail
    before = copy.deepcopy(logistic)
    logistic.train()
    sweep = tau_sweep(logistic, valid, train.labels, head=HEAD, tail=TAIL)
    assert isinstance(sweep, TauSweep) and _equal(logistic, before)  # network untouched
    assert logistic.training  # and its mode too
    assert sweep.metric == "mean_class_error" and sweep.bias == "zero"
    assert [row.tau for row in sweep.rows] == pytest.approx(np.linspace(0, 2, 11))
    errors = [row.metric for row in sweep.rows]
    assert (
        sweep.best.metric == min(errors)
        and sweep.best_tau == sweep.rows[errors.index(min(errors))].tau
    )
    assert sweep.best_tau > 0
    tail = {row.tau: row.bands.values["tail"] for row in sweep.rows}
    assert sweep.baseline.bands.n_classes == {"head": 2, "medium": 1, "tail": 1}
    # tau > 0 measurably improves the tail over tau = 0 and over the classifier as trained
    assert tail[sweep.best_tau] >= tail[0.0] + 0.1
    assert tail[sweep.best_tau] >= sweep.baseline.bands.values["tail"] + 0.1
    assert sweep.best.metric < sweep.baseline.metric
    table = sweep.format()
    assert "as trained" in table and table.count("\n") == 12 and table.count(" *") == 1


def test_sweep_scores_match_the_network_after_apply_tau(
    logistic: Any, long_tail: tuple[Dataset, Dataset]
) -> None:
    train, valid = long_tail
    sweep = tau_sweep(
        logistic, valid, train.labels, taus=[0.0, 0.7], metric="accuracy", bias="keep"
    )
    assert sweep.rows[0].metric == pytest.approx(sweep.baseline.metric)  # keep + tau 0 = as trained
    net = copy.deepcopy(logistic)
    apply_tau(net, 0.7, bias="keep")
    x = torch.from_numpy(valid.features(np.arange(len(valid)), ("x",)))
    with torch.no_grad():
        predicted = net.eval()(x.to(net.classifier.weight.device)).argmax(1).cpu()
    accuracy = float((predicted.numpy() == valid.labels.indices).mean())
    assert sweep.rows[1].metric == pytest.approx(accuracy)


def test_multilabel_sweep_uses_gap(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, DIM))
    labels = [np.flatnonzero(row[:N_CLASSES] > 0.5 + row_i % 3) for row_i, row in enumerate(x)]
    train = write_store(tmp_path / "t", labels[:80], x[:80], "multilabel")
    valid = write_store(tmp_path / "v", labels[80:], x[80:], "multilabel")
    net = train_network("mlp", train, tmp_path / "w", hidden=[8])
    sweep = tau_sweep(net, valid, train.labels, taus=(0.0, 1.0))
    assert sweep.metric == "gap@20" and sweep.best_tau in (0.0, 1.0)
    assert all(0.0 <= row.metric <= 1.0 for row in sweep.rows)
    assert sweep.baseline.bands.metric == "average_precision"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: tau_normalize(WEIGHT, -0.5), ConfigError, "tau is -0.5"),
        (lambda: tau_normalize(WEIGHT, float("inf")), ConfigError, "tau is inf"),
        (lambda: tau_normalize(WEIGHT[0], 1.0), DataError, r"shape \(2,\)"),
        (lambda: tau_normalize(WEIGHT.astype(int), 1.0), DataError, "dtype int"),
        (
            lambda: apply_tau(create_model("logistic", 2, {"x": 2}), 1.0, "drop"),  # type: ignore[arg-type]
            ConfigError,
            "bias is 'drop'",
        ),
        (
            lambda: apply_tau(create_model("moe", 2, {"x": 2}), 1.0),
            ConfigError,
            "'moe' has a MixtureOfExperts as its final classifier",
        ),
        (lambda: apply_tau(torch.nn.Linear(2, 2), 1.0), ConfigError, "has no classifier"),
    ],
)
def test_bad_input_one_line(call: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"taus": [0.5, -1.0]}, ConfigError, r"taus are \[0.5, -1.0\]"),
        ({"taus": []}, ConfigError, r"taus are \[\]"),
        ({"metric": "f1"}, ConfigError, "metric is 'f1'"),
        ({"bias": "scale"}, ConfigError, "bias is 'scale'"),
        ({"train_labels": np.eye(3)}, DataError, "labels have 3 classes but n_classes is 4"),
        ({"network": "moe"}, ConfigError, "not a linear layer"),
        ({"network": "wrong classes"}, DataError, "predicts 3 classes, the validation data has 4"),
    ],
)
def test_sweep_bad_input_one_line(
    logistic: Any, long_tail: tuple[Dataset, Dataset], kwargs: dict, error: type, match: str
) -> None:
    train, valid = long_tail
    kwargs = {"train_labels": train.labels, **kwargs}
    network = {
        "moe": create_model("moe", N_CLASSES, {"x": DIM}),
        "wrong classes": create_model("logistic", 3, {"x": DIM}),
    }.get(kwargs.pop("network", ""), logistic)
    with pytest.raises(error, match=match) as info:
        tau_sweep(network, valid, **kwargs)
    assert "\n" not in str(info.value)
