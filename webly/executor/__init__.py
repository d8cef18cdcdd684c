"""Where a zoo's fold models train: the recipe's ``executor:`` section.

::

    executor:
      kind: ray              # local (the default): in the calling process
      address: 10.0.0.1:6379 # the Ray head: HOST:PORT (ray start --head), ray://HOST:PORT
                             # (Ray Client), auto (the cluster of this machine), local or null
                             # (Ray inside this process)
      runtime_env: null      # given to ray.init as it is; null: webly's package (py_modules)
                             # when webly joins a cluster, nothing for Ray inside this process
      storage: null          # a filesystem URI every node reaches (s3://bucket/webly,
                             # file:///nfs/webly): stores and fold outputs travel through it
      cpus_per_task: 1       # CPUs (and torch threads) of each fold's task
      gpus_per_task: 0       # GPUs of each fold's task (fractions share one GPU)
      max_retries: 3         # a task whose worker or node dies is run again this many times

`fit_oof` and `fit_full` (`webly.train.oof`) hand an executor the fold models still missing,
one `webly.train.oof.FoldJob` each, and the function that trains one
(`webly.train.oof.train_fold`): the executor runs what the trainer gives it and never imports
the trainer. `LocalExecutor` leaves them to `fit_oof`'s loop, which trains each fold as it
reaches it (webly's behaviour without an executor). `RayExecutor` (`webly.executor.ray`) trains
them first as Ray tasks spread over a cluster's nodes, each saving its model atomically into the
run directory, which `fit_oof` then only loads. Without ``storage`` a task opens the training
store from its folder and writes into the run directory (paths every node sees); with it, the
stores are published under the URI and every task reads them and writes its fold's files
through it (`webly.executor.storage`), so the nodes share no path with the caller.

A fold trained in a Ray worker equals one trained locally (the trainer is seeded, and a task
runs torch on ``cpus_per_task`` threads: compare with a local run on as many), so the executor
is part of no stage's config hash: a run started locally resumes under Ray, skipping what is
done, and the other way round.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from webly.executor.local import LocalExecutor

if TYPE_CHECKING:
    from webly.train.oof import FoldInputs, FoldJob

__all__ = [
    "CLI_WORDS",
    "RECIPE_WORDS",
    "Executor",
    "ExecutorConfig",
    "LocalExecutor",
    "Words",
    "make_executor",
]

_HOST_PORT = re.compile(r"^(?:ray://)?[A-Za-z0-9_.\-]+:(\d{1,5})$")
ADDRESSES = (
    "HOST:PORT (e.g. 10.0.0.1:6379, as ray start --head prints it), ray://HOST:PORT, auto or local"
)
"""The forms of ``executor.address``, as errors name them."""


class ExecutorConfig(BaseModel):
    """The ``executor`` section of a recipe (see the module docstring). Every field but
    ``kind`` is read by ``kind: ray`` only. ``address`` null (or ``local``, which validates to
    null) starts a Ray instance inside this process, ``auto`` joins the cluster started on this
    machine (``ray start``), ``ray://HOST:PORT`` connects through Ray Client (``ray[client]``);
    a Ray session the caller opened before is used as it is, whatever the address.
    ``runtime_env`` is passed to ``ray.init`` (to each task in the caller's session);
    ``storage`` is a filesystem URI (or a path every node mounts) that ``pyarrow.fs`` reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    runtime_env: dict[str, Any] | None = None
    storage: str | None = None
    cpus_per_task: int = Field(default=1, ge=1)
    gpus_per_task: float = Field(default=0.0, ge=0.0)
    max_retries: int = Field(default=3, ge=0)

    @field_validator("address")
    @classmethod
    def _address(cls, address: str | None) -> str | None:
        if address is None or address == "local":
            return None
        if address == "auto":
            return address
        match = _HOST_PORT.match(address)
        if match is None or not 0 < int(match.group(1)) < 65536:
            raise ValueError(
                f"executor.address: {address!r} is not {ADDRESSES}; give the head's address in "
                "one of those forms"
            )
        return address

    @field_validator("storage")
    @classmethod
    def _storage(cls, storage: str | None) -> str | None:
        if storage is None or "://" in storage or storage.startswith("/"):
            return storage
        raise ValueError(
            f"executor.storage: {storage!r} is neither a URI nor an absolute path; give one "
            "every node reaches, e.g. s3://bucket/webly or file:///nfs/webly"
        )


class Words(NamedTuple):
    """How error messages name what asked for Ray, the head's address, and the way back to
    training in this process: `RECIPE_WORDS` (the recipe's fields) or `CLI_WORDS` (``--ray``)."""

    ray: str
    address: str
    local: str


RECIPE_WORDS = Words("executor.kind: ray", "executor.address", "set executor.kind: local")
CLI_WORDS = Words("--ray", "--ray", "leave --ray out")


class Executor(Protocol):
    """Trains fold models ahead of `fit_oof`'s loop (or leaves them to it)."""

    def train_folds(
        self,
        train_fold: Callable[[FoldInputs, FoldJob], None],
        inputs: FoldInputs,
        jobs: Sequence[FoldJob],
    ) -> dict[str, str]:
        """Train and save the models of ``jobs``, each by ``train_fold(inputs, job)`` (or none,
        leaving them to the caller); ``{member id: error message}`` of members whose training
        failed (``train_fold`` raised a `WeblyError`)."""
        ...


def make_executor(config: ExecutorConfig, words: Words = RECIPE_WORDS) -> Executor:
    """The executor of ``config``. ``kind: ray`` checks at once that ray is installed and the
    head at ``address`` answers (`ConfigError` naming it in ``words``, within seconds),
    connecting when it is first given jobs."""
    if config.kind == "local":
        return LocalExecutor()
    from webly._optional import require

    require("ray", words.ray, words.local)  # one line naming webly[ray], not a traceback
    from webly.executor.ray import RayExecutor

    return RayExecutor(config, words)
