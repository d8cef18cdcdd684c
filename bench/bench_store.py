"""Random-batch gather throughput of the data store against pyarrow's own ``Table.take``.

Writes a video-level store (uint8 mean_rgb 1024 + mean_audio 128, YouTube-8M layout), then times
an epoch of random 1,024-row batches returned as dequantised float32 ``(1024, 1152)``: webly's
``Dataset.features`` versus ``pyarrow.Table.take`` on the same memory-mapped shard followed by the
same dequantisation. Run:

    .venv/bin/python bench/bench_store.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from webly.data import Batch, Dataset, DatasetWriter, FeatureSpec, Layout, dequantize_uint8

BATCH = 1024


def write_store(path: Path, n_rows: int) -> Dataset:
    specs = (FeatureSpec("mean_rgb", 1024, "uint8"), FeatureSpec("mean_audio", 128, "uint8"))
    layout = Layout(specs, 3862)
    rng = np.random.default_rng(0)
    block = 8192
    rgb = rng.integers(0, 256, size=(block, 1024), dtype=np.uint8)
    audio = rng.integers(0, 256, size=(block, 128), dtype=np.uint8)
    with DatasetWriter(path, layout) as writer:
        for start in range(0, n_rows, block):
            ids = [str(i) for i in range(start, start + block)]
            labels = [[i % 3862] for i in range(block)]
            writer.write_batch(Batch(ids, labels, {"mean_rgb": rgb, "mean_audio": audio}))
    return Dataset.open(path)


def peer_gather(table: pa.Table, rows: np.ndarray) -> np.ndarray:
    taken = table.take(pa.array(rows))
    parts = []
    for name, dim in (("mean_rgb", 1024), ("mean_audio", 128)):
        column = taken.column(name).combine_chunks()
        parts.append(dequantize_uint8(column.values.to_numpy().reshape(-1, dim)))
    return np.hstack(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ds = write_store(Path(tmp) / "store", args.rows)
        table = pa.concat_tables(
            pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
            for path in sorted((Path(tmp) / "store").glob("*.arrow"))
        )
        batches = np.array_split(np.random.default_rng(1).permutation(len(ds)), len(ds) // BATCH)
        np.testing.assert_array_equal(ds.features(batches[0]), peer_gather(table, batches[0]))
        timings = {}
        for name, gather in (
            ("webly Dataset.features", ds.features),
            ("pyarrow Table.take + dequantise", lambda rows: peer_gather(table, rows)),
        ):
            begin = time.perf_counter()
            for rows in batches:
                gather(rows)
            timings[name] = time.perf_counter() - begin
        mb = len(ds) * 1152 / 1e6
        peer = timings["pyarrow Table.take + dequantise"]
        print(f"{len(ds):,} rows, random batches of {BATCH}, output float32 (B, 1152)\n")
        print("| gather | rows/s | MB/s (uint8 read) | ratio vs peer |")
        print("|---|---|---|---|")
        for name, seconds in timings.items():
            print(
                f"| {name} | {len(ds) / seconds:,.0f} | {mb / seconds:,.0f} "
                f"| {peer / seconds:.2f}x |"
            )


if __name__ == "__main__":
    main()
