"""Video-level backbones: shapes, modality streams, the mixture of experts' arithmetic."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from webly.errors import ConfigError
from webly.models import create_model
from webly.models.video import MixtureOfExperts, mlp, moe, resnet_av

INPUT_DIMS = {"rgb": 24, "audio": 8}


def test_logistic_is_one_linear_layer() -> None:
    model = create_model("logistic", 7, INPUT_DIMS)
    assert model.backbone.out_dim == 32
    assert sum(p.numel() for p in model.parameters()) == 32 * 7 + 7


@pytest.mark.parametrize(
    ("input_dims", "groups", "streams"),
    [
        ({"rgb": 24, "audio": 8}, None, 2),
        ({"rgb": 24, "audio": 8}, ("audio",), 1),
        ({"rgb": 24, "audio": 8}, ("rgb",), 1),
        ({"audio": 8}, None, 1),
        ({"image": 12}, None, 1),
        ({"mean_rgb": 24, "mean_audio": 8}, None, 2),  # video-level groups of a frame store
        ({"mean_rgb": 24, "mean_audio": 8}, ("mean_audio",), 1),
    ],
)
def test_resnet_av_runs_on_the_modalities_present(
    input_dims: dict[str, int], groups: tuple[str, ...] | None, streams: int
) -> None:
    torch.manual_seed(0)
    model = create_model("resnet_av", 5, input_dims, groups=groups, inner=16, blocks=2)
    assert model.backbone.out_dim == streams * 16
    assert len(model.backbone.blocks) == 2
    logits = model(torch.randn(3, sum(input_dims.values())))  # (B, C)
    assert logits.shape == (3, 5)
    logits.sum().backward()


def test_resnet_av_visual_stream_takes_every_non_audio_group() -> None:
    torch.manual_seed(0)
    net = resnet_av({"rgb": 4, "audio": 3, "motion": 5}, blocks=0, inner=6).eval()
    stems = [m.in_features for m in net.modules() if isinstance(m, nn.Linear)]
    assert stems == [9, 3]  # visual (rgb + motion), then audio
    x = torch.randn(2, 12)
    changed = x.clone()
    changed[:, 4:7] += 1.0  # the audio columns
    with torch.no_grad():
        before, after = net(x), net(changed)  # (B, 2 * inner): visual, then audio
    assert torch.equal(before[:, :6], after[:, :6])
    assert not torch.equal(before[:, 6:], after[:, 6:])


def test_resnet_av_blocks_mix_the_modalities() -> None:
    torch.manual_seed(0)
    net = resnet_av({"rgb": 4, "audio": 3}, blocks=1, inner=6, dropout=0.0).eval()
    x = torch.randn(2, 7)
    changed = x.clone()
    changed[:, 4:] += 1.0
    with torch.no_grad():
        assert not torch.equal(net(x)[:, :6], net(changed)[:, :6])


@pytest.mark.parametrize(
    "hparams", [{"blocks": -1}, {"inner": 0}, {"dropout": 1.0}, {"dropout": -0.1}]
)
def test_resnet_av_refuses_bad_hyper_parameters(hparams: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="resnet_av"):
        resnet_av(INPUT_DIMS, **hparams)  # type: ignore[arg-type]


def test_mlp_hidden_sizes_and_options() -> None:
    net = mlp(INPUT_DIMS, hidden=(16, 8), activation="gelu", dropout=0.1, batchnorm=True)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 16), (16, 8)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net.modules()) == 2
    assert sum(isinstance(m, nn.GELU) for m in net.modules()) == 2
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 2
    assert net.out_dim == 8
    assert net(torch.randn(4, 32)).shape == (4, 8)


def test_mlp_plain_has_no_batchnorm_or_dropout() -> None:
    net = mlp(INPUT_DIMS, hidden=[5])
    assert [type(m) for m in net.layers] == [nn.Linear, nn.ReLU]


@pytest.mark.parametrize(
    ("hparams", "message"),
    [
        ({"hidden": ()}, "positive widths"),
        ({"hidden": (8, 0)}, "positive widths"),
        ({"activation": "swish"}, "relu, gelu, silu, tanh"),
        ({"dropout": 1.5}, r"\[0, 1\)"),
    ],
)
def test_mlp_refuses_bad_hyper_parameters(hparams: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mlp(INPUT_DIMS, **hparams)  # type: ignore[arg-type]


def test_moe_probabilities_are_the_gated_expert_mixture() -> None:
    torch.manual_seed(0)
    head = MixtureOfExperts(dim=10, n_classes=4, experts=3)
    x = torch.randn(6, 10)
    gates = head.gate_weights(x).exp()  # (B, C, E + 1)
    torch.testing.assert_close(gates.sum(-1), torch.ones(6, 4))
    experts = torch.sigmoid(head.expert(x).view(6, 4, 3))  # (B, C, E)
    expected = (gates[..., :3] * experts).sum(-1)  # (B, C), the starter code's formula
    probabilities = torch.sigmoid(head(x))
    torch.testing.assert_close(probabilities, expected)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_moe_logits_stay_finite_on_extreme_inputs() -> None:
    torch.manual_seed(0)
    head = MixtureOfExperts(dim=10, n_classes=4, experts=2)
    x = torch.randn(6, 10, requires_grad=True)
    logits = head(1e4 * x)  # (B, C)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_moe_refuses_no_experts() -> None:
    with pytest.raises(ConfigError, match="experts is 0"):
        moe(INPUT_DIMS, experts=0)


def test_moe_network_classifier_is_the_mixture_of_experts() -> None:
    model = create_model("moe", 7, INPUT_DIMS, experts=2, embedding=16)
    assert isinstance(model.classifier, MixtureOfExperts)
    assert model.classifier.gate.in_features == 16
