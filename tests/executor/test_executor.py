"""The ``executor:`` section: its checks, the local executor, and that no stage's config hash
depends on it (a local run resumes under Ray)."""

from __future__ import annotations

import importlib.util
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
    jobs = [object()]
    assert LocalExecutor().train_folds(print, object(), jobs) == {}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "address", [None, "auto", "127.0.0.1:6379", "head-node.lan:10001", "ray://10.0.0.1:10001"]
)
def test_addresses_accepted(address: str | None) -> None:
    assert recipe(kind="ray", address=address).executor.address == address


def test_local_address_is_ray_inside_this_process() -> None:
    assert recipe(kind="ray", address="local").executor.address is None


def test_runtime_env_and_storage_pass_through() -> None:
    env = {"pip": ["lightgbm"], "env_vars": {"OMP_NUM_THREADS": "1"}}
    config = recipe(kind="ray", runtime_env=env, storage="s3://bucket/webly").executor
    assert (config.runtime_env, config.storage) == (env, "s3://bucket/webly")


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        ({"kind": "ray", "address": "10.0.0.1"}, r"executor.address: '10.0.0.1' is not HOST:PORT"),
        ({"kind": "ray", "address": "h:70000"}, r"ray://HOST:PORT, auto or local; give the head"),
        ({"kind": "ray", "address": "ray://h"}, r"'ray://h' is not HOST:PORT"),
        ({"kind": "ray", "address": "http://h:1"}, r"'http://h:1' is not HOST:PORT"),
        ({"kind": "ray", "storage": "runs/shared"}, r"executor.storage: 'runs/shared' is neither"),
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


def test_ray_client_without_its_grpcio_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "grpc" else find_spec(name)
    )
    config = ExecutorConfig(kind="ray", address="ray://127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"ray://127.0.0.1:1: Ray Client needs ray\[client\]"):
        make_executor(config)


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        (
            {"address": "ray://127.0.0.1:1"},
            r"executor.address ray://127.0.0.1:1: no Ray head answers there .*"
            r"ray start --head --ray-client-server-port 1",
        ),
        ({"runtime_env": {"py_modules": "x"}}, r"executor.runtime_env: Ray refuses it"),
        ({"storage": "nosuch://x"}, r"executor.storage nosuch://x: pyarrow.fs finds no file"),
    ],
)
def test_bad_ray_settings_fail_at_once(executor: dict[str, Any], message: str) -> None:
    pytest.importorskip("ray")
    if executor.get("address", "").startswith("ray://"):
        pytest.importorskip("grpc")
    with pytest.raises(ConfigError, match=message):
        make_executor(ExecutorConfig(kind="ray", **executor))
