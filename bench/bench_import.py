"""Benchmark: reading and importing YouTube-8M frame-level TFRecord files, webly vs the
``tfrecord`` PyPI package, measured in one run on the same files.

Times, on frame-level files (``--files GLOB``, e.g. files TensorFlow wrote; else files generated
with webly's writer, laid out as TensorFlow lays them out: context ``labels`` before ``id``, one
``bytes_list`` of one byte string per frame, rgb 1024 + audio 128 bytes a frame)

1. the peer: ``tfrecord.reader.sequence_loader`` turning every video's frames into
   ``(n_frames, dim)`` uint8 arrays with ``np.frombuffer`` -- the package's way to read frames;
2. the lean peer: the package's ``tfrecord_iterator`` and its protobuf ``SequenceExample``
   (upb, in C) with one ``b"".join`` of each group's frames -- the least a user of the package
   could write;
3. webly's reader + parser (it also verifies both CRC32Cs of every record, which the peers skip);
4. the full ``import_yt8m`` into a webly dataset with one worker and with the default workers,
   into a folder on the disk (fsynced, as every import) and into ``/dev/shm`` (RAM-backed tmpfs),
   which separates the disk from the store-building work.

Every step runs ``--repeat`` times, the steps interleaved, in one process; the table gives the
best and the median, and ratios of the best times. The inputs are read once first, so they are
page-cached. With the real 2018 video-level sample present (``../shared/data/yt8m-2018-validate``)
it also times the video-level import of its 30 files.
Run: ``python bench/bench_import.py [--files 'frames/*.tfrecord']``.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tfrecord import example_pb2
from tfrecord.reader import example_loader, sequence_loader, tfrecord_iterator

from webly.data.store import Level
from webly.data.tfrecord import (
    FeatureInput,
    encode_sequence_example,
    iter_records,
    parse_example,
    parse_sequence_example,
    write_records,
)
from webly.data.yt8m import DIMS, import_yt8m

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "yt8m-2018-validate"
SHM = Path("/dev/shm")


def generate(folder: Path, n_files: int, videos: int, frames: tuple[int, int], seed: int) -> None:
    """Write ``n_files`` frame-level files of ``videos`` SequenceExamples each, with the context
    in TensorFlow's order (``labels``, then ``id``)."""
    rng = np.random.default_rng(seed)
    pool = {
        name: rng.integers(0, 256, (4 * frames[1], dim), np.uint8) for name, dim in DIMS.items()
    }
    for f in range(n_files):
        payloads = []
        for v in range(videos):
            n_frames = int(rng.integers(frames[0], frames[1] + 1))
            start = int(rng.integers(0, 3 * frames[1]))
            context: dict[str, FeatureInput] = {
                "labels": rng.integers(0, 3862, 3),
                "id": [f"f{f}v{v}".encode()],
            }
            lists = {name: pool[name][start : start + n_frames] for name in DIMS}
            payloads.append(encode_sequence_example(context, lists))
        write_records(folder / f"train{f:04d}.tfrecord", payloads)


def peer_frames(files: list[Path]) -> int:
    count = 0
    for path in files:
        for _, lists in sequence_loader(str(path), None):
            for name in DIMS:
                np.stack([np.frombuffer(frame, np.uint8) for frame in lists[name]])
            count += 1
    return count


def lean_frames(files: list[Path]) -> int:
    count = 0
    for path in files:
        for record in tfrecord_iterator(str(path)):
            lists = example_pb2.SequenceExample.FromString(record).feature_lists.feature_list
            for name, dim in DIMS.items():
                joined = b"".join(f.bytes_list.value[0] for f in lists[name].feature)
                np.frombuffer(joined, np.uint8).reshape(-1, dim)
            count += 1
    return count


def webly_frames(files: list[Path]) -> int:
    count = 0
    for path in files:
        for _, payload in iter_records(path):
            parse_sequence_example(payload)
            count += 1
    return count


def peer_video(files: list[Path]) -> int:
    return sum(1 for path in files for _ in example_loader(str(path), None))


def webly_video(files: list[Path]) -> int:
    return sum(1 for path in files for _, p in iter_records(path) if parse_example(p))


Step = tuple[str, Callable[[], int], Callable[[], object]]
"""A step of the benchmark: its name, what is timed (returns the records it read) and what is
done after it, untimed."""


def reader(name: str, read: Callable[[list[Path]], int], files: list[Path]) -> Step:
    return name, lambda: read(files), lambda: None


def importer(name: str, pattern: str, out: Path, level: Level, workers: int | None) -> Step:
    """A step that imports ``pattern`` into ``out``, removed after the timing."""
    return (
        name,
        lambda: import_yt8m(pattern, out, level, workers=workers).rows,
        lambda: shutil.rmtree(out),
    )


def measure(steps: list[Step], repeat: int) -> list[tuple[str, int, list[float]]]:
    """Run every step ``repeat`` times, interleaved; ``(name, records, seconds of each run)``."""
    counts = {name: 0 for name, _, _ in steps}
    seconds: dict[str, list[float]] = {name: [] for name, _, _ in steps}
    for _ in range(repeat):
        for name, run, after in steps:
            start = time.perf_counter()
            counts[name] = run()
            seconds[name].append(time.perf_counter() - start)
            after()
    return [(name, counts[name], seconds[name]) for name, _, _ in steps]


def table(title: str, rows: list[tuple[str, int, list[float]]], n_bytes: int, peers: int) -> str:
    """Markdown table; ratios are of best times, against each of the first ``peers`` rows."""
    bests = [min(seconds) for _, _, seconds in rows]
    ratio_heads = "".join(f" vs {rows[i][0].split(':')[0]} |" for i in range(peers))
    lines = [
        f"### {title}",
        "",
        f"| step | records | best s | median s | MB/s (best) |{ratio_heads}",
        "|---|---:|---:|---:|---:|" + "---:|" * peers,
    ]
    for (name, count, seconds), best in zip(rows, bests, strict=True):
        ratios = "".join(f" {bests[i] / best:.1f}x |" for i in range(peers))
        lines.append(
            f"| {name} | {count} | {best:.2f} | {statistics.median(seconds):.2f} | "
            f"{n_bytes / best / 1e6:,.0f} |{ratios}"
        )
    return "\n".join(lines)


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", help="frame-level files to time (a glob); default: generate")
    parser.add_argument("--n-files", type=int, default=8, help="frame-level files to generate")
    parser.add_argument("--videos", type=int, default=250, help="videos per generated file")
    parser.add_argument("--min-frames", type=int, default=200)
    parser.add_argument("--max-frames", type=int, default=300)
    parser.add_argument("--workers", type=int, default=None, help="default: one per CPU")
    parser.add_argument("--repeat", type=int, default=3, help="runs of every step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", type=Path, default=REAL, help="real video-level files folder")
    args = parser.parse_args()

    print(
        f"# webly import benchmark — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; at the start: {load()}\n"
    )
    tmp = Path(tempfile.mkdtemp(prefix="webly-bench-"))
    outs = {"disk": tmp}
    if SHM.is_dir():
        outs["/dev/shm"] = Path(tempfile.mkdtemp(prefix="webly-bench-", dir=SHM))
    try:
        if args.files:
            pattern = os.path.expanduser(args.files)
            title = f"Frame level: {args.files}"
        else:
            (tmp / "in").mkdir()
            frames = (args.min_frames, args.max_frames)
            generate(tmp / "in", args.n_files, args.videos, frames, args.seed)
            pattern = str(tmp / "in" / "*.tfrecord")
            title = (
                f"Frame level: {args.n_files} generated files x {args.videos} videos x "
                f"{args.min_frames}-{args.max_frames} frames"
            )
        files = sorted(Path(p) for p in glob.glob(pattern))
        n_bytes = sum(p.stat().st_size for p in files)
        default = args.workers or min(os.cpu_count() or 1, len(files))
        webly_frames(files)  # read once: every step starts page-cached
        steps = [
            reader("peer: tfrecord sequence_loader + np.frombuffer", peer_frames, files),
            reader("lean peer: tfrecord_iterator + SequenceExample + join", lean_frames, files),
            reader("webly iter_records + parse_sequence_example", webly_frames, files),
        ]
        for workers in dict.fromkeys((1, default)):
            for where, folder in outs.items():
                name = f"webly import_yt8m, workers={workers}, into {where}"
                steps.append(importer(name, pattern, folder / "ds", "frame", workers))
        rows = measure(steps, args.repeat)
        print(table(f"{title}, {len(files)} files, {n_bytes / 1e6:,.0f} MB", rows, n_bytes, 2))
        print(f"\n{args.repeat} runs of each step; at the end: {load()}")
        if args.real.is_dir():
            real = sorted(args.real.glob("*.tfrecord"))
            real_bytes = sum(p.stat().st_size for p in real)
            real_pattern = str(args.real / "*.tfrecord")
            default = args.workers or min(os.cpu_count() or 1, len(real))
            steps = [
                reader("peer: tfrecord example_loader", peer_video, real),
                reader("webly iter_records + parse_example", webly_video, real),
            ]
            for workers in dict.fromkeys((1, default)):
                name = f"webly import_yt8m, workers={workers}, into disk"
                steps.append(importer(name, real_pattern, tmp / "real", "video", workers))
            print()
            print(
                table(
                    f"Video level, real: {len(real)} files, {real_bytes / 1e6:,.0f} MB",
                    measure(steps, args.repeat),
                    real_bytes,
                    1,
                )
            )
    finally:
        for folder in outs.values():
            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
