"""Fixtures of the compress tests: a finished run whose candidates the chooser weighs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_pipeline import RECIPE
from webly.pipeline import run_recipe

# tests/test_pipeline.py's recipe with an ensemble and a final distilled model.
RUN_RECIPE: dict[str, Any] = {
    **RECIPE,
    "ensemble": {
        "blends": ["mean", "greedy"],
        "stacker": {"rounds": 5, "min_data_in_leaf": 5, "threads": 1},
    },
    # one setting (distill/final/<id>), the labels-only twin (lam 1): a final network the
    # size-budget chooser can score on the rows it held out (a distilled one it cannot)
    "distill": {"lam": 1.0, "final": {"name": "logistic"}},
}


def finished_run(factory: pytest.TempPathFactory, recipe: dict[str, Any], name: str) -> Path:
    """A finished run of ``recipe`` in a new temporary folder (read only: copy it to change
    it)."""
    folder = factory.mktemp(name)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = run_recipe(folder / "recipe.yaml", folder / "run", [])
    assert not result.failed, result.errors
    return folder / "run"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of `RUN_RECIPE`."""
    return finished_run(tmp_path_factory, RUN_RECIPE, "run")


@pytest.fixture(scope="session")
def valid_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of `RUN_RECIPE` with a validation split carved before the zoo and a final
    network distilled from the ensemble (or its twin, whichever validates better)."""
    data = {**RUN_RECIPE["data"], "valid_fraction": 0.25}
    distill = {**RUN_RECIPE["distill"], "lam": [1.0, 0.5], "teacher": "stacker"}
    return finished_run(tmp_path_factory, {**RUN_RECIPE, "data": data, "distill": distill}, "valid")
