"""Fixtures of the report tests: two small real runs, one with every stage (products-like
data: titles to show, a clean stage, blends and the stacker, students and a final model, the
long-tail stage, compress and export) and one with the zoo alone (yt8m-like, multi-label)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from tests.test_pipeline import RECIPE as ZOO_RECIPE
from webly.pipeline import run_recipe

FULL_RECIPE: dict[str, Any] = {
    "seed": 0,
    "data": {
        "synth": {
            "kind": "products-like", "n_classes": 12, "n_products": 400, "latent_dim": 8,
            "image_dim": 16, "test_products_per_class": 6,
        }
    },
    "folds": {"n": 3},
    "zoo": {
        "k": 20,
        "train": {"epochs": 8, "batch_size": 64, "lr": 0.01},
        "members": [{"name": "logistic"}, {"name": "mlp", "hparams": {"hidden": [32]}}],
    },
    "clean": {"rounds": 1},
    "ensemble": {
        "blends": ["mean", "greedy"],
        "stacker": {"rounds": 10, "min_data_in_leaf": 5, "threads": 1},
    },
    "distill": {
        "lam": 0.5,  # one setting: its models in distill/{students,final}/<id>
        "students": [{"name": "mlp", "id": "mlp_student", "hparams": {"hidden": [32]}}],
        "final": {"name": "mlp", "hparams": {"hidden": [32]}},
    },
    "longtail": {},
    "compress": {"max_size": "1GB", "min_elements": 100},
    "export": {},
    "report": {"suspicious_rows": 20},
}  # fmt: skip


def make_run(folder: Path, recipe: dict[str, Any]) -> Path:
    """Run ``recipe`` into ``folder / "run"`` and return the run directory."""
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = run_recipe(path, folder / "run", console=Console(quiet=True))
    assert not result.failed, result.errors
    return folder / "run"


@pytest.fixture(scope="session")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of `FULL_RECIPE` (read only: copy it to change it)."""
    return make_run(tmp_path_factory.mktemp("full"), FULL_RECIPE)


@pytest.fixture(scope="session")
def zoo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the pipeline tests' recipe: data, folds, the zoo, evaluate (read only)."""
    return make_run(tmp_path_factory.mktemp("zoo"), ZOO_RECIPE)
