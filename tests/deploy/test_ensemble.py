"""An ensemble export made from folders alone, with no run directory: members' fold networks
(plain or compressed) and a blend, predicting as the fold networks and the blend do, and never
written over the folders it reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.deploy.conftest import save_model
from webly.compress import compress_network
from webly.core import TopK, select_top_k
from webly.data import Dataset
from webly.deploy import MemberFolds, export_ensemble, shipped_bytes
from webly.deploy.export import torch_probabilities
from webly.deploy.exported import ExportedEnsemble
from webly.deploy.inputs import store_batches
from webly.ensemble.blend import Blend
from webly.errors import ConfigError
from webly.models.quantized import open_network
from webly.predictions import float16_topk

GROUPS = ("rgb", "audio")


def members(root: Path, store: Dataset) -> list[MemberFolds]:
    """``mlp``: two plain fold networks of different widths; ``logistic``: one fold, compressed
    to partial 8 bits (every tensor); each keeping all 20 classes."""
    layout = store.layout
    mlp = tuple(
        save_model(
            root / "mlp" / f"fold-{f}" / "model", "mlp", layout, GROUPS, hidden=(8 * (f + 1),)
        )
        for f in range(2)
    )
    plain = save_model(root / "logistic" / "fold-0" / "model", "logistic", layout, GROUPS)
    small = compress_network(plain, root / "logistic-int8", min_elements=0).folder
    return [
        MemberFolds("mlp", layout.n_classes, root / "mlp", mlp),
        MemberFolds("logistic", layout.n_classes, root / "logistic", (small,)),
    ]


def test_an_ensemble_of_folders_predicts_as_its_folds_and_blend(
    tmp_path: Path, small_store: Dataset
) -> None:
    parts = members(tmp_path / "models", small_store)
    blend = Blend("weighted", ("mlp", "logistic"), (0.25, 0.75))
    exported = export_ensemble(
        "blend weighted", parts, tmp_path / "deploy", combine=blend.to_json(),
        layout=small_store.layout, metrics={"validation": 0.5},
    )  # fmt: skip
    assert isinstance(exported, ExportedEnsemble)
    assert exported.info["metrics"] == {"validation": 0.5} and exported.info["run"] is None
    assert [m["folds"] for m in exported.info["members"]] == [
        ["members/mlp/fold-0", "members/mlp/fold-1"],
        ["members/logistic/fold-0"],
    ]
    assert (
        shipped_bytes(exported.folder)
        == sum(f["bytes"] for f in exported.info["files"].values())
        + (exported.folder / "model.json").stat().st_size
    )

    (batch,) = store_batches(small_store.subset(np.arange(40)), exported.features, 40)
    specs, arrays = exported.features, [batch.groups[spec.name] for spec in exported.features]
    tops = []
    for member in parts:
        probs = np.mean(
            [torch_probabilities(open_network(f), specs, arrays, None, True) for f in member.folds],
            axis=0,
        )
        tops.append(float16_topk(TopK(*select_top_k(probs, member.k, sort=True))))
    want = np.zeros((40, small_store.layout.n_classes), np.float32)
    top = blend.apply(tops)
    rows, slots = np.nonzero(top.indices >= 0)
    want[rows, top.indices[rows, slots]] = top.scores[rows, slots]
    np.testing.assert_allclose(exported.predict(batch.groups), want, atol=1e-3)


def test_an_ensemble_export_never_lands_in_a_folder_it_reads(
    tmp_path: Path, small_store: Dataset
) -> None:
    parts = members(tmp_path / "models", small_store)
    blend = Blend("mean", ("mlp", "logistic"), (0.5, 0.5)).to_json()
    with pytest.raises(ConfigError, match="inside the input"):
        export_ensemble(
            "blend mean", parts, tmp_path / "models" / "mlp" / "deploy", combine=blend,
            layout=small_store.layout,
        )  # fmt: skip
    assert not (tmp_path / "models" / "mlp" / "deploy").exists()
