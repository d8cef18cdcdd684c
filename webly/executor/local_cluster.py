"""A Ray cluster of several nodes on this machine: to try ``executor: ray`` without a cluster,
and what the Ray executor's tests and benchmark run on.

::

    with LocalCluster([{"head": 1}, {"second": 1}], cpus_per_node=1) as cluster:
        run_recipe("recipe.yaml", "run", [f"executor.address={cluster.address}"])  # kind: ray
        cluster.node_ids    # {"head": "<node id>", "second": "<node id>"}: by custom resource

Each node is one ``ray start --block`` in a session of its own, with its own ports (GCS on the
head; node and object manager, agents, metrics and workers on every node) and a custom
resource naming it. Stopping kills those sessions' processes and nothing else (``ray stop``
would stop every Ray node on the machine), then removes the cluster's temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from webly.errors import ConfigError, DataError

START_TIMEOUT_S = 60.0
_PORT_OPTIONS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)
_WORKER_PORTS = 12  # ports each node's workers may bind (one a worker process)


class LocalCluster:
    """Nodes of one Ray cluster on this machine (module docstring).

    Parameters
    ----------
    resources : one custom resource mapping per node, the head first (e.g. ``{"head": 1}``);
        the first key of each names the node in `node_ids`
    cpus_per_node : CPUs each node offers
    object_store_bytes : each node's object store (Ray's minimum is 75 MB)
    """

    def __init__(
        self,
        resources: Sequence[dict[str, float]] = ({"head": 1}, {"second": 1}),
        cpus_per_node: int = 1,
        object_store_bytes: int = 100_000_000,
    ) -> None:
        if not resources or not all(resources):
            raise ConfigError(
                f"LocalCluster: resources {list(resources)} do not name every node; give one "
                "non-empty mapping a node, e.g. [{'head': 1}, {'second': 1}]"
            )
        self.resources = [dict(r) for r in resources]
        self.cpus_per_node = cpus_per_node
        self.object_store_bytes = object_store_bytes
        self.address = ""
        self.node_ids: dict[str, str] = {}
        self.sessions: list[int] = []  # the session (and process group) id of each node
        self._procs: list[subprocess.Popen[bytes]] = []
        self._temp: Path | None = None

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the head, then the other nodes, and wait until every node has joined."""
        self._temp = Path(tempfile.mkdtemp(prefix="webly-ray-"))  # short: sockets live there
        port = _free_ports(1)[0]
        self.address = f"127.0.0.1:{port}"
        try:
            head = ["--head", "--port", str(port), "--temp-dir", str(self._temp)]
            self._launch(0, [*head, "--include-dashboard", "false"], self.resources[0])
            self._wait_for_head(port)
            for index, resources in enumerate(self.resources[1:], start=1):
                self._launch(index, ["--address", self.address], resources)
            self.node_ids = self._wait_for_nodes()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Disconnect this process from the cluster if it is connected (a driver that loses
        its cluster aborts the process a minute later), kill every process of the nodes'
        sessions (workers included, which leave their node's process group but not its
        session), remove the folder."""
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized() and self.address:
            port = self.address.rpartition(":")[2]
            if ray.get_runtime_context().gcs_address.rpartition(":")[2] == port:
                ray.shutdown()
        for pid in _session_members(set(self.sessions)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self._procs:
            proc.wait()
        self._procs.clear()
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    def _launch(self, index: int, where: list[str], resources: dict[str, float]) -> None:
        assert self._temp is not None
        ports = _free_ports(len(_PORT_OPTIONS) + _WORKER_PORTS)
        options = [str(x) for pair in zip(_PORT_OPTIONS, ports, strict=False) for x in pair]
        workers = ",".join(str(p) for p in ports[len(_PORT_OPTIONS) :])
        command = [
            str(Path(sys.executable).with_name("ray")), "start", *where, "--block",
            "--node-ip-address", "127.0.0.1", "--num-cpus", str(self.cpus_per_node),
            "--num-gpus", "0", "--resources", json.dumps(resources),
            "--object-store-memory", str(self.object_store_bytes), "--disable-usage-stats",
            *options, "--worker-port-list", workers,
        ]  # fmt: skip
        log = open(self._temp / f"node-{index}.log", "wb")  # noqa: SIM115 (the node holds it)
        # a token in ~/.ray/auth_token would otherwise turn on token authentication on these
        # nodes, which this process's driver does not send
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        log.close()
        self._procs.append(proc)
        self.sessions.append(proc.pid)

    def _wait_for_head(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise DataError(f"LocalCluster: the head did not open port {port} in time; {self._log()}")

    def _wait_for_nodes(self) -> dict[str, str]:
        """``{first resource name: node id}`` once every node is alive (a driver connects for
        the check and disconnects)."""
        import ray

        ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                self._check_alive()
                found = _named_nodes(ray.nodes(), self.resources)
                if len(found) == len(self.resources):
                    return found
                time.sleep(0.2)
        finally:
            ray.shutdown()
        raise DataError(f"LocalCluster: not every node joined in time; {self._log()}")

    def _check_alive(self) -> None:
        for proc in self._procs:
            if proc.poll() is not None:
                raise DataError(
                    f"LocalCluster: ray start exited ({proc.returncode}); {self._log()}"
                )

    def _log(self) -> str:
        """The last lines the nodes printed."""
        assert self._temp is not None
        tails = []
        for path in sorted(self._temp.glob("node-*.log")):
            lines = path.read_text(errors="replace").strip().splitlines()
            tails.append(f"{path.name}: {' | '.join(lines[-3:])}")
        return "; ".join(tails) or "no output"


def _named_nodes(nodes: list[dict[str, Any]], resources: list[dict[str, float]]) -> dict[str, str]:
    """``{name: node id}`` of the alive ``nodes`` holding each node's first custom resource."""
    found = {}
    for wanted in resources:
        name = next(iter(wanted))
        for node in nodes:
            if node["Alive"] and name in node["Resources"]:
                found[name] = node["NodeID"]
    return found


def _session_members(sessions: set[int]) -> list[int]:
    """The processes (Linux's ``/proc``) whose session is one of ``sessions``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) in sessions:
                    members.append(int(entry))
            except OSError:  # gone meanwhile
                continue
    return members


def _free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports nothing listens on now (bound together, then released)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
