"""Issue 7's measured goals: compression size/quality and ONNX Runtime vs PyTorch throughput.

On the frame-level yt8m-like benchmark (`webly.data.synth.synth_yt8m_like`), trains with
`webly.train.fit` on the noisy training labels

* ``resnet_av`` (1 block, inner 1024) on the video-level groups ``mean_rgb``/``mean_audio``;
* ``dbof`` (1,024 clusters, hidden 512) on the frame-level groups ``rgb``/``audio``;

then for each model and each of fp32, fp16, partial 8-bit (tensors of more than 17,000
elements, 256 levels) and k-means (256 centroids) reports the size of the weights file and of
the exported ``model.onnx`` and the GAP@20 on the clean test labels (``test.clean_labels``),
predicted by ONNX Runtime from the exported model (goal: partial 8-bit at most 0.001 below fp32
at about 1/4 of the size).

Throughput: the fp32 model on CPU, stored test rows in, probabilities out, at several batch
sizes: PyTorch eager (numpy dequantization + ``Network`` in eval mode under ``no_grad``)
against ONNX Runtime (CPU provider, dequantization in the graph), both with the same number of
intra-op threads (each of ``--threads``), one after the other in one run, best of
``--repeats`` passes each after a warm-up pass (goal: ONNX Runtime >= 1.5x). The engines are
not interleaved pass by pass: each one's idle threads spin for a while after a call and would
slow the other down. A third figure, the GEMM ceiling: rows/s of the model's ``nn.Linear``
layers alone, replayed as ``torch.mm`` calls of the shapes they got on the same batches (for
a frame-level model the per-frame layer's rows are the batch's real frames) on the same
threads, what an engine doing nothing but those float32 GEMMs with PyTorch's kernels would
reach. And one float32 GEMM alone, ``torch.mm`` against a one-node ONNX Runtime ``MatMul``,
in GFLOP/s: the two engines' GEMM kernels (PyTorch's oneMKL against ONNX Runtime's MLAS) differ
by CPU, and that difference decides the ratio wherever the models are GEMM-bound.

Service: ``webly serve`` on the exported fp32 ``resnet_av`` in a second process on loopback,
loaded by ``--concurrency`` clients at a time (threads of this process, one keep-alive
connection each) sending one test row a request as JSON (``--requests`` in all): requests/s,
p50/p99 latency, failed requests, and the rows per model call its micro-batching reached.

``--out`` keeps data and models (a second run resumes). Run:

    .venv/bin/python bench/bench_compress.py [--videos 4000] [--classes 200] [--max-frames 60]
        [--epochs 8] [--threads 1,2] [--repeats 3] [--concurrency 1,16] [--requests 2000]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from webly.compress import compress_network
from webly.core import TopK
from webly.data import Dataset
from webly.data.synth import YT8MLikeConfig, synth_yt8m_like
from webly.deploy import export_onnx, load_exported
from webly.deploy.export import torch_probabilities
from webly.deploy.exported import ExportedModel
from webly.deploy.inputs import RowBatch, store_batches
from webly.metrics import gap_at_k
from webly.models import Network, create_model, save_network
from webly.models.quantized import open_network
from webly.train.loop import TrainConfig, fit

MODELS: dict[str, dict[str, Any]] = {
    "resnet_av": {
        "groups": ("mean_rgb", "mean_audio"),
        "hparams": {"blocks": 1, "inner": 1024},
        "batches": (1, 64, 512),
    },
    "dbof": {
        "groups": ("rgb", "audio"),
        "hparams": {"cluster_size": 1024, "hidden": 512},
        "batches": (1, 16, 64),
    },
}
METHODS = ("fp32", "fp16", "int8_partial", "kmeans")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=4000)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--max-frames", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--threads", default="1,2", help="torch and ORT intra-op threads, comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--throughput-rows", type=int, default=1024)
    parser.add_argument("--concurrency", default="1,16", help="service clients at a time")
    parser.add_argument("--requests", type=int, default=2000, help="service requests a level")
    parser.add_argument("--out", type=Path, help="keep data and models here (resumes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"`{shlex.join(['.venv/bin/python', *sys.argv])}`\n")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, CPU\n")
    with tempfile.TemporaryDirectory() as tmp:
        run(args, args.out or Path(tmp))


def yt8m_like(args: argparse.Namespace, data: Path) -> tuple[Dataset, Dataset]:
    """(train, test) of the yt8m-like benchmark of ``args.videos``, ``args.classes`` and
    ``args.max_frames`` (``args.seed``), generated under ``data`` unless it is there."""
    if not (data / "test" / "manifest.json").is_file():
        config = YT8MLikeConfig(
            videos=args.videos, classes=args.classes, max_frames=args.max_frames,
            unlabeled_videos=0, seed=args.seed,
        )  # fmt: skip
        print(synth_yt8m_like(data, config, overwrite=True), "\n")
    return Dataset.open(data / "train"), Dataset.open(data / "test")


def run(args: argparse.Namespace, out: Path) -> None:
    train, test = yt8m_like(args, out / "yt8m-like")
    truth = test.clean_labels
    assert truth is not None  # the generator stores every split's truth
    print(f"{len(train):,} noisy train videos, {len(test):,} clean test videos, "
          f"{train.n_classes} classes, {args.epochs} epochs\n")  # fmt: skip
    sizes = ["| model | weights | weights file | model.onnx | GAP@20 (clean test) | vs fp32 |",
             "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    speed = ["| model | threads | batch | PyTorch eager rows/s | ONNX Runtime rows/s | ratio | "
             "GEMM ceiling rows/s | eager / ceiling |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, spec in MODELS.items():
        folders = train_and_compress(name, spec, train, args, out / "models" / name)
        base_size = base_gap = 0.0
        for method in METHODS:
            exported = export_onnx(folders[method], out / "exports" / name / method,
                                   layout=train.layout, overwrite=True)  # fmt: skip
            gap = clean_gap(exported, test, truth)
            weights = sum(f.stat().st_size for f in folders[method].glob("weights*.safetensors"))
            onnx = exported.info["files"]["model.onnx"]["bytes"]
            if method == "fp32":
                base_size, base_gap = weights, gap
            sizes.append(
                f"| {name} | {method} | {weights / 1e6:.2f} MB ({weights / base_size:.1%}) | "
                f"{onnx / 1e6:.2f} MB | {gap:.4f} | {gap - base_gap:+.4f} |"
            )
        speed += throughput(name, spec, folders["fp32"], out / "exports" / name / "fp32",
                            test, args)  # fmt: skip
    print("\n".join(sizes), "\n")
    print("\n".join(speed), "\n")
    for threads in [int(t) for t in args.threads.split(",")]:
        rates = gemm_rates(threads, args.repeats)
        print(
            f"One float32 GEMM (512 x 1024) @ (1024 x 1024), {threads} thread(s): torch.mm "
            f"{rates['torch']:.0f} GFLOP/s, ONNX Runtime MatMul {rates['ort']:.0f} GFLOP/s"
        )
    print()
    print("\n".join(service_load(out / "exports" / "resnet_av" / "fp32", test, args)))


def train_and_compress(
    name: str, spec: dict[str, Any], train: Dataset, args: argparse.Namespace, folder: Path
) -> dict[str, Path]:
    """The fp32 network (trained once, then kept) and its three compressed folders."""
    fp32 = folder / "fp32"
    if not (fp32 / "weights.safetensors").is_file():
        started = time.perf_counter()
        dims = {g: train.layout.feature(g).dim for g in spec["groups"]}
        model = create_model(name, train.n_classes, dims, seed=args.seed, **spec["hparams"])
        config = TrainConfig(epochs=args.epochs, batch_size=128, lr=0.002, warmup_epochs=0.5,
                             max_frames=args.max_frames, seed=args.seed)  # fmt: skip
        fit(model, train, None, config, spec["groups"], folder / "work")
        save_network(model, fp32)
        print(f"trained {name} in {time.perf_counter() - started:.0f} s")
    folders = {"fp32": fp32}
    for method in METHODS[1:]:
        folders[method] = folder / method
        compress_network(fp32, folders[method], method, overwrite=True)  # type: ignore[arg-type]
    return folders


def clean_gap(exported: ExportedModel, test: Dataset, truth: Any) -> float:
    """GAP@20 on the clean test labels of ONNX Runtime's predictions."""
    indices, scores = [], []
    for batch in store_batches(test, exported.features, 256):
        probs = exported.predict(batch.groups, batch.lengths)
        top = np.argpartition(-probs, 19, axis=1)[:, :20]  # (B, 20)
        indices.append(top)
        scores.append(np.take_along_axis(probs, top, axis=1))
    return gap_at_k(TopK(np.concatenate(indices), np.concatenate(scores)), truth, k=20)


def throughput(
    name: str,
    spec: dict[str, Any],
    network_folder: Path,
    export_folder: Path,
    test: Dataset,
    args: argparse.Namespace,
) -> list[str]:
    """Rows/s of PyTorch eager and ONNX Runtime on the same stored rows and batch sizes, for
    each number of threads."""
    network = open_network(network_folder)
    rows = min(args.throughput_rows, len(test))
    lines = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        exported = load_exported(export_folder, threads=threads)
        for size in spec["batches"]:
            batches = list(store_batches(test.subset(np.arange(rows)), exported.features, size))
            rates = engine_rates(network, exported, batches, args.repeats)
            gemm = gemm_ceiling(network, exported, batches, args.repeats)
            eager, onnx = rates["torch"], rates["ort"]
            lines.append(
                f"| {name} | {threads} | {size} | {eager:,.0f} | {onnx:,.0f} | "
                f"{onnx / eager:.2f}x | {gemm:,.0f} | {eager / gemm:.0%} |"
            )
    return lines


def gemm_ceiling(
    network: Network, exported: ExportedModel, batches: list[RowBatch], repeats: int
) -> float:
    """Rows/s of the network's ``nn.Linear`` layers alone on ``batches``: one eager pass
    records the rows each layer multiplied, then ``torch.mm`` replays every call on random
    float32 matrices of the same shapes (one weight matrix per layer), best of ``repeats``
    passes after a warm-up one."""
    layers = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
    calls: list[tuple[int, int]] = []  # (layer, rows) in call order
    hooks = [
        layer.register_forward_hook(
            lambda _, inputs, __, i=i: calls.append((i, inputs[0].numel() // inputs[0].shape[-1]))
        )
        for i, layer in enumerate(layers)
    ]
    for batch in batches:
        eager_probabilities(network, exported, batch)
    for hook in hooks:
        hook.remove()
    seeded = torch.Generator().manual_seed(0)
    weights = [torch.randn(m.in_features, m.out_features, generator=seeded) for m in layers]
    most = max(rows for _, rows in calls)
    inputs = [torch.randn(most, m.in_features, generator=seeded) for m in layers]

    def replay() -> None:
        for i, rows in calls:
            torch.mm(inputs[i][:rows], weights[i])

    return sum(len(batch.ids) for batch in batches) / best_seconds(replay, repeats)


def gemm_rates(
    threads: int, repeats: int, m: int = 512, k: int = 1024, n: int = 1024
) -> dict[str, float]:
    """GFLOP/s of one float32 ``(m, k) @ (k, n)`` product in ``torch.mm`` and in a one-node
    ONNX Runtime ``MatMul`` graph on ``threads`` threads, best of ``repeats`` passes of 20
    calls after a warm-up pass: the two engines' own GEMM kernels on this CPU."""
    seeded = torch.Generator().manual_seed(0)
    a, w = torch.randn(m, k, generator=seeded), torch.randn(k, n, generator=seeded)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["y"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(w.numpy(), "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    torch.set_num_threads(threads)
    calls = {
        "torch": lambda: [torch.mm(a, w) for _ in range(20)],
        "ort": lambda: [session.run(None, {"a": a.numpy()}) for _ in range(20)],
    }
    return {
        key: 20 * 2 * m * k * n / best_seconds(call, repeats) / 1e9 for key, call in calls.items()
    }


def engine_rates(
    network: Network, exported: ExportedModel, batches: list[RowBatch], repeats: int
) -> dict[str, float]:
    """Rows/s of PyTorch eager and of ONNX Runtime over ``batches``, best of ``repeats`` passes
    after a warm-up one."""

    def eager() -> None:
        for batch in batches:
            eager_probabilities(network, exported, batch)

    def onnx() -> None:
        for batch in batches:
            exported.predict(batch.groups, batch.lengths)

    rows = sum(len(batch.ids) for batch in batches)
    return {
        key: rows / best_seconds(call, repeats) for key, call in (("torch", eager), ("ort", onnx))
    }


def service_load(export_folder: Path, test: Dataset, args: argparse.Namespace) -> list[str]:
    """Requests/s and latency of ``webly serve`` in another process under concurrent load."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "webly", "serve", str(export_folder), "--port", str(port),
               "--threads", "1"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        wait_for(port)
        exported = load_exported(export_folder)
        bodies = [
            json.dumps({"features": {k: v.tolist() for k, v in batch.groups.items()}}).encode()
            for batch in store_batches(test, exported.features, 1)
        ]
        lines = ["| concurrency | requests | failed | requests/s | p50 ms | p99 ms | rows a call |",
                 "|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for clients in [int(c) for c in args.concurrency.split(",")]:
            before = health(port)
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                per_client = args.requests // clients
                shares = [[bodies[(i + j * clients) % len(bodies)] for j in range(per_client)]
                          for i in range(clients)]  # fmt: skip
                results = list(pool.map(lambda share: client(port, share), shares))
            seconds = time.perf_counter() - started
            after = health(port)
            latencies = np.concatenate([r[0] for r in results]) * 1000
            failed = sum(r[1] for r in results)
            calls = after["batches"] - before["batches"]
            rows = after["rows"] - before["rows"]
            lines.append(
                f"| {clients} | {latencies.size + failed:,} | {failed} | "
                f"{latencies.size / seconds:,.0f} | {np.percentile(latencies, 50):.1f} | "
                f"{np.percentile(latencies, 99):.1f} | {rows / max(calls, 1):.1f} |"
            )
        return lines
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_for(port: int) -> None:
    for _ in range(600):
        try:
            health(port)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"webly serve did not start on port {port}")


def health(port: int) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/health")
        return dict(json.loads(connection.getresponse().read()))
    finally:
        connection.close()


def client(port: int, bodies: list[bytes]) -> tuple[np.ndarray, int]:
    """POST each body on one keep-alive connection: latencies (s) of the 200s, failures."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies, failed = [], 0
    headers = {"Content-Type": "application/json"}
    for body in bodies:
        started = time.perf_counter()
        try:
            connection.request("POST", "/predict", body, headers)
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except OSError:
            connection.close()
            ok = False
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            failed += 1
    connection.close()
    return np.array(latencies), failed


def eager_probabilities(network: Network, exported: ExportedModel, batch: RowBatch) -> np.ndarray:
    """PyTorch eager probabilities ``(B, n_classes)`` of a batch of stored rows."""
    arrays = [batch.groups[s.name] for s in exported.features]
    return torch_probabilities(network, exported.features, arrays, batch.lengths, True)


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of ``repeats + 1`` calls of ``run`` (the first one warms up)."""
    best = float("inf")
    for _ in range(repeats + 1):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


if __name__ == "__main__":
    main()
