"""fit: determinism, checkpoint/resume, early stopping, NaN loss, learning a toy problem."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import random_batch
from webly.data import Batch, Dataset, DatasetWriter, FeatureSpec, Layout
from webly.errors import ConfigError, DataError
from webly.models import create_model
from webly.train import EpochStats, TrainConfig, evaluate, fit

DIMS = {"rgb": 8, "audio": 4}
N_CLASSES = 6


def _toy_store(path: Path, n: int, seed: int, task: str = "multilabel") -> Dataset:
    """Separable data: class c is positive where rgb feature c exceeds 0.3 (multi-label), or is
    the argmax of the first classes' features (multi-class)."""
    rng = np.random.default_rng(seed)
    rgb = rng.normal(size=(n, DIMS["rgb"])).astype(np.float32)
    audio = rng.normal(size=(n, DIMS["audio"])).astype(np.float32)
    if task == "multilabel":
        labels = [np.flatnonzero(row[:N_CLASSES] > 0.3) for row in rgb]
    else:
        labels = [[int(np.argmax(row[:N_CLASSES]))] for row in rgb]
    layout = Layout(
        features=(FeatureSpec("rgb", DIMS["rgb"]), FeatureSpec("audio", DIMS["audio"])),
        n_classes=N_CLASSES,
        task=task,  # type: ignore[arg-type]
    )
    with DatasetWriter(path, layout) as writer:
        ids = [f"v{i}" for i in range(n)]
        writer.write_batch(Batch(ids, labels, features={"rgb": rgb, "audio": audio}))
    return Dataset.open(path)


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Dataset, Dataset]:
    return _toy_store(tmp_path / "train", 160, 0), _toy_store(tmp_path / "valid", 80, 1)


@pytest.fixture
def frame_store(tmp_path: Path) -> Dataset:
    layout = Layout(features=(FeatureSpec("rgb", 6, "uint8", level="frame"),), n_classes=5)
    with DatasetWriter(tmp_path / "frames", layout) as writer:
        writer.write_batch(random_batch(np.random.default_rng(0), layout, 40, max_frames=9))
    return Dataset.open(tmp_path / "frames")


def _mlp(seed: int = 0, dropout: float = 0.2, batchnorm: bool = True) -> Any:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return create_model(
            "mlp", N_CLASSES, DIMS, hidden=[16], dropout=dropout, batchnorm=batchnorm
        )


def _dbof() -> Any:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return create_model("dbof", 5, {"rgb": 6}, cluster_size=8, hidden=8)


def _equal_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


FULL = TrainConfig(
    epochs=3, batch_size=32, lr=1e-2, mixup_alpha=0.4, ema_decay=0.9, warmup_epochs=1.0,
    grad_accumulation=2, clip_norm=1.0, seed=3, valid_fraction=0.0,
)  # fmt: skip


class Kill(Exception):
    """Simulates a run killed after an epoch's checkpoint."""


def _kill_after(epoch: int) -> Any:
    def callback(stats: EpochStats) -> None:
        if stats.epoch == epoch:
            raise Kill

    return callback


def test_same_seed_same_weights_other_seed_other(tmp_path: Path, toy: Any) -> None:
    train, valid = toy
    models = [_mlp() for _ in range(3)]
    for i, (model, seed) in enumerate(zip(models, [3, 3, 4], strict=True)):
        fit(model, train, valid, replace(FULL, seed=seed), ("rgb", "audio"), tmp_path / f"r{i}")
    assert _equal_weights(models[0], models[1])
    assert not _equal_weights(models[0], models[2])


def test_fit_leaves_global_rng_alone(tmp_path: Path, toy: Any) -> None:
    before_torch, before_np = torch.get_rng_state(), np.random.get_state()[1].copy()
    fit(_mlp(), toy[0], None, replace(FULL, epochs=1), ("rgb", "audio"), tmp_path / "w")
    assert torch.equal(torch.get_rng_state(), before_torch)
    assert np.array_equal(np.random.get_state()[1], before_np)


@pytest.mark.parametrize("with_valid", [True, False])
def test_resume_after_kill_equals_uninterrupted_video(
    tmp_path: Path, toy: Any, with_valid: bool
) -> None:
    train, valid = toy
    valid = valid if with_valid else None
    whole = _mlp()
    result = fit(whole, train, valid, FULL, ("rgb", "audio"), tmp_path / "whole")
    killed = _mlp()
    with pytest.raises(Kill):
        fit(
            killed,
            train,
            valid,
            FULL,
            ("rgb", "audio"),
            tmp_path / "b",
            on_epoch_end=_kill_after(2),
        )
    resumed = _mlp()
    seen: list[int] = []
    again = fit(resumed, train, valid, FULL, ("rgb", "audio"), tmp_path / "b",
                on_epoch_end=lambda s: seen.append(s.epoch))  # fmt: skip
    assert seen == [3]
    assert _equal_weights(whole, resumed)
    assert [s.loss for s in again.history] == [s.loss for s in result.history]
    assert again.best_metric == result.best_metric


def test_resume_after_kill_equals_uninterrupted_frames(
    tmp_path: Path, frame_store: Dataset
) -> None:
    config = replace(FULL, batch_size=8, max_frames=5, frame_sampling="random")
    whole = _dbof()
    fit(whole, frame_store, frame_store, config, ("rgb",), tmp_path / "whole")
    with pytest.raises(Kill):
        fit(_dbof(), frame_store, frame_store, config, ("rgb",), tmp_path / "b",
            on_epoch_end=_kill_after(1))  # fmt: skip
    resumed = _dbof()
    fit(resumed, frame_store, frame_store, config, ("rgb",), tmp_path / "b")
    assert _equal_weights(whole, resumed)


def test_loader_threads_do_not_change_the_result(tmp_path: Path, frame_store: Dataset) -> None:
    config = replace(FULL, batch_size=8, max_frames=5, frame_sampling="random")
    one, three = _dbof(), _dbof()
    fit(one, frame_store, None, config, ("rgb",), tmp_path / "one")
    fit(three, frame_store, None, replace(config, workers=3), ("rgb",), tmp_path / "three")
    assert _equal_weights(one, three)
    resumed = _dbof()  # the checkpoint of a 1-thread run resumes under 3 threads
    fit(resumed, frame_store, None, replace(config, workers=3), ("rgb",), tmp_path / "one")
    assert _equal_weights(one, resumed)


def test_finished_run_is_not_trained_again(tmp_path: Path, toy: Any) -> None:
    config = replace(FULL, epochs=1)
    first = fit(_mlp(), toy[0], toy[1], config, ("rgb", "audio"), tmp_path / "w")
    calls: list[EpochStats] = []
    second = fit(_mlp(), toy[0], toy[1], config, ("rgb", "audio"), tmp_path / "w",
                 on_epoch_end=calls.append)  # fmt: skip
    assert calls == [] and second == first


def test_resume_under_other_settings_is_refused(tmp_path: Path, toy: Any) -> None:
    fit(_mlp(), toy[0], None, replace(FULL, epochs=1), ("rgb", "audio"), tmp_path / "w")
    with pytest.raises(ConfigError, match="other training settings"):
        fit(_mlp(), toy[0], None, replace(FULL, epochs=1, lr=0.5), ("rgb", "audio"), tmp_path / "w")


def test_learns_separable_toy_problem(tmp_path: Path, toy: Any) -> None:
    train, valid = toy
    config = TrainConfig(epochs=15, batch_size=16, lr=1e-2, seed=0, schedule="cosine")
    model = _mlp(dropout=0.0)
    result = fit(model, train, valid, config, ("rgb", "audio"), tmp_path / "w")
    prior = valid.labels.sum() / (len(valid) * N_CLASSES)  # GAP of uninformative scores
    assert result.metric == "gap@20"
    assert result.history[0].metric is not None and result.best_metric is not None
    assert result.best_metric > 0.9 > prior + 0.4
    assert result.best_metric > result.history[0].metric
    assert result.history[-1].loss < result.history[0].loss
    assert all(s.samples_per_s > 0 and s.seconds > 0 for s in result.history)


def test_multiclass_reports_accuracy(tmp_path: Path) -> None:
    train = _toy_store(tmp_path / "t", 160, 0, "multiclass")
    valid = _toy_store(tmp_path / "v", 80, 1, "multiclass")
    config = TrainConfig(epochs=12, batch_size=16, lr=1e-2, smoothing=0.1, sampler="sqrt")
    result = fit(_mlp(dropout=0.0), train, valid, config, ("rgb", "audio"), tmp_path / "w")
    assert result.metric == "accuracy"
    assert result.best_metric is not None and result.best_metric > 0.6


def test_early_stopping_stops(tmp_path: Path, toy: Any) -> None:
    # A learning rate too small to move float32 weights (and no BatchNorm statistics): the
    # metric never improves after epoch 1.
    config = TrainConfig(epochs=10, batch_size=32, lr=1e-12, weight_decay=0.0, patience=2)
    result = fit(_mlp(batchnorm=False), toy[0], toy[1], config, ("rgb", "audio"), tmp_path / "w")
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1


def test_best_weights_are_restored(tmp_path: Path, toy: Any) -> None:
    config = TrainConfig(epochs=4, batch_size=32, lr=1e-2, patience=None, ema_decay=0.5)
    assert config.schedule == "plateau"
    model = _mlp()
    result = fit(model, toy[0], toy[1], config, ("rgb", "audio"), tmp_path / "w")
    best = torch.load(tmp_path / "w" / "best.pt", weights_only=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in best.items())
    assert result.best_epoch is not None


def test_nan_loss_names_epoch_and_step(tmp_path: Path, toy: Any) -> None:
    model = _mlp()
    model.classifier.register_forward_hook(lambda module, inputs, out: out * float("nan"))
    with pytest.raises(DataError, match=r"^training loss is nan at epoch 1, step 1; "):
        fit(model, toy[0], None, replace(FULL, epochs=1), ("rgb", "audio"), tmp_path / "w")


def test_distillation_targets_and_weights(tmp_path: Path, toy: Any) -> None:
    train = toy[0]
    teacher = np.full((len(train), N_CLASSES), 0.5, dtype=np.float32)
    weights = np.linspace(0.5, 1.5, len(train))
    config = replace(FULL, epochs=1, distill_lam=0.3)
    result = fit(_mlp(), train, None, config, ("rgb", "audio"), tmp_path / "w",
                 targets=teacher, sample_weight=weights,
                 class_weight=np.ones(N_CLASSES))  # fmt: skip
    assert np.isfinite(result.history[0].loss) and result.best_metric is None
    with pytest.raises(DataError, match="teacher targets leave"):
        fit(_mlp(), train, None, config, ("rgb", "audio"), tmp_path / "x", targets=teacher * 3)
    with pytest.raises(DataError, match="sample_weight"):
        fit(
            _mlp(), train, None, config, ("rgb", "audio"), tmp_path / "y", sample_weight=weights[1:]
        )


def test_bad_config_is_one_line() -> None:
    with pytest.raises(ConfigError, match="optimizer 'adam' is unknown"):
        TrainConfig(optimizer="adam")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="batch_size is 0"):
        TrainConfig(batch_size=0)


def test_sgd_with_class_sampler_and_cosine_frames(tmp_path: Path, frame_store: Dataset) -> None:
    config = TrainConfig(epochs=2, batch_size=8, optimizer="sgd", sampler="class",
                         frame_sampling="cosine", cosine_threshold=0.05, max_frames=4)  # fmt: skip
    result = fit(_dbof(), frame_store, None, config, ("rgb",), tmp_path / "w")
    assert len(result.history) == 2 and all(np.isfinite(s.loss) for s in result.history)


def test_rich_progress_on_a_terminal(
    tmp_path: Path, toy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    result = fit(_mlp(), toy[0], toy[1], replace(FULL, epochs=2), ("rgb", "audio"), tmp_path / "w")
    assert len(result.history) == 2


def test_loader_keeps_order_raises_errors_and_stops_early() -> None:
    from webly.train.loop import _load_ahead

    def load(i: int, delay: float) -> dict[str, Any]:
        time.sleep(delay)
        if i == 5:
            raise ValueError("bad batch 5")
        return {"i": i}

    calls = [(i, 0.02 * (i % 3 == 0)) for i in range(5)]
    assert [b["i"] for b in _load_ahead(load, calls, workers=3)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="bad batch 5"):
        list(_load_ahead(load, [(i, 0.0) for i in range(8)], workers=2))
    started: list[int] = []
    loader = _load_ahead(lambda i: started.append(i) or {"i": i}, [(i,) for i in range(100)], 2)
    assert next(loader) == {"i": 0}
    loader.close()
    assert len(started) <= 4  # at most workers + 1 ahead were ever asked for


def test_defaults_train_until_the_validation_metric_stops_rising(tmp_path: Path, toy: Any) -> None:
    # The regression of issue 18: a cosine to 0 stopped models whose validation metric was still
    # rising. At the defaults the rate never reaches 0 while the metric improves, and the weights
    # returned (the best epoch's) never score below the last epoch's on the validation rows.
    train, valid = toy
    config = TrainConfig(epochs=12, batch_size=32, lr=1e-3)
    model = _mlp(dropout=0.0)
    result = fit(model, train, valid, config, ("rgb", "audio"), tmp_path / "w")
    metrics = [s.metric for s in result.history]
    assert all(m is not None for m in metrics)
    pairs = zip(result.history, result.history[1:], strict=False)
    rising = [s for prev, s in pairs if s.metric > prev.metric]
    assert rising and all(s.lr >= 1e-3 * config.lr_decay**2 for s in rising)
    last = _mlp(dropout=0.0)
    last.load_state_dict(torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=True)["model"])
    returned = evaluate(model, valid, ("rgb", "audio"))
    assert returned == pytest.approx(result.best_metric, abs=1e-6)
    assert returned >= evaluate(last, valid, ("rgb", "audio")) - 1e-9
    assert result.best_metric == max(metrics)


def test_without_validation_data_a_share_of_the_rows_is_held_out(tmp_path: Path, toy: Any) -> None:
    config = TrainConfig(epochs=3, batch_size=32, lr=1e-2, valid_fraction=0.25)
    result = fit(_mlp(), toy[0], None, config, ("rgb", "audio"), tmp_path / "w")
    assert result.valid_rows == 40 and result.best_metric is not None
    assert result.history[0].samples_per_s > 0
    none = fit(_mlp(), toy[0], None, replace(config, valid_fraction=0.0), ("rgb", "audio"),
               tmp_path / "none")  # fmt: skip
    assert none.valid_rows == 0 and none.best_metric is None and len(none.history) == 3


def test_prior_output_bias_starts_at_the_label_entropy(tmp_path: Path, toy: Any) -> None:
    train = toy[0]
    config = TrainConfig(epochs=1, batch_size=160, lr=1e-12, weight_decay=0.0,
                         valid_fraction=0.0)  # fmt: skip
    losses = {}
    for bias in ("init", "prior"):
        model = _mlp(batchnorm=False, dropout=0.0)
        with torch.no_grad():
            model.classifier.weight.zero_()  # the logits are the bias alone
            model.classifier.bias.zero_()
        result = fit(model, train, None, replace(config, output_bias=bias), ("rgb", "audio"),
                     tmp_path / bias)  # fmt: skip
        losses[bias] = result.history[0].loss
    p = (np.asarray(train.labels.sum(axis=0)).ravel() + 1) / (len(train) + 2)
    q = np.asarray(train.labels.mean(axis=0)).ravel()
    entropy = -(q * np.log(p) + (1 - q) * np.log(1 - p)).sum()
    assert losses["init"] == pytest.approx(N_CLASSES * np.log(2), rel=1e-4)
    assert losses["prior"] == pytest.approx(entropy, rel=1e-3) and losses["prior"] < losses["init"]


def test_auto_lr_is_chosen_on_validation_recorded_and_not_searched_again(
    tmp_path: Path, toy: Any
) -> None:
    train, valid = toy
    config = TrainConfig(epochs=3, batch_size=32, lr_candidates=(1e-6, 1e-2), lr_probe_steps=10)
    result = fit(_mlp(), train, valid, config, ("rgb", "audio"), tmp_path / "w")
    assert result.lr == 1e-2 and result.lr_search is not None
    assert result.lr_search.lr == 1e-2 and set(result.lr_search.trials) == {1e-6, 1e-2}
    assert all(s.lr == pytest.approx(1e-2) for s in result.history[:1])
    assert not (tmp_path / "w" / "lr-search").exists()  # the probes' folders are removed
    again = fit(_mlp(), train, valid, config, ("rgb", "audio"), tmp_path / "w")
    assert again.lr_search == result.lr_search and again.history == result.history


def test_auto_lr_that_finds_no_rate_names_the_rates(tmp_path: Path, toy: Any) -> None:
    # rates too small to move float32 weights (and no BatchNorm statistics): no probe improves
    config = TrainConfig(epochs=2, batch_size=32, weight_decay=0.0, lr_candidates=(1e-13, 1e-12),
                         lr_probe_steps=4)  # fmt: skip
    with pytest.raises(
        DataError, match=r"no rate improved on the initial weights \(tried 1e-13, 1e-12\)"
    ):
        fit(_mlp(batchnorm=False), toy[0], toy[1], config, ("rgb", "audio"), tmp_path / "w")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"schedule": "linear"}, "schedule 'linear' is unknown; use one of constant, cosine"),
        ({"lr": "fast"}, "train lr is 'fast'; use a rate > 0 or 'auto'"),
        ({"lr": 0.0}, "train lr is 0.0; use a rate > 0 or 'auto'"),
        ({"lr_candidates": ()}, "train lr_candidates is \\(\\); give one or more rates > 0"),
        ({"lr_decay": 1.5}, "train lr_decay is 1.5; use a factor in \\(0, 1\\]"),
        ({"valid_fraction": 1.0}, "train valid_fraction is 1.0; use a share in \\[0, 1\\)"),
        ({"output_bias": "mean"}, "output_bias 'mean' is unknown; use prior or init"),
        ({"decay_patience": 0}, "train decay_patience is 0; it must be >= 1"),
    ],
)
def test_bad_schedule_settings_are_one_line(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**settings)
