"""The `webly.core.Model` adapters: a network and a LightGBM model behind one interface.

`webly.train.oof` trains, saves, loads and scores every fold model through these, so it never
asks which kind of model a member is. A network trains by epochs with `webly.train.loop.fit`
and records how (``fit.json``); trees train once on 0/1 labels and refuse what they cannot
use (soft targets, graded sample weights, pseudo-labels) in one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from webly.core import Model
from webly.data.store import Dataset
from webly.errors import ConfigError
from webly.models.gbdt import LgbmModel
from webly.models.network import Network, load_network, save_network
from webly.train.loop import (
    FitResult,
    TrainConfig,
    WeightSchedule,
    fit,
    iter_scores,
    training_device,
)
from webly.train.zoo import Member

FIT_FILE = "fit.json"
"""Beside a saved network: how it was trained (`NetworkModel.record`)."""


class NetworkModel:
    """A `webly.models.Network` as a `webly.core.Model`.

    ``groups`` feed it (concatenated in this order); ``config`` is how it trains (None for a
    loaded model, which only predicts); ``batch_size`` rows are scored a block.
    """

    trains_with_epochs = True

    def __init__(
        self,
        network: Network,
        groups: Sequence[str],
        batch_size: int,
        config: TrainConfig | None = None,
    ) -> None:
        self.network = network
        self.groups = tuple(groups)
        self.batch_size = batch_size
        self.config = config
        self.record: dict[str, Any] | None = None

    @property
    def takes_frames(self) -> bool:
        return bool(self.network.level == "frame")

    def fit(
        self,
        train: Dataset,
        valid: Dataset | None,
        workdir: Path,
        *,
        labels: sp.csr_matrix | None = None,
        valid_labels: sp.csr_matrix | None = None,
        targets: sp.csr_matrix | None = None,
        sample_weight: np.ndarray | WeightSchedule | None = None,
        pseudo: Any = None,
        time_limit: float | None = None,
    ) -> np.ndarray | None:
        """`webly.train.loop.fit` under ``config`` (its ``time_limit`` replaced when given);
        keeps the `record` `save` writes. Returns the rows `fit` held out, or None."""
        if self.config is None:
            raise ConfigError(
                "this network was loaded to predict and has no training settings; build it "
                "with build_model(member, ...) to train it"
            )
        config = self.config if time_limit is None else replace(self.config, time_limit=time_limit)
        result = fit(
            self.network, train, valid, config, self.groups, workdir,
            targets=targets, sample_weight=sample_weight, pseudo=pseudo,
            labels=labels, valid_labels=valid_labels,
        )  # fmt: skip
        self.record = _fit_record(result) | {"time_limit": config.time_limit}
        return None if result.held_out is None else np.asarray(result.held_out)

    def predict_proba(self, data: Dataset) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Sigmoid or softmax probabilities, ``batch_size`` rows a block (`iter_scores`)."""
        yield from iter_scores(self.network, data, self.groups, self.batch_size)

    def save(self, folder: Path) -> None:
        """`save_network` (config and safetensors weights), and ``fit.json`` once trained."""
        save_network(self.network, folder)
        if self.record is not None:
            (Path(folder) / FIT_FILE).write_text(json.dumps(self.record, indent=1))

    @classmethod
    def load(cls, folder: Path, groups: Sequence[str], batch_size: int) -> Self:
        """The saved network, on the training device."""
        return cls(load_network(folder).to(training_device()), groups, batch_size)


class TreeModel:
    """A `webly.models.gbdt.LgbmModel` as a `webly.core.Model`: video-level features of
    ``groups`` concatenated, scored ``batch_size`` rows a block."""

    takes_frames = False
    trains_with_epochs = False

    def __init__(self, trees: LgbmModel, groups: Sequence[str], batch_size: int) -> None:
        self.trees = trees
        self.groups = tuple(groups)
        self.batch_size = batch_size

    def fit(
        self,
        train: Dataset,
        valid: Dataset | None,
        workdir: Path,
        *,
        labels: sp.csr_matrix | None = None,
        valid_labels: sp.csr_matrix | None = None,
        targets: sp.csr_matrix | None = None,
        sample_weight: np.ndarray | WeightSchedule | None = None,
        pseudo: Any = None,
        time_limit: float | None = None,
    ) -> np.ndarray | None:
        """Boost on the 0/1 ``labels`` (default the store's) of the rows whose weight is not
        0, early-stopped on ``valid``; ``workdir`` and ``time_limit`` are unused (LightGBM
        keeps no checkpoints). Holds out no rows: returns None."""
        graded = isinstance(sample_weight, WeightSchedule) or (
            sample_weight is not None and bool(((sample_weight > 0) & (sample_weight < 1)).any())
        )
        soft = labels is not None and bool((labels.data < 1).any())
        if targets is not None or pseudo is not None or graded or soft:
            raise ConfigError(
                "gradient-boosted trees take 0/1 labels and 0/1 sample weights only, no soft "
                "targets or pseudo-labeled rows; give those to network members"
            )
        y = train.labels if labels is None else labels
        rows = np.arange(len(train))
        if isinstance(sample_weight, np.ndarray):
            rows = np.flatnonzero(sample_weight > 0)
        x_valid = y_valid = None
        if valid is not None and len(valid):
            x_valid = valid.features(np.arange(len(valid)), self.groups)
            y_valid = valid.labels if valid_labels is None else valid_labels
        self.trees.fit(train.features(rows, self.groups), y[rows], x_valid, y_valid)
        return None

    def predict_proba(self, data: Dataset) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The boosters' probabilities, ``batch_size`` rows a block."""
        for start in range(0, len(data), self.batch_size):
            rows = np.arange(start, min(start + self.batch_size, len(data)))
            yield rows, self.trees.predict(data.features(rows, self.groups))

    def save(self, folder: Path) -> None:
        """`LgbmModel.save`: ``lgbm.json`` and LightGBM text model files."""
        self.trees.save(folder)

    @classmethod
    def load(cls, folder: Path, groups: Sequence[str], batch_size: int) -> Self:
        return cls(LgbmModel.load(folder), groups, batch_size)


def build_model(member: Member, n_classes: int, fold: int) -> Model:
    """A fresh model of ``member`` for fold ``fold`` (`Member.create`) behind the `Model`
    protocol; a network trains under the fold's `Member.train_config`."""
    model = member.create(n_classes, fold)
    if isinstance(model, Network):
        config = member.train_config(fold)
        return NetworkModel(model, member.groups, member.train.eval_batch_size, config)
    return TreeModel(model, member.groups, member.train.eval_batch_size)


def load_model(member: Member, folder: Path) -> Model:
    """The fold model of ``member`` that `Model.save` wrote into ``folder``."""
    adapter: type[Model] = NetworkModel if member.trains_with_epochs else TreeModel
    return adapter.load(folder, member.groups, member.train.eval_batch_size)


def _fit_record(result: FitResult) -> dict[str, Any]:
    """How a network was trained, kept beside it (``fit.json``) and, but for the ``history``
    of its epochs (`EpochStats` as dicts, what the tracker logs as curves), in the member's
    fold metrics: the learning rate (and the rates ``lr="auto"`` tried, with their validation
    scores), the epochs trained, the best one and the validation rows."""
    search = result.lr_search
    return {
        "lr": result.lr,
        "lr_search": search.to_json()["trials"] if search is not None else None,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "valid_rows": result.valid_rows,
        "out_of_time": result.out_of_time,
        "history": [asdict(epoch) for epoch in result.history],
    }
