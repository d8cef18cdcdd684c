"""Training throughput of `resnet_av` and `netvlad` against the machine's bare GEMM FLOP/s.

For each model at realistic YouTube-8M sizes (rgb 1024 + audio 128, 3,862 classes):

1. the machine's GEMM FLOP/s at exactly the GEMMs of the model's training step (forward and
   backward of every Linear, the VLAD aggregation as a batched GEMM), float32, torch's default
   threads;
2. the training step (fused AdamW as in fit, forward, loss, backward, step) on in-memory
   tensors, and the same model through ``webly.train.fit`` on a generated store
   (``synth_yt8m_like``), as samples/s and
   achieved FLOP/s (the GEMM FLOPs of the step counted analytically, ``2*M*K*N`` per GEMM, the
   input layers' gradient w.r.t. their input left out since autograd does not compute it);
   (``fit`` trains one epoch on the first ``--fit-rows`` rows of the store);
3. the loader alone (over the whole store): rows/s that ``fit``'s batch gathering
   (``_Trainer._gather``: video features, or 300 randomly sampled frames a row) delivers with
   each number of loader threads in ``--workers``, beside what training consumes.

On CUDA (``--device cuda``, the default when a GPU is present) the GEMMs are timed in bfloat16
and the steps run under bfloat16 autocast, as ``fit`` does there.

Issue #4's goals: the video-level step at >= 50% of bare GEMM, the loader >= 5x training. Run:

    .venv/bin/python bench/bench_train.py [--video-configs 1x1024,2x2048] [--video-rows 20000]
        [--fit-rows 2560] [--frame-rows 512] [--frame-batch 64] [--steps 5] [--skip-fit]
        [--workers 1,2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.benchmark import Timer

from webly.data import Dataset
from webly.data.synth import YT8MLikeConfig, synth_yt8m_like
from webly.models.network import create_model
from webly.train.loop import TrainConfig, _autocast, _load_ahead, _Trainer, fit
from webly.train.losses import classification_loss
from webly.train.samplers import epoch_rows

VIDEO_DIMS = {"mean_rgb": 1024, "mean_audio": 128}  # the video-level groups of a yt8m store
FRAME_DIMS = {"rgb": 1024, "audio": 128}  # its frame-level groups
N_CLASSES = 3862
N_FRAMES = 300


@dataclass(frozen=True)
class Gemm:
    """One GEMM of the training step: ``batch`` x ``(m, k) @ (k, n)``."""

    what: str
    m: int
    k: int
    n: int
    batch: int = 1

    @property
    def flops(self) -> float:
        return 2.0 * self.batch * self.m * self.k * self.n


def linear_gemms(name: str, rows: int, d_in: int, d_out: int, input_grad: bool) -> list[Gemm]:
    """The GEMMs of ``nn.Linear(d_in, d_out)`` on ``(rows, d_in)``, forward and backward."""
    gemms = [Gemm(f"{name} fwd", rows, d_in, d_out), Gemm(f"{name} dW", d_out, rows, d_in)]
    if input_grad:
        gemms.append(Gemm(f"{name} dX", rows, d_out, d_in))
    return gemms


def resnet_av_gemms(batch: int, blocks: int, inner: int) -> list[Gemm]:
    gemms = linear_gemms("stem rgb", batch, VIDEO_DIMS["mean_rgb"], inner, False)
    gemms += linear_gemms("stem audio", batch, VIDEO_DIMS["mean_audio"], inner, False)
    for b in range(blocks):
        gemms += linear_gemms(f"block{b} own", batch, inner, inner, True) * 2
        gemms += linear_gemms(f"block{b} mix", batch, 2 * inner, 2 * inner, True)
    return gemms + linear_gemms("classifier", batch, 2 * inner, N_CLASSES, True)


def netvlad_gemms(batch: int, frames: int, clusters: int, hidden: int) -> list[Gemm]:
    dim = sum(FRAME_DIMS.values())
    gemms = linear_gemms("assign", batch * frames, dim, clusters, False)
    gemms += [  # vlad = a^T x (B, K, D); backward: da = x g^T (x needs no gradient)
        Gemm("vlad fwd", clusters, frames, dim, batch),
        Gemm("vlad da", frames, dim, clusters, batch),
    ]
    gemms += linear_gemms("hidden", batch, clusters * dim, hidden, True)
    return gemms + linear_gemms("classifier", batch, hidden, N_CLASSES, True)


def time_gemm(gemm: Gemm, min_time: float, device: torch.device) -> float:
    """Median seconds of one call, operands laid out as in nn.Linear / torch.bmm autograd;
    float32 on the CPU, bfloat16 on CUDA."""
    shape_a = (gemm.batch, gemm.m, gemm.k) if gemm.batch > 1 else (gemm.m, gemm.k)
    shape_b = (gemm.batch, gemm.k, gemm.n) if gemm.batch > 1 else (gemm.k, gemm.n)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    like = {"device": device, "dtype": dtype}
    a, b = torch.randn(shape_a, **like), torch.randn(shape_b, **like)
    if gemm.what.endswith("fwd") and gemm.batch == 1:
        b = torch.randn(gemm.n, gemm.k, **like).t()  # x @ W.T, W (out, in) row-major
    elif gemm.what.endswith("dW"):
        a = torch.randn(gemm.k, gemm.m, **like).t()  # g.T @ x
    # Timer runs on one thread unless told otherwise; the training step uses all of torch's.
    timer = Timer("a @ b", globals={"a": a, "b": b}, num_threads=torch.get_num_threads())
    return float(timer.blocked_autorange(min_run_time=min_time).median)


def bare_gemm(
    gemms: list[Gemm], min_time: float, device: torch.device
) -> tuple[float, float, list[tuple]]:
    """(total GEMM FLOPs, bare seconds for all of them, per-GEMM rows)."""
    cache: dict[tuple, float] = {}
    rows = []
    for g in gemms:
        key = (g.what.split()[-1], g.batch, g.m, g.k, g.n)
        if key not in cache:
            cache[key] = time_gemm(g, min_time, device)
        rows.append((g, cache[key]))
    flops = sum(g.flops for g in gemms)
    return flops, sum(t for _, t in rows), rows


def random_targets(rng: np.random.Generator, batch: int) -> torch.Tensor:
    y = np.zeros((batch, N_CLASSES), dtype=np.float32)
    y[np.arange(batch).repeat(3), rng.integers(0, N_CLASSES, size=3 * batch)] = 1.0
    return torch.from_numpy(y)


def in_memory_steps(
    model: torch.nn.Module, x: torch.Tensor, lengths: Any, steps: int, device: torch.device
) -> float:
    """Seconds per training step (AdamW, forward, loss, backward, step) on fixed tensors
    already on ``device``; the loss value is read back each step, as ``fit`` does."""
    model.to(device)
    x = x.to(device)
    lengths = lengths.to(device) if lengths is not None else None
    targets = random_targets(np.random.default_rng(0), x.shape[0]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)
    model.train()

    def step() -> None:
        with _autocast(device):
            logits = model(x, lengths) if lengths is not None else model(x)
        loss = classification_loss(logits.float(), targets, "multilabel")
        float(loss.detach())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def fit_samples_per_s(
    model: torch.nn.Module, ds: Dataset, config: TrainConfig, workdir: Path, groups: list[str]
) -> float:
    """Samples/s of the last epoch of ``fit`` (no validation; checkpointing is outside it)."""
    result = fit(model, ds, None, config, groups, workdir)
    return result.history[-1].samples_per_s


def loader_rows_per_s(
    model: torch.nn.Module,
    ds: Dataset,
    config: TrainConfig,
    workdir: Path,
    device: torch.device,
    max_batches: int,
    groups: list[str],
) -> float:
    """Rows/s of ``fit``'s batch gathering alone with ``config.workers`` loader threads
    (uncontended by training), batches delivered to ``device``."""
    trainer = _Trainer(
        model, ds, None, config, groups, workdir, device, None, None, None, None, None, None, None
    )
    rows = epoch_rows(ds.labels, config.sampler, np.random.default_rng(1))
    calls = [(b, i, None) for i, b in enumerate(trainer._split(rows)[:max_batches])]
    trainer._gather(*calls[0])  # maps the shards in
    started = time.perf_counter()
    seen = sum(int(b["x"].shape[0]) for b in _load_ahead(trainer._gather, calls, config.workers))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def gflops(flops: float, seconds: float) -> str:
    return f"{flops / seconds / 1e9:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video-configs", default="1x1024,2x2048", help="BLOCKSxINNER,...")
    parser.add_argument("--batch", type=int, default=256, help="video-level batch")
    parser.add_argument("--video-rows", type=int, default=20_000, help="rows of the video store")
    parser.add_argument("--fit-rows", type=int, default=2560, help="rows fit trains an epoch on")
    parser.add_argument("--clusters", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--frame-batch", type=int, default=64)
    parser.add_argument("--frame-rows", type=int, default=512, help="rows of the frame store")
    parser.add_argument("--steps", type=int, default=5, help="timed in-memory steps")
    parser.add_argument("--gemm-time", type=float, default=0.3, help="seconds per GEMM timing")
    parser.add_argument("--skip-fit", action="store_true", help="no store, fit or loader runs")
    parser.add_argument("--per-gemm", action="store_true", help="print every GEMM's timing")
    parser.add_argument("--workers", default="1,2", help="loader threads to time, e.g. 1,2,4")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    configs = [tuple(int(v) for v in c.split("x")) for c in args.video_configs.split(",") if c]
    workers = [int(w) for w in args.workers.split(",")]
    device = torch.device(args.device)

    command = shlex.join([".venv/bin/python", *sys.argv])
    print(f"`{command}`\n")
    gpu = f", {torch.cuda.get_device_name(device)}, bfloat16" if device.type == "cuda" else ""
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs{gpu or ', float32'}\n"
    )

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        video_ds = frame_ds = None
        if not args.skip_fit:
            common = {"test_videos": 0, "unlabeled_videos": 0, "classes": N_CLASSES}
            common["topics"] = N_CLASSES // 10
            synth_yt8m_like(tmp / "video", YT8MLikeConfig(videos=args.video_rows, **common))
            video_ds = Dataset.open(tmp / "video" / "train")
            synth_yt8m_like(
                tmp / "frame",
                YT8MLikeConfig(videos=args.frame_rows, max_frames=N_FRAMES, **common),
            )
            frame_ds = Dataset.open(tmp / "frame" / "train")

        for blocks, inner in configs:
            name = f"resnet_av blocks={blocks} inner={inner}"
            gemms = resnet_av_gemms(args.batch, blocks, inner)
            flops, bare, per = bare_gemm(gemms, args.gemm_time, device)
            torch.manual_seed(0)
            model = create_model("resnet_av", N_CLASSES, VIDEO_DIMS, blocks=blocks, inner=inner)
            x = torch.randn(args.batch, sum(VIDEO_DIMS.values()))
            step = in_memory_steps(model, x, None, args.steps, device)
            row = {"name": name, "batch": args.batch, "flops": flops, "bare": bare,
                   "step": step, "per": per}  # fmt: skip
            if video_ds is not None:
                config = TrainConfig(epochs=1, batch_size=args.batch, workers=max(workers))
                torch.manual_seed(0)
                model = create_model("resnet_av", N_CLASSES, VIDEO_DIMS, blocks=blocks, inner=inner)
                fit_ds = video_ds.subset(np.arange(min(args.fit_rows, len(video_ds))))
                video = list(VIDEO_DIMS)
                row["fit"] = fit_samples_per_s(model, fit_ds, config, tmp / f"fit-{name}", video)
                row["loader"] = {
                    w: loader_rows_per_s(
                        model,
                        video_ds,
                        replace(config, workers=w),
                        tmp / "ld",
                        device,
                        10**9,
                        video,
                    )
                    for w in workers
                }
            results.append(row)

        name = f"netvlad clusters={args.clusters} hidden={args.hidden} T={N_FRAMES}"
        gemms = netvlad_gemms(args.frame_batch, N_FRAMES, args.clusters, args.hidden)
        flops, bare, per = bare_gemm(gemms, args.gemm_time, device)
        torch.manual_seed(0)
        model = create_model(
            "netvlad", N_CLASSES, FRAME_DIMS, clusters=args.clusters, hidden=args.hidden
        )
        x = torch.randn(args.frame_batch, N_FRAMES, sum(FRAME_DIMS.values()))
        lengths = torch.full((args.frame_batch,), N_FRAMES)
        step = in_memory_steps(model, x, lengths, max(3, args.steps // 2), device)
        row = {"name": name, "batch": args.frame_batch, "flops": flops, "bare": bare,
               "step": step, "per": per}  # fmt: skip
        if frame_ds is not None:
            config = TrainConfig(
                epochs=1, batch_size=args.frame_batch, max_frames=N_FRAMES, workers=max(workers)
            )
            frame = list(FRAME_DIMS)
            row["fit"] = fit_samples_per_s(model, frame_ds, config, tmp / "fit-netvlad", frame)
            row["loader"] = {
                w: loader_rows_per_s(
                    model,
                    frame_ds,
                    replace(config, workers=w),
                    tmp / "ld-f",
                    device,
                    10**9,
                    frame,
                )
                for w in workers
            }
        results.append(row)

    print("## Bare GEMM at the training step's shapes\n")
    print("| model | batch | GEMMs | GFLOP/step | bare GEMM s/step | bare GEMM GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['name']} | {r['batch']} | {len(r['per'])} | {r['flops'] / 1e9:,.2f} | "
            f"{r['bare']:.4f} | {gflops(r['flops'], r['bare'])} |"
        )
    if args.per_gemm:
        print("\n| model | GEMM | batch x (m, k) @ (k, n) | ms | GFLOP/s |")
        print("|---|---|---|---:|---:|")
        for r in results:
            for g, t in r["per"]:
                print(
                    f"| {r['name']} | {g.what} | {g.batch} x ({g.m}, {g.k}) @ ({g.k}, {g.n}) | "
                    f"{t * 1e3:.2f} | {gflops(g.flops, t)} |"
                )

    print("\n## Training step: achieved FLOP/s vs bare GEMM (goal: video-level >= 50%)\n")
    print("| model | where | samples/s | achieved GFLOP/s | / bare GEMM |")
    print("|---|---|---:|---:|---:|")
    for r in results:
        bare_rate = r["flops"] / r["bare"]
        runs = [("in-memory loop", r["batch"] / r["step"])]
        if "fit" in r:
            runs.append(("webly.train.fit on store", r["fit"]))
        for where, sps in runs:
            achieved = sps / r["batch"] * r["flops"]
            print(
                f"| {r['name']} | {where} | {sps:,.0f} | {achieved / 1e9:,.1f} | "
                f"{achieved / bare_rate:.0%} |"
            )

    if any("loader" in r for r in results):
        print("\n## Loader alone vs training consumption (goal: >= 5x)\n")
        print(
            f"`fit` ran with {max(workers)} loader thread(s).\n\n"
            "| model | loader threads | loader rows/s | fit samples/s | loader / training |"
        )
        print("|---|---:|---:|---:|---:|")
        for r in results:
            for w, rate in r.get("loader", {}).items():
                print(
                    f"| {r['name']} | {w} | {rate:,.0f} | {r['fit']:,.0f} | "
                    f"{rate / r['fit']:.1f}x |"
                )


if __name__ == "__main__":
    main()
