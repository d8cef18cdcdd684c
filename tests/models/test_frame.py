"""Frame-level backbones: masking, model-specific behaviour, learnability on a toy task."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from webly.errors import ConfigError
from webly.models import frame_pooling, frame_sequence, layers, list_models
from webly.models.layers import frame_mask

DIMS = {"rgb": 6, "audio": 2}
Builder = Callable[..., nn.Module]

# (id, builder, small hyper-parameters): every variant whose masking differs
VARIANTS: list[tuple[str, Builder, dict[str, Any]]] = [
    ("dbof-max", frame_pooling.dbof, {"cluster_size": 16, "hidden": 8}),
    ("dbof-mean", frame_pooling.dbof, {"cluster_size": 16, "hidden": 8, "pooling": "mean"}),
    ("netvlad", frame_pooling.netvlad, {"clusters": 4, "hidden": 8}),
    ("netfv", frame_pooling.netfv, {"clusters": 3, "hidden": 8}),
    ("nextvlad", frame_pooling.nextvlad, {"clusters": 4, "n_groups": 4, "hidden": 8}),
    ("attention_pool", frame_pooling.attention_pool, {"heads": 2, "attention_dim": 8}),
    ("lstm-last", frame_sequence.lstm, {"hidden": 8, "layers": 2}),
    ("lstm-bi-attention", frame_sequence.lstm, {"hidden": 8, "bidirectional": True,
                                                "readout": "attention"}),
    ("gru-bi-last", frame_sequence.gru, {"hidden": 8, "bidirectional": True}),
    ("transformer", frame_sequence.transformer, {"dim": 16, "heads": 2, "positions": True}),
    ("td_conv-max", frame_sequence.td_conv, {"channels": 8, "hidden": 8}),
    ("td_conv-sort", frame_sequence.td_conv, {"channels": 8, "hidden": 8, "pooling": "sort",
                                              "top_k": 3}),
]  # fmt: skip
IDS = [v[0] for v in VARIANTS]


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    """Model initialisation draws from torch's global RNG: seed it without leaking state."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


def _batch(lengths: list[int], n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random frames ``(B, T, 8)`` and the mask of ``lengths``."""
    x = torch.randn(len(lengths), n_frames, sum(DIMS.values()))  # (B, T, D)
    return x, frame_mask(torch.tensor(lengths), n_frames)


def _trained_then_eval(model: nn.Module) -> nn.Module:
    """One training step so BatchNorm running statistics are not the identity, then eval."""
    x, mask = _batch([5, 3, 7, 1], 7)
    model(x, mask).sum().backward()
    return model.eval()


def test_all_frame_models_registered() -> None:
    expected = {"dbof", "netvlad", "netfv", "nextvlad", "lstm", "gru", "attention_pool"}
    assert expected | {"transformer", "td_conv"} <= set(list_models("frame"))


@pytest.mark.parametrize(("builder", "hparams"), [v[1:] for v in VARIANTS], ids=IDS)
def test_padding_does_not_change_output(builder: Builder, hparams: dict[str, Any]) -> None:
    model = _trained_then_eval(builder(DIMS, **hparams))
    lengths = [1, 4, 9]
    x, mask = _batch(lengths, 9)
    with torch.no_grad():
        padded = model(x, mask)  # (B, out_dim)
        assert padded.shape == (3, model.out_dim)
        for row, length in enumerate(lengths):
            alone = model(x[row : row + 1, :length], mask[row : row + 1, :length])  # (1, out)
            torch.testing.assert_close(padded[row], alone[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("builder", "hparams"), [v[1:] for v in VARIANTS], ids=IDS)
def test_padded_values_are_ignored(builder: Builder, hparams: dict[str, Any]) -> None:
    model = _trained_then_eval(builder(DIMS, **hparams))
    x, mask = _batch([2, 5, 1], 6)
    garbage = x.masked_fill(~mask.unsqueeze(-1), 1e3)  # (B, T, D)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask), model(garbage, mask))
    model.train()
    garbage.requires_grad_(True)
    model(garbage, mask).sum().backward()
    assert garbage.grad is not None
    assert torch.all(garbage.grad[~mask] == 0)


def test_netvlad_assignment_sums_to_one_over_clusters_on_real_frames() -> None:
    pool = frame_pooling.NetVLAD(8, clusters=5)
    x, mask = _batch([3, 6], 6)
    weights = pool.assignment(x, mask)  # (B, T, K)
    assert weights.shape == (2, 6, 5)
    torch.testing.assert_close(weights.sum(-1)[mask], torch.ones(9))
    assert torch.all(weights[~mask] == 0)


def test_attention_weights_sum_to_one_over_real_frames_per_head() -> None:
    pool = frame_pooling.AttentionPool(8, heads=3, attention_dim=4)
    x, mask = _batch([2, 5], 5)
    weights = pool.weights(x, mask)  # (B, T, H)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 3))
    assert torch.all(weights[~mask] == 0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_readout_is_the_state_at_the_true_last_frame(cell: str, bidirectional: bool) -> None:
    builder = frame_sequence.lstm if cell == "lstm" else frame_sequence.gru
    model = builder(DIMS, hidden=4, bidirectional=bidirectional).eval()
    x, mask = _batch([3, 1, 6], 6)
    with torch.no_grad():
        read = model(x, mask)  # (B, dirs * H)
        for row, length in enumerate([3, 1, 6]):
            steps, _ = model.rnn(x[row : row + 1, :length])  # (1, L, dirs * H)
            expected = steps[0, length - 1, :4]  # forward state at the last real frame
            if bidirectional:
                expected = torch.cat([expected, steps[0, 0, 4:]])  # backward state at frame 0
            torch.testing.assert_close(read[row], expected)


def test_top_k_pool_picks_the_largest_values_per_channel() -> None:
    x, mask = _batch([6, 2], 6)
    pooled = layers.top_k_pool(x, mask, k=3)  # (B, k, D)
    assert pooled.shape == (2, 3, 8)
    expected = x[0].sort(dim=0, descending=True).values[:3]  # (k, D)
    torch.testing.assert_close(pooled[0], expected)
    torch.testing.assert_close(pooled[1, :2], x[1, :2].sort(dim=0, descending=True).values)
    assert torch.all(pooled[1, 2] == 0)  # fewer real frames than k: zeros
    short = layers.top_k_pool(x[:, :2], mask[:, :2], k=4)  # T < k
    assert short.shape == (2, 4, 8)
    assert torch.all(short[:, 2:] == 0)


def test_transformer_without_positions_ignores_repeats_of_one_frame() -> None:
    model = frame_sequence.transformer(DIMS, dim=16, heads=2).eval()
    frame = torch.randn(1, 1, 8)  # (1, 1, D)
    with torch.no_grad():
        outputs = [model(frame.expand(1, t, 8), torch.ones(1, t, dtype=torch.bool)) for t in (1, 5)]
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("builder", "hparams", "word"),
    [
        (frame_pooling.dbof, {"pooling": "sum"}, "pooling"),
        (frame_pooling.netvlad, {"clusters": 0}, "clusters"),
        (frame_pooling.nextvlad, {"n_groups": 3}, "n_groups"),
        (frame_sequence.lstm, {"readout": "first"}, "readout"),
        (frame_sequence.transformer, {"dim": 10, "heads": 4}, "heads"),
        (frame_sequence.transformer, {"dropout": 1.0}, "dropout"),
        (frame_sequence.td_conv, {"kernel": 2}, "kernel"),
        (frame_sequence.td_conv, {"pooling": "mean"}, "pooling"),
    ],
)
def test_bad_hyper_parameters_are_refused_in_one_line(
    builder: Builder, hparams: dict[str, Any], word: str
) -> None:
    with pytest.raises(ConfigError, match=word) as err:
        builder(DIMS, **hparams)
    assert "\n" not in str(err.value)


def _toy_task(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """20 noisy frames a row; a positive row has 2 frames high on features 0 *and* 1, a
    negative row 2 frames high on feature 0 and 2 others high on feature 1: the same mean, so
    only a per-frame detector pooled over time can tell them apart."""
    x = torch.randn(n, 20, 8, generator=generator)  # (N, T, D)
    y = torch.randint(0, 2, (n,), generator=generator)  # (N,)
    order = torch.rand(n, 20, generator=generator).argsort(dim=1)  # (N, T) random frames
    rows = torch.arange(n)
    for slot in range(2):
        x[rows, order[:, slot], 0] += 3.0
        column = torch.where(y == 1, slot, 2 + slot)  # positives: the same frame; negatives: others
        x[rows, order[rows, column], 1] += 3.0
    return x, y.float()


def _accuracy_after_training(model: nn.Module, width: int, pooled_mean: bool) -> float:
    """Fit ``model`` + a linear head on the toy task; accuracy on fresh rows."""
    generator = torch.Generator().manual_seed(1)
    (x, y), (x_test, y_test) = _toy_task(512, generator), _toy_task(256, generator)
    head = nn.Linear(width, 1)
    net = nn.ModuleDict({"body": model, "head": head})
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)

    def logits(frames: torch.Tensor) -> torch.Tensor:
        if pooled_mean:
            return head(frames.mean(dim=1)).squeeze(-1)  # (N,)
        mask = torch.ones(frames.shape[:2], dtype=torch.bool)  # (N, T)
        return head(model(frames, mask)).squeeze(-1)  # (N,)

    for _ in range(80):
        optimizer.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(logits(x), y).backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        return ((logits(x_test) > 0).float() == y_test).float().mean().item()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("builder", "hparams"),
    [
        (frame_pooling.dbof, {"cluster_size": 16, "hidden": 16}),
        (frame_sequence.td_conv, {"channels": 16, "kernel": 1, "layers": 1, "hidden": 16}),
        (frame_sequence.td_conv, {"channels": 16, "kernel": 1, "layers": 1, "hidden": 16,
                                  "pooling": "sort", "top_k": 2}),
    ],
    ids=["dbof", "td_conv-max", "td_conv-sort"],
)  # fmt: skip
def test_max_pooled_models_beat_a_mean_of_frames_baseline(
    builder: Builder, hparams: dict[str, Any]
) -> None:
    baseline = _accuracy_after_training(nn.Identity(), 8, pooled_mean=True)
    model = builder({"x": 8}, **hparams)
    accuracy = _accuracy_after_training(model, model.out_dim, pooled_mean=False)
    assert baseline < 0.65
    assert accuracy > 0.85
