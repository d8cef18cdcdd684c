"""The ``executor:`` section: its checks, the local executor, and that no stage's config hash
depends on it (a local run resumes under Ray)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_pipeline import RECIPE
from webly.config import parse_recipe
from webly.errors import ConfigError
from webly.executor import ExecutorConfig, LocalExecutor, make_executor
from webly.pipeline import STAGES


def recipe(**executor: Any) -> Any:
    return parse_recipe({**RECIPE, "executor": executor})


def test_local_by_default() -> None:
    config = parse_recipe(RECIPE).executor
    assert config == ExecutorConfig()
    assert (config.kind, config.address, config.cpus_per_task) == ("local", None, 1)
    assert isinstance(make_executor(config), LocalExecutor)


def test_local_executor_leaves_the_jobs_to_the_loop() -> None:
    assert LocalExecutor().train_folds(object(), [object()]) == {}  # type: ignore[arg-type, list-item]


@pytest.mark.parametrize("address", [None, "auto", "127.0.0.1:6379", "head-node.lan:10001"])
def test_addresses_accepted(address: str | None) -> None:
    assert recipe(kind="ray", address=address).executor.address == address


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        ({"kind": "ray", "address": "10.0.0.1"}, r"executor.address: '10.0.0.1' is not HOST:PORT"),
        ({"kind": "ray", "address": "h:70000"}, r"is not HOST:PORT; give the Ray head's address"),
        ({"kind": "ray", "address": "ray://h:1"}, r"'ray://h:1' is not HOST:PORT"),
        ({"kind": "spark"}, r"executor.kind: Input should be 'local' or 'ray'"),
        ({"kind": "ray", "cpus_per_task": 0}, r"executor.cpus_per_task: .*greater than or equal"),
        ({"kind": "ray", "gpus_per_task": -1}, r"executor.gpus_per_task"),
        ({"kind": "ray", "retries": 2}, r"executor.retries: unknown key;.* executor accepts: kind"),
    ],
)
def test_bad_executor_is_one_line(executor: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        recipe(**executor)


def test_no_stage_config_depends_on_the_executor() -> None:
    local = parse_recipe(RECIPE)
    ray = recipe(kind="ray", address="127.0.0.1:6379", cpus_per_task=2, max_retries=1)
    for stage in STAGES:
        assert stage.config(local) == stage.config(ray), stage.name
