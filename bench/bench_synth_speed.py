"""Time the generation of a YouTube-8M-like frame-level benchmark (issue 3: goal 100k videos x
3,862 classes x up to 300 frames in under 3 minutes on 2 cores, memory flat in the videos).

Reports videos/s, MB/s written and the peak RSS of this process and of the worker processes.

Usage: ``.venv/bin/python bench/bench_synth_speed.py [--videos 100000] [--out DIR] [--keep]``
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from webly.data.synth import YT8MLikeConfig, synth_yt8m_like


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000, help="train videos")
    parser.add_argument("--classes", type=int, default=3862)
    parser.add_argument("--max-frames", type=int, default=300)
    parser.add_argument("--workers", type=int, default=None, help="default: one per CPU")
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the output")
    args = parser.parse_args()
    config = YT8MLikeConfig(
        videos=args.videos,
        test_videos=0,
        unlabeled_videos=0,
        classes=args.classes,
        max_frames=args.max_frames,
    )
    base = args.out or Path(tempfile.mkdtemp(prefix="webly-synth-"))
    out = base / "yt8m-like"
    begin = time.perf_counter()
    summary = synth_yt8m_like(out, config, overwrite=True, workers=args.workers)
    seconds = time.perf_counter() - begin
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(summary)
    print()
    print(
        "| videos | classes | frames | GB written | seconds | videos/s | MB/s "
        "| peak RSS main / worker (MB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.videos:,} | {args.classes:,} | {summary.frames:,} | {summary.bytes / 1e9:.2f} | "
        f"{seconds:.1f} | {args.videos / seconds:,.0f} | {summary.bytes / 1e6 / seconds:,.0f} | "
        f"{own:,.0f} / {children:,.0f} |"
    )
    if not args.keep:
        shutil.rmtree(out if args.out else base)


if __name__ == "__main__":
    main()
