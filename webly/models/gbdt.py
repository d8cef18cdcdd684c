"""Gradient-boosted trees (LightGBM) as a first-level model over video-level features.

Multi-class when every training row has exactly one label (one softmax booster), one-vs-rest
binary boosters for multi-label data with few classes. Deterministic: LightGBM's
``deterministic`` mode with a fixed seed. Saved as LightGBM text model files and a JSON config,
never pickled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp

from webly.core import Task, canonical_labels
from webly.errors import ConfigError, DataError
from webly.models._registry import register_model

CONFIG_FILE = "lgbm.json"
SCHEMES = {Task.MULTICLASS: "multiclass", Task.MULTILABEL: "one_vs_rest"}  # lgbm.json's "task"


class LgbmModel:
    """A LightGBM classifier over the concatenated features ``(N, D)``; see `lgbm`."""

    def __init__(
        self, n_classes: int, input_dims: Mapping[str, int], hparams: Mapping[str, Any]
    ) -> None:
        self.n_classes = n_classes
        self.input_dims = dict(input_dims)
        self.hparams = dict(hparams)
        self.task: Task | None = None  # once fitted; multi-label trains one-vs-rest
        self.boosters: list[lgb.Booster | None] = []  # one, or one per class (None: constant)
        self.constants: list[float] = []  # one-vs-rest: probability of a class without a booster

    def fit(
        self,
        x: np.ndarray,
        labels_csr: sp.csr_matrix,
        x_valid: np.ndarray | None = None,
        labels_valid: sp.csr_matrix | None = None,
    ) -> LgbmModel:
        """Train on ``x`` and ``labels_csr``; multi-class if every row has exactly one label.

        Parameters
        ----------
        x : (N, D) float features, the groups of ``input_dims`` concatenated.
        labels_csr : (N, n_classes) 0/1 labels (sparse or dense, or (N,) class ids).
        x_valid, labels_valid : optional validation rows, both or neither; training stops once
            their loss has not improved for ``early_stopping_rounds`` rounds.

        Returns
        -------
        LgbmModel
            ``self``, fitted.
        """
        x, labels = self._check(x, labels_csr)
        if not len(x):
            raise DataError("lgbm got 0 training rows; pass at least one labelled row")
        if (x_valid is None) != (labels_valid is None):
            raise ConfigError("lgbm got only one of x_valid, labels_valid; pass both or none")
        valid = None if x_valid is None else self._check(x_valid, labels_valid)
        if (np.diff(labels.indptr) == 1).all():  # one label a row
            self.task, self.constants = Task.MULTICLASS, []
            params = {"objective": "multiclass", "num_class": self.n_classes}
            valid_ids = None if valid is None else (valid[0], _class_ids(valid[1]))
            self.boosters = [self._train(params, x, labels.indices, valid_ids)]
            return self
        limit = self.hparams["max_ovr_classes"]
        if self.n_classes > limit:
            raise ConfigError(
                f"labels are multi-label over {self.n_classes} classes but lgbm trains one-vs-rest "
                f"only up to max_ovr_classes={limit}; use a neural model (e.g. mlp) for these"
            )
        self.task, self.boosters, self.constants = Task.MULTILABEL, [], []
        targets = np.ascontiguousarray(labels.T.toarray())  # (n_classes, N), n_classes small
        for c in range(self.n_classes):
            share = float(targets[c].mean())
            self.constants.append(share)
            if share in (0.0, 1.0):  # nothing to learn: the class is never or always present
                self.boosters.append(None)
                continue
            valid_c = None if valid is None else (valid[0], valid[1][:, [c]].toarray().ravel())
            self.boosters.append(self._train({"objective": "binary"}, x, targets[c], valid_c))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, n_classes)`` float32 of the rows of ``x`` ``(N, D)``."""
        if self.task is None:
            raise ConfigError("lgbm model is not fitted; call fit(x, labels) before predict")
        x = self._check_features(x)
        if not self.task.multilabel:
            booster = self.boosters[0]
            assert booster is not None  # a multiclass model always has its booster
            return np.asarray(booster.predict(x), dtype=np.float32).reshape(len(x), -1)
        columns = [
            np.full(len(x), share) if booster is None else booster.predict(x)
            for booster, share in zip(self.boosters, self.constants, strict=True)
        ]
        return np.stack(columns, axis=1).astype(np.float32)  # (N, n_classes)

    def save(self, folder: str | Path) -> None:
        """Write ``lgbm.json`` and one LightGBM text model file per booster into ``folder``."""
        if self.task is None:
            raise ConfigError("lgbm model is not fitted; call fit(x, labels) before save")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files: list[str | None] = []
        for i, booster in enumerate(self.boosters):
            if booster is None:
                files.append(None)
            else:
                name = f"booster_{i:05d}.txt"
                booster.save_model(str(folder / name))
                files.append(name)
        config = {
            "n_classes": self.n_classes,
            "input_dims": self.input_dims,
            "hparams": self.hparams,
            "task": SCHEMES[self.task],
            "boosters": files,
            "constants": self.constants,
        }
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> LgbmModel:
        """Rebuild a `save` d model from ``folder``."""
        folder = Path(folder)
        try:
            config = json.loads((folder / CONFIG_FILE).read_text())
            task = {scheme: t for t, scheme in SCHEMES.items()}[config["task"]]
            boosters = [
                None if name is None else lgb.Booster(model_file=str(folder / name))
                for name in config["boosters"]
            ]
        except (OSError, ValueError, KeyError, lgb.basic.LightGBMError) as err:
            raise DataError(f"{folder}: not a saved lgbm model ({err}); check the path") from None
        model = cls(config["n_classes"], config["input_dims"], config["hparams"])
        model.task, model.boosters, model.constants = task, boosters, config["constants"]
        return model

    def _train(
        self,
        objective: dict[str, Any],
        x: np.ndarray,
        y: np.ndarray,
        valid: tuple[np.ndarray, np.ndarray] | None,
    ) -> lgb.Booster:
        """One booster on targets ``y`` ``(N,)``, early-stopped on ``valid`` when given."""
        hp = self.hparams
        params = {
            **objective,
            "learning_rate": hp["learning_rate"],
            "num_leaves": hp["num_leaves"],
            "min_data_in_leaf": hp["min_child_samples"],
            "feature_fraction": hp["feature_fraction"],
            "lambda_l2": hp["lambda_l2"],
            "num_threads": hp["num_threads"],
            "seed": hp["seed"],
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }
        train_set = lgb.Dataset(x, y, free_raw_data=False)
        valid_sets: list[lgb.Dataset] = []
        callbacks: list[Callable[..., Any]] = []
        if valid is not None:
            valid_sets = [lgb.Dataset(valid[0], valid[1], reference=train_set)]
            callbacks = [lgb.early_stopping(hp["early_stopping_rounds"], verbose=False)]
        return lgb.train(
            params,
            train_set,
            num_boost_round=hp["n_estimators"],
            valid_sets=valid_sets,
            callbacks=callbacks,
        )

    def _check(self, x: np.ndarray, labels: sp.csr_matrix) -> tuple[np.ndarray, sp.csr_matrix]:
        x = self._check_features(x)
        return x, canonical_labels(labels, len(x), self.n_classes)

    def _check_features(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        width = sum(self.input_dims.values())
        if x.ndim != 2 or x.shape[1] != width:
            raise DataError(
                f"lgbm features have shape {x.shape} but input_dims {self.input_dims} sum to "
                f"{width} columns; pass (n_samples, {width}) video-level features"
            )
        return x


def _class_ids(labels: sp.csr_matrix) -> np.ndarray:
    """The class of each row of single-label ``labels``; refuses rows with other label counts."""
    counts = np.diff(labels.indptr)  # (N,)
    if (counts != 1).any():
        row = int(np.flatnonzero(counts != 1)[0])
        raise DataError(
            f"validation row {row} has {counts[row]} labels but the training labels are "
            "multi-class (one a row); give every validation row exactly one label"
        )
    return labels.indices


@register_model("lgbm", level="gbdt")
def lgbm(
    n_classes: int,
    input_dims: Mapping[str, int],
    *,
    n_estimators: int = 200,
    learning_rate: float = 0.05,
    num_leaves: int = 31,
    min_child_samples: int = 20,
    feature_fraction: float = 1.0,
    lambda_l2: float = 0.0,
    early_stopping_rounds: int = 20,
    max_ovr_classes: int = 64,
    num_threads: int = 1,
    seed: int = 0,
) -> LgbmModel:
    """LightGBM over the concatenated video-level features.

    Parameters
    ----------
    n_classes : number of classes.
    input_dims : feature group -> width, concatenated in this order.
    n_estimators : boosting rounds (the most, with early stopping).
    learning_rate, num_leaves, min_child_samples, feature_fraction, lambda_l2 :
        LightGBM's tree parameters (``min_child_samples`` is ``min_data_in_leaf``).
    early_stopping_rounds : rounds without validation improvement before stopping, when
        `LgbmModel.fit` gets validation data.
    max_ovr_classes : most classes trained one-vs-rest for multi-label labels.
    num_threads : LightGBM threads.
    seed : LightGBM's seed (training is deterministic given it).
    """
    if n_classes < 2:
        raise ConfigError(f"lgbm got n_classes={n_classes}; it needs 2 or more classes")
    hparams = {
        "n_estimators": n_estimators,
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_child_samples": min_child_samples,
        "feature_fraction": feature_fraction,
        "lambda_l2": lambda_l2,
        "early_stopping_rounds": early_stopping_rounds,
        "max_ovr_classes": max_ovr_classes,
        "num_threads": num_threads,
        "seed": seed,
    }
    least = {"n_estimators": 1, "num_leaves": 2, "min_child_samples": 1}
    least |= {"early_stopping_rounds": 1, "max_ovr_classes": 1, "num_threads": 1}
    for name, lowest in least.items():
        if hparams[name] < lowest:
            raise ConfigError(f"lgbm {name} is {hparams[name]}; use an integer >= {lowest}")
    if not (learning_rate > 0.0 and 0.0 < feature_fraction <= 1.0 and lambda_l2 >= 0.0):
        raise ConfigError(
            f"lgbm got learning_rate={learning_rate}, feature_fraction={feature_fraction}, "
            f"lambda_l2={lambda_l2}; use learning_rate > 0, feature_fraction in (0, 1], "
            "lambda_l2 >= 0"
        )
    return LgbmModel(n_classes, input_dims, hparams)
