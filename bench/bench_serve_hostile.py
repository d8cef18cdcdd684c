"""Issue 20's figure: ``webly serve`` on a frame-level DBoF export under a hostile request mix.

Builds a small frame-level yt8m-like store (`webly.data.synth.synth_yt8m_like`: uint8 ``rgb``
1024-d and ``audio`` 128-d frames) and a ``dbof`` network over it (``--cluster-size`` clusters,
``--hidden`` units; untrained: the figure is about the service, not the model), exported with
``--max-frames`` recorded as its training ``max_frames`` (what the recipe's export stage
records). Starts ``webly serve EXPORT --threads 1`` in a second process with the default limits
(16 MB bodies, 64 MB of bodies in flight, max_frames from the export, 8,192 padded frames a
model call), then fires ``--requests`` requests from ``--clients`` threads (one keep-alive
connection each, reopened when the server closes it), drawn at random:

- ``good``: one test video (1-``--max-frames`` frames) as JSON, or ``good-4rows``: four;
- ``long``: one row of ``--long-frames`` random frames (the issue's 1,000-frame, 2.8 MB row),
  expected 413;
- ``nan`` / ``infinity`` / ``1e308`` / ``bool``: a good row with one value replaced by ``NaN``,
  ``Infinity``, ``1e308`` or ``true``, expected 422;
- ``oversize``: a body over 16 MB (declared in Content-Length), expected 413 (or the connection
  closed by the server while the client still sends: counted apart, as ``closed``).

Reports the counts per kind and status, good requests that failed, 500s, and the server's peak
RSS (``VmHWM`` of ``/proc/PID/status``) beside its RSS once warm. Run:

    .venv/bin/python bench/bench_serve_hostile.py [--requests 2000] [--clients 16] [--out DIR]
        [--server-path COPY]  # the server from another checkout of webly, as a baseline
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from bench_compress import health, wait_for, yt8m_like

from webly.data import Dataset
from webly.deploy import export_onnx
from webly.deploy.inputs import store_batches
from webly.models import create_model, save_network

KINDS = {  # kind: (share of the requests, the status expected)
    "good": (0.55, 200),
    "good-4rows": (0.10, 200),
    "long": (0.10, 413),
    "nan": (0.05, 422),
    "infinity": (0.05, 422),
    "1e308": (0.04, 422),
    "bool": (0.04, 422),
    "oversize": (0.07, 413),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--max-frames", type=int, default=60)
    parser.add_argument("--long-frames", type=int, default=1000)
    parser.add_argument("--cluster-size", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--out", type=Path, help="keep the data and the export here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--server-path", type=Path, help="run the server from this copy of webly (a baseline)"
    )
    args = parser.parse_args()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        run(args, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(args, Path(tmp))


def run(args: argparse.Namespace, out: Path) -> None:
    export = build_export(args, out)
    test = Dataset.open(out / "data" / "test")
    bodies = request_bodies(args, export, test)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "webly", "serve", str(export), "--port", str(port),
               "--threads", "1"]  # fmt: skip
    env = dict(os.environ)
    if args.server_path is not None:
        env["PYTHONPATH"] = str(args.server_path)
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    try:
        wait_for(port)
        limits = model_limits(port)
        send(port, [("good", bodies["good"][0])])  # warm: the first model call
        warm = memory(server.pid)["VmRSS"]
        rng = np.random.default_rng(args.seed)
        names = list(KINDS)
        drawn = rng.choice(len(names), args.requests, p=[KINDS[k][0] for k in names])
        plan = [(names[i], pick(bodies[names[i]], rng)) for i in drawn]
        shares = [plan[c :: args.clients] for c in range(args.clients)]
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = [r for share in pool.map(lambda s: send(port, s), shares) for r in share]
        seconds = time.perf_counter() - started
        after = memory(server.pid)
        served = health(port)
    finally:
        server.terminate()
        server.wait(timeout=30)
    report(args, results, seconds, warm, after, served, limits)


def build_export(args: argparse.Namespace, out: Path) -> Path:
    data = out / "data"
    layout = yt8m_like(args, data)[0].layout
    export = out / "export"
    if not (export / "model.json").is_file():
        torch.manual_seed(args.seed)
        dims = {g: layout.feature(g).dim for g in ("rgb", "audio")}
        network = create_model(
            "dbof", layout.n_classes, dims, cluster_size=args.cluster_size, hidden=args.hidden
        )
        save_network(network, out / "network")
        export_onnx(out / "network", export, layout=layout, max_frames=args.max_frames)
    return export


def request_bodies(args: argparse.Namespace, export: Path, test: Dataset) -> dict[str, list[bytes]]:
    """A few bodies of each kind, drawn from at random."""
    from webly.deploy import load_exported

    model = load_exported(export)
    rows = []
    for batch in store_batches(test, model.features, 1):
        length = int(batch.lengths[0]) if batch.lengths is not None else 0
        row = {g: v[0, :length] if v.ndim == 3 else v[0] for g, v in batch.groups.items()}
        rows.append({g: v.tolist() for g, v in row.items()})
        if len(rows) == 16:
            break
    rng = np.random.default_rng(args.seed + 1)

    def body(features: dict[str, list], **extra: object) -> bytes:
        return json.dumps({"features": features, **extra}).encode()

    def poisoned(row: dict[str, list], value: bytes) -> bytes:
        frames = [list(frame) for frame in row["rgb"]]
        frames[len(frames) // 2][7] = 999_999  # a marker no code takes, then the value
        features = {g: [v] for g, v in row.items()} | {"rgb": [frames]}
        return body(features).replace(b"999999", value)

    good = [body({g: [v] for g, v in row.items()}) for row in rows]
    four = [body({g: [r[g] for r in rows[i : i + 4]] for g in rows[0]}) for i in range(0, 16, 4)]
    long_rows = [
        body({g: [rng.integers(0, 256, (args.long_frames, len(v[0]))).tolist()]
              for g, v in rows[i].items()})
        for i in range(2)
    ]  # fmt: skip
    poison = {}
    for kind, value in (("nan", b"NaN"), ("infinity", b"Infinity"), ("1e308", b"1e308"),
                        ("bool", b"true")):  # fmt: skip
        poison[kind] = [poisoned(row, value) for row in rows[:4]]
    oversize = [b'{"features": {"rgb": [[' + b"1," * (8_500_000) + b"1]]}}"]
    return {"good": good, "good-4rows": four, "long": long_rows, **poison, "oversize": oversize}


def pick(options: list[bytes], rng: np.random.Generator) -> bytes:
    return options[int(rng.integers(len(options)))]


def send(port: int, plan: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    """POST each body on one keep-alive connection (reopened when the server closes it):
    ``(kind, status)`` of each, status ``closed`` when the server closed the connection before
    answering."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    results = []
    for kind, body in plan:
        try:
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            status = str(response.status)
            if response.will_close:
                connection.close()
        except OSError:
            connection.close()
            status = "closed"
        results.append((kind, status))
    connection.close()
    return results


def memory(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of process ``pid``, bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    return found


def model_limits(port: int) -> dict[str, int]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/model")
        return dict(json.loads(connection.getresponse().read())["limits"])
    finally:
        connection.close()


def report(
    args: argparse.Namespace,
    results: list[tuple[str, str]],
    seconds: float,
    warm: int,
    after: dict[str, int],
    served: dict[str, int],
    limits: dict[str, int],
) -> None:
    counts = collections.Counter(results)
    statuses = sorted({status for _, status in results})
    print(f"{len(results):,} requests from {args.clients} clients in {seconds:.1f} s; "
          f"model calls {served['batches']:,}, rows {served['rows']:,}\n")  # fmt: skip
    print("| kind | expected | " + " | ".join(statuses) + " |")
    print("|---|---:|" + "---:|" * len(statuses))
    for kind, (_, expected) in KINDS.items():
        cells = " | ".join(f"{counts[(kind, s)]:,}" for s in statuses)
        print(f"| {kind} | {expected} | {cells} |")
    good_failed = sum(
        n for (kind, status), n in counts.items() if kind.startswith("good") and status != "200"
    )
    errors = sum(n for (_, status), n in counts.items() if status.startswith("5"))
    print(f"\ngood requests failed: {good_failed}; 5xx answers: {errors}")
    print(f"server RSS once warm {warm / 2**20:,.0f} MiB, after the load "
          f"{after['VmRSS'] / 2**20:,.0f} MiB, peak {after['VmHWM'] / 2**20:,.0f} MiB")  # fmt: skip
    print("limits: " + ", ".join(f"{k} {v:,}" for k, v in limits.items()))


if __name__ == "__main__":
    main()
