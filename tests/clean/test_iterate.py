"""clean_iteratively: planted noise is cleaned round after round (less noise found, less noise
left), reports cover every row, finished rounds are read back, not trained again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import webly.clean.iterate as iterate_module
from webly.clean import ActionRules, NoiseReport
from webly.clean.actions import DROP
from webly.clean.iterate import IterationResult, clean_iteratively
from webly.data import Batch, Dataset, DatasetWriter, FeatureSpec, Layout
from webly.errors import ConfigError
from webly.metrics.ranking import hit_at_1
from webly.predictions import Predictions
from webly.train.zoo import parse_zoo

N_CLASSES = 4
RULES = ActionRules(drop_fraction=0.1, relabel_threshold=0.8)


def _store(path: Path, n: int, seed: int, rate: float) -> Dataset:
    """Multi-class data whose true class is the argmax of the first 4 features; a share
    ``rate`` of the given labels flipped to another class; the truth kept."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    true = np.argmax(x[:, :N_CLASSES], axis=1)
    flip = rng.random(n) < rate
    given = np.where(flip, (true + rng.integers(1, N_CLASSES, n)) % N_CLASSES, true)
    layout = Layout(
        features=(FeatureSpec("rgb", 8),),
        n_classes=N_CLASSES,
        task="multiclass",
        has_clean_labels=True,
    )
    with DatasetWriter(path, layout) as writer:
        writer.write_batch(
            Batch(
                [f"v{i}" for i in range(n)],
                [[int(c)] for c in given],
                features={"rgb": x},
                clean_labels=[[int(c)] for c in true],
            )
        )
    return Dataset.open(path)


def _zoo(epochs: int = 8) -> Any:
    return parse_zoo(
        {
            "folds": 3,
            "seed": 0,
            "k": N_CLASSES,
            "train": {"epochs": epochs, "batch_size": 32, "lr": 0.05},
            "members": [{"name": "logistic"}],
        }
    )


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Dataset, Path]:
    root = tmp_path_factory.mktemp("iterate")
    return _store(root / "train", 300, 0, 0.25), _store(root / "test", 100, 1, 0.0), root


@pytest.fixture(scope="module")
def cleaned(planted: tuple[Dataset, Dataset, Path]) -> IterationResult:
    train, test, root = planted
    return clean_iteratively(_zoo(), train, test, root / "out", rounds=2, rules=RULES)


@pytest.mark.slow
def test_cleaning_removes_planted_noise_round_after_round(cleaned: IterationResult) -> None:
    first, second, third = cleaned.rows
    assert [r.round for r in cleaned.rows] == [0, 1, 2] and cleaned.metric == "accuracy"
    assert first.true_noise == pytest.approx(0.25, abs=0.03)  # the planted rate
    assert first.dropped == first.relabelled == 0 and first.precision == 0.0
    assert first.noise_estimate > second.noise_estimate > third.noise_estimate
    assert first.true_noise > second.true_noise > third.true_noise  # type: ignore[operator]
    assert first.flagged > second.flagged > third.flagged
    assert first.oof_metric < second.oof_metric < third.oof_metric  # on the cleaner labels
    assert second.dropped == 30 and third.dropped > second.dropped  # 10% of the rows in play
    assert second.precision is not None and second.precision > 0.6  # base rate 0.25
    assert second.recall is not None and second.recall > 0.6
    assert all(r.test_metric is not None and r.test_metric > 0.7 for r in cleaned.rows)


def test_reports_cover_every_row_and_give_the_next_round_its_labels(
    planted: tuple[Dataset, Dataset, Path], cleaned: IterationResult
) -> None:
    train, _, root = planted
    reports = [NoiseReport.load(path) for path in cleaned.reports]
    assert [r.n_samples for r in reports] == [len(train)] * 3
    first, second, _ = reports
    dropped = first.action == DROP
    assert (second.action[dropped] == DROP).all() and second.is_noisy[dropped].all()
    assert (second.predicted[dropped] == -1).all()
    np.testing.assert_array_equal(second.labels.toarray(), first.cleaned_labels().toarray())
    assert cleaned.best == 1  # round 2 dropped rows the valid metric (given labels) still liked
    np.testing.assert_array_equal(cleaned.labels.toarray(), first.cleaned_labels().toarray())
    np.testing.assert_array_equal(cleaned.sample_weight, first.sample_weights())
    store = Predictions.open(root / "out" / "round-1" / "zoo" / "logistic" / "predictions")
    assert store.model["relabelled"] is True and len(store.oof) == len(train)
    table = cleaned.format().splitlines()
    assert len(table) == 5 and "| true noise | precision | recall |" in table[0]
    assert "(best)" in table[3] and "(best)" not in table[2] + table[4]


def test_valid_metric_scores_every_round_against_the_given_labels(
    planted: tuple[Dataset, Dataset, Path], cleaned: IterationResult
) -> None:
    train, _, root = planted
    for row in cleaned.rows:
        zoo = root / "out" / f"round-{row.round}" / "zoo"
        oof = Predictions.open(zoo / "logistic" / "predictions").topk("oof")
        assert row.valid_metric == pytest.approx(hit_at_1(oof, train.labels))
    assert cleaned.rows[1].oof_metric != cleaned.rows[1].valid_metric  # its own labels differ
    values = [row.valid_metric for row in cleaned.rows]
    assert cleaned.best == int(np.argmax(values))


def test_finished_rounds_are_read_back_not_trained(
    planted: tuple[Dataset, Dataset, Path],
    cleaned: IterationResult,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    train, test, root = planted

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a finished round was trained again")

    monkeypatch.setattr(iterate_module, "fit_oof", refuse)
    again = clean_iteratively(_zoo(), train, test, root / "out", rounds=2, rules=RULES)
    assert again.rows == cleaned.rows
    np.testing.assert_array_equal(again.labels.toarray(), cleaned.labels.toarray())
    with pytest.raises(AssertionError, match="trained again"):  # other rules: round 0 re-judged
        clean_iteratively(_zoo(), train, test, root / "out", rounds=2, rules=ActionRules())
    # round 2 did not beat round 1: with patience 1 a third round of cleaning is never trained
    stopped = clean_iteratively(
        _zoo(), train, test, root / "out", rounds=3, rules=RULES, patience=1
    )
    assert stopped.rows == cleaned.rows and stopped.best == cleaned.best
    assert not (root / "out" / "round-3").exists()


def test_cluster_method_gets_the_features_of_the_rows_in_play(
    planted: tuple[Dataset, Dataset, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, _, _ = planted
    features = train.features(np.arange(len(train)), ("rgb",))
    seen: list[int] = []
    real = iterate_module.find_noisy_labels

    def spy(labels: sp.csr_matrix, oof: Any, method: str, **options: Any) -> Any:
        seen.append(options["features"].shape[0])
        assert labels.shape[0] == options["features"].shape[0] == oof.indices.shape[0]
        return real(labels, oof, method, **options)

    monkeypatch.setattr(iterate_module, "find_noisy_labels", spy)
    result = clean_iteratively(
        _zoo(epochs=2), train, None, tmp_path, rounds=1, method="cluster",
        rules=RULES, options={"features": features, "mode": "density"},
    )  # fmt: skip
    assert seen == [300, 300 - result.rows[1].dropped] and result.rows[1].dropped == 30
    assert result.rows[0].test_metric is None


def test_bad_rounds_or_method_fail_before_training(
    planted: tuple[Dataset, Dataset, Path], tmp_path: Path
) -> None:
    train, test, _ = planted
    with pytest.raises(ConfigError, match="rounds is 0; pass an integer >= 1"):
        clean_iteratively(_zoo(), train, test, tmp_path / "a", rounds=0)
    with pytest.raises(ConfigError, match="unknown"):
        clean_iteratively(_zoo(), train, test, tmp_path / "b", method="nope")
    with pytest.raises(ConfigError, match="patience is 0; pass an integer >= 1, or None"):
        clean_iteratively(_zoo(), train, test, tmp_path / "c", patience=0)
    assert not any(tmp_path.iterdir())
