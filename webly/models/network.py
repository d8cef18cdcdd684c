"""A zoo network: feature subset -> backbone -> [embedding + BNNeck] -> [gating] -> classifier.

Every registered backbone gets the same options this way, so "audio-only resnet_av with a
512-d BNNeck embedding" is data (a config), not a copy of the network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from webly.errors import ConfigError, DataError
from webly.models._registry import check_hparams, model_entry
from webly.models.layers import ContextGating, frame_mask

if TYPE_CHECKING:  # typing only: importing gbdt loads LightGBM
    from webly.models.gbdt import LgbmModel

CONFIG_FILE, WEIGHTS_FILE = "model.json", "weights.safetensors"


class InputSubset(nn.Module):
    """Keeps the columns of some feature groups (and optionally a seeded random share of them)
    of the concatenated input ``(..., sum(input_dims))`` -> ``(..., sum(kept_dims))``."""

    index: torch.Tensor

    def __init__(
        self,
        input_dims: Mapping[str, int],
        groups: Sequence[str] | None = None,
        subsample: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        groups = list(input_dims) if groups is None else list(groups)
        unknown = [g for g in groups if g not in input_dims]
        if unknown or not groups:
            raise ConfigError(
                f"feature groups {unknown or groups} are not among the inputs "
                f"({', '.join(input_dims)}); choose from those"
            )
        if subsample is not None and not 0.0 < subsample <= 1.0:
            raise ConfigError(f"feature_subsample is {subsample}; use a share in (0, 1]")
        rng = np.random.default_rng(seed)
        starts = np.cumsum([0, *input_dims.values()])
        offset = dict(zip(input_dims, starts[:-1].tolist(), strict=True))
        columns, self.kept_dims = [], {}
        for group in groups:
            cols = np.arange(input_dims[group])
            if subsample is not None:
                size = max(1, round(subsample * cols.size))
                cols = np.sort(rng.choice(cols, size=size, replace=False))
            columns.append(cols + offset[group])
            self.kept_dims[group] = int(cols.size)
        self.identity = groups == list(input_dims) and subsample is None
        self.register_buffer("index", torch.from_numpy(np.concatenate(columns)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.identity else x.index_select(-1, self.index)


class Network(nn.Module):
    """``forward(x, lengths=None) -> logits (B, n_classes)``.

    ``x`` is ``(B, D)`` for video-level models and ``(B, T, D)`` with ``lengths`` ``(B,)`` for
    frame-level ones, ``D`` the concatenated feature groups of ``config["input_dims"]``.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        entry = model_entry(config["name"])
        self.level = entry.level
        self.subset = InputSubset(
            config["input_dims"], config["groups"], config["feature_subsample"], config["seed"]
        )
        self.backbone = entry.builder(self.subset.kept_dims, **config["hparams"])
        width = self.backbone.out_dim
        neck: list[nn.Module] = []
        if config["embedding"]:
            neck.append(nn.Linear(width, config["embedding"]))
            width = config["embedding"]
        if config["bnneck"]:
            neck.append(nn.BatchNorm1d(width))
        if config["context_gating"]:
            neck.append(ContextGating(width))
        self.neck = nn.Sequential(*neck)
        # A backbone may bring its own output layer (moe: a mixture of experts per class).
        make_classifier = getattr(self.backbone, "make_classifier", nn.Linear)
        self.classifier = make_classifier(width, config["n_classes"])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = self.subset(x)
        if self.level == "frame":
            if lengths is None:
                lengths = torch.full((x.shape[0],), x.shape[1], device=x.device)
            features = self.backbone(x, frame_mask(lengths, x.shape[1]))  # (B, out_dim)
        else:
            features = self.backbone(x)  # (B, out_dim)
        return self.classifier(self.neck(features))


def create_model(
    name: str,
    n_classes: int,
    input_dims: Mapping[str, int],
    *,
    groups: Sequence[str] | None = None,
    feature_subsample: float | None = None,
    seed: int = 0,
    embedding: int | None = None,
    bnneck: bool = False,
    context_gating: bool = False,
    **hparams: Any,
) -> Network | LgbmModel:
    """Build model ``name`` for ``n_classes`` classes over the feature groups ``input_dims``.

    Options every network takes: ``groups`` (a subset of the feature groups, e.g. audio only),
    ``feature_subsample`` (a seeded random share of their columns), ``embedding`` (width of a
    linear embedding before the classifier), ``bnneck`` (BatchNorm on it, AliProducts'
    BNNeck), ``context_gating``. The rest are the model's own hyper-parameters; an unknown
    one is refused with the accepted ones named. ``gbdt`` models take only their own.
    """
    entry = model_entry(name)
    check_hparams(entry, hparams)
    if not entry.trains_with_epochs:
        trees: LgbmModel = entry.builder(n_classes=n_classes, input_dims={**input_dims}, **hparams)
        return trees
    if n_classes < 1:
        raise ConfigError(f"n_classes is {n_classes}; it must be >= 1")
    config = {
        "name": name,
        "n_classes": n_classes,
        "input_dims": dict(input_dims),
        "groups": list(groups) if groups is not None else None,
        "feature_subsample": feature_subsample,
        "seed": seed,
        "embedding": embedding,
        "bnneck": bnneck,
        "context_gating": context_gating,
        "hparams": hparams,
    }
    return Network(config)


def save_network(model: Network, folder: str | Path) -> None:
    """Write ``model.json`` (config) and ``weights.safetensors`` (no pickle) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(model.config, indent=1))


def load_network(folder: str | Path) -> Network:
    """Rebuild a `save_network` ed model; shapes are checked against its config."""
    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
        state = load_file(str(folder / WEIGHTS_FILE))
    except (OSError, ValueError) as err:
        raise DataError(f"{folder}: not a saved webly model ({err}); check the path") from None
    return network_from_state(config, state, folder)


def network_from_state(
    config: dict[str, Any], state: Mapping[str, torch.Tensor], source: Path
) -> Network:
    """The `Network` of ``config`` holding the float weights ``state``; a one-line `DataError`
    naming ``source`` when their names or shapes disagree with the config."""
    model = Network(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or [str(err)]
        raise DataError(f"{source}: weights do not fit the config: {first[0].strip()}") from None
    return model
