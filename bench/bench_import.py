"""Benchmark: reading and importing YouTube-8M frame-level TFRecord files, webly vs the
``tfrecord`` PyPI package, measured in one run on the same files.

Generates frame-level files (random uint8 frames, rgb 1024 + audio 128 bytes a frame) with
webly's writer into a temporary folder, then times

1. ``tfrecord.reader.sequence_loader`` (protobuf upb parser) turning every video's frames into
   ``(n_frames, dim)`` uint8 arrays with ``np.frombuffer`` -- the least work to use them;
2. webly's reader + parser on the same files, one process (it also verifies both CRC32Cs of
   every record, which the peer skips);
3. the full ``import_yt8m`` into a webly dataset, with one worker and with the default workers.

With the real 2018 video-level sample present (``../shared/data/yt8m-2018-validate``), it also
times the video-level import of its 30 files. Run: ``python bench/bench_import.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

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


def generate(folder: Path, n_files: int, videos: int, frames: tuple[int, int], seed: int) -> None:
    """Write ``n_files`` frame-level files of ``videos`` SequenceExamples each."""
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
                "id": [f"f{f}v{v}".encode()],
                "labels": rng.integers(0, 3862, 3),
            }
            lists = {name: pool[name][start : start + n_frames] for name in DIMS}
            payloads.append(encode_sequence_example(context, lists))
        write_records(folder / f"train{f:04d}.tfrecord", payloads)


def peer_frames(files: list[Path]) -> int:
    from tfrecord.reader import sequence_loader

    count = 0
    for path in files:
        for _, lists in sequence_loader(str(path), None):
            for name in DIMS:
                np.stack([np.frombuffer(frame, np.uint8) for frame in lists[name]])
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
    from tfrecord.reader import example_loader

    return sum(1 for path in files for _ in example_loader(str(path), None))


def webly_video(files: list[Path]) -> int:
    return sum(1 for path in files for _, p in iter_records(path) if parse_example(p))


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    count = fn()
    return count, time.perf_counter() - start


def table(title: str, rows: list[tuple[str, int, float]], n_bytes: int) -> str:
    """Markdown table; the first row is the peer every ratio refers to."""
    peer_seconds = rows[0][2]
    lines = [
        f"### {title}",
        "",
        "| step | records | seconds | records/s | MB/s | vs peer |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, count, seconds in rows:
        lines.append(
            f"| {name} | {count} | {seconds:.2f} | {count / seconds:,.0f} | "
            f"{n_bytes / seconds / 1e6:,.0f} | {peer_seconds / seconds:.1f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8, help="frame-level files to generate")
    parser.add_argument("--videos", type=int, default=250, help="videos per file")
    parser.add_argument("--min-frames", type=int, default=200)
    parser.add_argument("--max-frames", type=int, default=300)
    parser.add_argument("--workers", type=int, default=None, help="default: one per CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", type=Path, default=REAL, help="real video-level files folder")
    args = parser.parse_args()

    print(
        f"# webly import benchmark — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}\n"
    )
    tmp = Path(tempfile.mkdtemp(prefix="webly-bench-"))
    try:
        data = tmp / "in"
        data.mkdir()
        generate(data, args.files, args.videos, (args.min_frames, args.max_frames), args.seed)
        files = sorted(data.glob("*.tfrecord"))
        n_bytes = sum(p.stat().st_size for p in files)
        pattern = str(data / "*.tfrecord")
        rows = [("tfrecord sequence_loader + np.frombuffer", *timed(lambda: peer_frames(files)))]
        rows.append(
            ("webly iter_records + parse_sequence_example", *timed(lambda: webly_frames(files)))
        )
        for workers in (1, args.workers):
            out = tmp / f"ds-{workers}"
            summary = import_yt8m(pattern, out, "frame", workers=workers)
            label = f"webly import_yt8m (workers={workers or min(os.cpu_count() or 1, len(files))})"
            rows.append((label, summary.rows, summary.seconds))
            shutil.rmtree(out)
        print(
            table(
                f"Frame level: {args.files} files x {args.videos} videos x "
                f"{args.min_frames}-{args.max_frames} frames, {n_bytes / 1e6:,.0f} MB",
                rows,
                n_bytes,
            )
        )
        if args.real.is_dir():
            real = sorted(args.real.glob("*.tfrecord"))
            real_bytes = sum(p.stat().st_size for p in real)
            rows = [("tfrecord example_loader", *timed(lambda: peer_video(real)))]
            rows.append(("webly iter_records + parse_example", *timed(lambda: webly_video(real))))
            for workers in (1, args.workers):
                summary = import_yt8m(
                    str(args.real / "*.tfrecord"),
                    tmp / "real",
                    "video",
                    workers=workers,
                    overwrite=True,
                )
                label = (
                    f"webly import_yt8m (workers={workers or min(os.cpu_count() or 1, len(real))})"
                )
                rows.append((label, summary.rows, summary.seconds))
            print()
            print(
                table(
                    f"Video level, real: {len(real)} files, {real_bytes / 1e6:,.0f} MB",
                    rows,
                    real_bytes,
                )
            )
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
