"""retrain_classifier (cRT): only the classifier changes, the tail improves, video and frame
level, flags and modes restored, bad input."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import random_batch
from tests.longtail.conftest import HEAD, TAIL, TRAIN, train_network
from webly.data import Dataset, DatasetWriter, FeatureSpec, Layout
from webly.errors import ConfigError, DataError
from webly.longtail import band_report, retrain_classifier, tau_sweep
from webly.models import create_model
from webly.train import FitResult, iter_scores

CRT = replace(TRAIN, epochs=20, sampler="instance")  # retrain_classifier switches to "class"


@pytest.fixture(scope="module")
def mlp(long_tail: tuple[Dataset, Dataset], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An MLP with BatchNorm, dropout and a BNNeck embedding, fitted instance-balanced."""
    return train_network(
        "mlp", long_tail[0], tmp_path_factory.mktemp("mlp"),
        hidden=[16], batchnorm=True, dropout=0.2, embedding=8, bnneck=True,
    )  # fmt: skip


def _changed(before: dict[str, torch.Tensor], net: torch.nn.Module) -> list[str]:
    after = net.state_dict()
    return [k for k in before if not torch.equal(before[k].cpu(), after[k].cpu())]


def _tail(net: Any, train: Dataset, valid: Dataset) -> dict[str, float]:
    probs = np.concatenate([p for _, p in iter_scores(net, valid, ("x",))])
    return band_report(probs, valid.labels, train.labels, head=HEAD, tail=TAIL).values


@pytest.mark.slow
def test_crt_changes_only_the_classifier_and_lifts_the_tail(
    mlp: Any, long_tail: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, valid = long_tail
    net = copy.deepcopy(mlp)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = retrain_classifier(net, train, valid, CRT, None, tmp_path / "crt")
    assert isinstance(result, FitResult) and result.best_metric is not None
    # backbone, embedding and BNNeck (weights and running statistics) bit-identical
    assert _changed(before, net) == ["classifier.weight", "classifier.bias"]
    assert all(p.requires_grad for p in net.parameters())
    assert all(m.training for m in net.modules())  # modes as they were
    saved = torch.load(tmp_path / "crt" / "checkpoint.pt", weights_only=True)
    assert saved["config"]["sampler"] == "class"
    old, new = _tail(mlp, train, valid), _tail(net, train, valid)
    assert new["tail"] > old["tail"] and new["medium"] >= old["medium"]
    assert new["head"] >= old["head"] - 0.05


def test_crt_is_deterministic_and_can_keep_the_classifier(
    mlp: Any, long_tail: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, _ = long_tail
    short = replace(CRT, epochs=1)
    nets = [copy.deepcopy(mlp) for _ in range(3)]
    for i, net in enumerate(nets):
        retrain_classifier(net, train, None, short, ("x",), tmp_path / f"r{i}", reinit=i < 2)
    assert torch.equal(nets[0].classifier.weight, nets[1].classifier.weight)
    # without reinit, one epoch moves the trained classifier only a little
    assert (nets[2].classifier.weight - mlp.classifier.weight).abs().max() < (
        nets[0].classifier.weight - mlp.classifier.weight
    ).abs().max()


def test_crt_with_ema_and_mixup_keeps_the_rest_bit_identical(
    mlp: Any, long_tail: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, valid = long_tail
    net = copy.deepcopy(mlp)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    config = replace(CRT, epochs=2, ema_decay=0.9, mixup_alpha=0.4)
    retrain_classifier(net, train, valid, config, None, tmp_path / "ema")
    assert _changed(before, net) == ["classifier.weight", "classifier.bias"]


def test_frame_level_crt_and_sweep(tmp_path: Path) -> None:
    layout = Layout(features=(FeatureSpec("rgb", 6, "uint8", level="frame"),), n_classes=5)
    with DatasetWriter(tmp_path / "frames", layout) as writer:
        writer.write_batch(random_batch(np.random.default_rng(0), layout, 40, max_frames=9))
    ds = Dataset.open(tmp_path / "frames")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = create_model("dbof", 5, {"rgb": 6}, cluster_size=8, hidden=8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    config = replace(CRT, epochs=2, batch_size=16, max_frames=4)
    retrain_classifier(net, ds, ds, config, ("rgb",), tmp_path / "crt")
    assert _changed(before, net) == ["classifier.weight", "classifier.bias"]
    sweep = tau_sweep(net, ds, ds.labels, taus=(0.0, 1.0), head=10, tail=5)
    assert sweep.metric == "gap@20" and len(sweep.rows) == 2


def test_crt_restores_flags_after_an_error(
    mlp: Any, long_tail: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    train, _ = long_tail
    net = copy.deepcopy(mlp)
    net.eval()
    net.neck[0].weight.requires_grad_(False)
    other = train.subset(np.arange(10))
    other.layout = replace(train.layout, n_classes=5)  # a validation set of other classes
    with pytest.raises(DataError, match="validation data has 5") as info:
        retrain_classifier(net, train, other, CRT, None, tmp_path / "w")
    assert "\n" not in str(info.value)
    flags = {name: p.requires_grad for name, p in net.named_parameters()}
    assert flags.pop("neck.0.weight") is False and all(flags.values())
    assert not any(m.training for m in net.modules())


def test_crt_refuses_a_network_without_a_linear_classifier(
    long_tail: tuple[Dataset, Dataset], tmp_path: Path
) -> None:
    net = create_model("moe", 4, {"x": 8})
    with pytest.raises(ConfigError, match="'moe' has a MixtureOfExperts") as info:
        retrain_classifier(net, long_tail[0], None, CRT, None, tmp_path / "w")
    assert "\n" not in str(info.value)
    assert all(p.requires_grad for p in net.parameters())
    with pytest.raises(ConfigError, match="which feature groups _Bare reads; pass groups="):
        retrain_classifier(_Bare(), long_tail[0], None, CRT, None, tmp_path / "w")


class _Bare(torch.nn.Module):
    """A linear classifier with no `Network` config (so no input groups)."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = torch.nn.Linear(8, 4)
