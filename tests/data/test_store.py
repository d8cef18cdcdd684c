from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import random_batch
from webly._fs import atomic_output
from webly.data import (
    Batch,
    Dataset,
    DatasetWriter,
    FeatureSpec,
    Layout,
    dequantize_uint8,
    quantize_uint8,
    store,
)
from webly.data.store import RaggedFrames
from webly.errors import ConfigError, DataError, WeblyWarning

FULL = Layout(
    features=(
        FeatureSpec("rgb", 16, "uint8"),
        FeatureSpec("audio", 4, "float16"),
        FeatureSpec("frgb", 16, "uint8", level="frame"),
        FeatureSpec("faudio", 4, "uint8", level="frame"),
    ),
    n_classes=30,
    class_names=tuple(f"class{i}" for i in range(30)),
    has_group=True,
    has_text=True,
    has_clean_labels=True,
)


def write(path: Path, layout: Layout, batches: list[Batch], **kwargs: object) -> Dataset:
    with DatasetWriter(path, layout, **kwargs) as writer:  # type: ignore[arg-type]
        for batch in batches:
            writer.write_batch(batch)
    return Dataset.open(path)


def test_quantisation_matches_youtube8m_formula() -> None:
    codes = np.arange(256, dtype=np.uint8)
    expected = codes.astype(np.float64) * 4 / 255 + 4 / 512 - 2
    np.testing.assert_allclose(dequantize_uint8(codes), expected, atol=1e-6)
    x = np.array([-5.0, -2.0, 0.0, 1.0, 2.0, 9.0], dtype=np.float32)
    np.testing.assert_array_equal(quantize_uint8(x), [0, 0, 128, 191, 255, 255])


def test_round_trip_every_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    batches = [random_batch(rng, FULL, 40, prefix=f"b{i}_") for i in range(3)]
    ds = write(tmp_path / "ds", FULL, batches)
    assert len(ds) == 120
    assert ds.ids[40] == "b1_0"
    assert ds.class_names[3] == "class3"
    assert list(ds.groups[:4]) == ["g0", "g0", "g0", "g1"]
    assert ds.texts[41] == "text of b1_1"
    labels = ds.labels
    assert labels.shape == (120, 30)
    row = batches[2].labels[5]
    assert sorted(labels[85].indices) == sorted(row)
    assert (ds.clean_labels != labels).nnz == 0

    rows = np.array([85, 3, 119, 40])
    x = ds.features(rows, groups=("rgb", "audio"))
    assert x.shape == (4, 20) and x.dtype == np.float32
    source = [(r // 40, r % 40) for r in rows]
    rgb = np.stack([batches[b].features["rgb"][i] for b, i in source])
    audio = np.stack([batches[b].features["audio"][i] for b, i in source])
    np.testing.assert_array_equal(x[:, :16], dequantize_uint8(quantize_uint8(rgb)))
    np.testing.assert_array_equal(x[:, 16:], audio.astype(np.float16).astype(np.float32))

    frames, lengths = ds.frames(rows, groups=("frgb", "faudio"))
    assert frames.shape == (4, int(lengths.max()), 20)
    for out, (b, i), n in zip(frames, source, lengths, strict=True):
        assert n == len(batches[b].frames["frgb"][i])
        np.testing.assert_array_equal(out[:n, :16], dequantize_uint8(batches[b].frames["frgb"][i]))
        np.testing.assert_array_equal(
            out[:n, 16:], dequantize_uint8(batches[b].frames["faudio"][i])
        )
        assert not out[n:].any()
    # without groups: every group of the level, in layout order
    np.testing.assert_array_equal(ds.features(rows), x)
    np.testing.assert_array_equal(ds.frames(rows)[0], frames)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["n_rows"] == 120 and manifest["format_version"] == 1
    assert {s["file"] for s in manifest["shards"]} == {"shard-00000.arrow"}


def test_many_shards_and_chunks_gather_like_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    layout = Layout((FeatureSpec("rgb", 8, "float32"),), n_classes=5)
    batches = [random_batch(rng, layout, 30, prefix=f"b{i}_") for i in range(10)]
    with DatasetWriter(tmp_path / "ds", layout, shard_bytes=2_000) as writer:
        for batch in batches:
            writer.write_batch(batch)
    ds = Dataset.open(tmp_path / "ds")
    assert len(ds.manifest["shards"]) > 1
    expected = np.concatenate([b.features["rgb"] for b in batches])
    rows = rng.permutation(300)[:128]
    np.testing.assert_array_equal(ds.features(rows, groups=("rgb",)), expected[rows])
    np.testing.assert_array_equal(ds.features([-1], groups=("rgb",)), expected[-1:])


def test_subset_is_a_view_in_subset_coordinates(small_store: Dataset) -> None:
    rows = np.array([10, 5, 150])
    sub = small_store.subset(rows)
    assert len(sub) == 3
    assert list(sub.ids) == list(small_store.ids[rows])
    np.testing.assert_array_equal(sub.features([2, 0]), small_store.features([150, 10]))
    assert (sub.labels != small_store.labels[rows]).nnz == 0
    nested = sub.subset([2])
    assert nested.ids[0] == small_store.ids[150]
    with pytest.raises(DataError, match="out of range for a dataset of 3 rows"):
        sub.features([3])


def test_pickles_as_its_folder_and_rows(small_store: Dataset) -> None:
    """What a Ray worker gets: a few hundred bytes that open the same files again."""
    sub = small_store.subset(np.array([10, 5, 150]))
    blob = pickle.dumps(sub)
    assert len(blob) < 1000  # the folder and 3 row numbers, not the data
    back = pickle.loads(blob)
    assert back.path == small_store.path and len(back) == 3
    np.testing.assert_array_equal(back.features([0, 1, 2]), sub.features([0, 1, 2]))
    assert len(pickle.loads(pickle.dumps(small_store))) == len(small_store)


def test_frame_sampling(tmp_path: Path) -> None:
    layout = Layout((FeatureSpec("f", 1, "float32", level="frame"),), n_classes=2)
    frames = [np.arange(10, dtype=np.float32)[:, None], np.arange(3, dtype=np.float32)[:, None]]
    ds = write(tmp_path / "ds", layout, [Batch(["a", "b"], [[0], [1]], frames={"f": frames})])
    x, n = ds.frames([0, 1], groups=("f",), max_frames=4, sampling="first")
    assert list(n) == [4, 3] and list(x[0, :, 0]) == [0, 1, 2, 3]
    x, _ = ds.frames([0], groups=("f",), max_frames=4, sampling="uniform")
    assert list(x[0, :, 0]) == [0, 3, 6, 9]
    picks = [
        ds.frames([0], groups=("f",), max_frames=4, sampling="random", rng=np.random.default_rng(s))
        for s in (0, 0, 1)
    ]
    assert np.array_equal(picks[0][0], picks[1][0]) and not np.array_equal(picks[0][0], picks[2][0])
    assert np.all(np.diff(picks[0][0][0, :, 0]) > 0)  # time order kept
    with pytest.raises(DataError, match="needs rng"):
        ds.frames([0], groups=("f",), max_frames=2, sampling="random")
    rng = np.random.default_rng(0)
    x, n = ds.frames([0, 1], groups=("f",), max_frames=5, sampling="replace", rng=rng)
    assert list(n) == [5, 3]  # at most max_frames, and never more than the row has
    assert np.all(np.diff(x[0, :5, 0]) >= 0) and np.all(np.diff(x[1, :3, 0]) >= 0)  # in order
    assert set(x[1, :3, 0]) <= {0, 1, 2} and set(x[0, :, 0]) <= set(range(10))
    draws = [ds.frames([1], ("f",), 5, "replace", np.random.default_rng(s))[0] for s in range(9)]
    assert any(len(set(d[0, :, 0])) < 3 for d in draws)  # with replacement: repeats happen
    with pytest.raises(DataError, match=r"frame-level group; use Dataset\.frames"):
        ds.features([0], groups=("f",))
    with pytest.raises(DataError, match=r"no video-level feature groups \(it has: f \(frame\)\)"):
        ds.features([0])
    assert list(ds.n_frames()) == [10, 3]


def test_duplicate_ids_warn_but_keep_rows(tmp_path: Path, video_layout: Layout) -> None:
    batch = random_batch(np.random.default_rng(0), video_layout, 4)
    batch.ids = ["a", "b", "a", "c"]
    with pytest.warns(WeblyWarning, match="1 ids occur more than once \\(first: 'a'\\)"):
        ds = write(tmp_path / "ds", video_layout, [batch])
    assert len(ds) == 4


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda b: b.labels.__setitem__(2, [20]),
            "row 'v2': labels use class 20 but the dataset declares 20 classes \\(0..19\\); "
            "check --num-classes",
        ),
        (
            lambda b: b.features.__setitem__("rgb", b.features["rgb"][:, :10]),
            "row 'v0': feature 'rgb' has dimension 10 but the layout declares 16",
        ),
        (
            lambda b: b.features["audio"].__setitem__((3, 1), np.nan),
            "row 'v3': feature 'audio' holds NaN or inf",
        ),
        (lambda b: b.features.pop("audio"), "feature group 'audio' \\(video level\\) is missing"),
        (lambda b: b.labels.__setitem__(1, [-1]), "row 'v1': labels use class -1"),
    ],
)
def test_bad_rows_are_refused_and_nothing_is_written(
    tmp_path: Path, video_layout: Layout, mutate: object, message: str
) -> None:
    batch = random_batch(np.random.default_rng(0), video_layout, 5)
    mutate(batch)  # type: ignore[operator]
    with pytest.raises(DataError, match=f"^input: {message}"):
        write(tmp_path / "ds", video_layout, [batch])
    assert list(tmp_path.iterdir()) == []


def test_multiclass_rows_hold_one_label(tmp_path: Path, video_layout: Layout) -> None:
    layout = Layout(video_layout.features, n_classes=20, task="multiclass")
    batch = random_batch(np.random.default_rng(0), layout, 3)
    batch.labels[1] = [1, 2]
    with pytest.raises(DataError, match="row 'v1': labels has 2 labels but the task is multiclass"):
        write(tmp_path / "ds", layout, [batch])


def test_nan_in_frames_names_the_row(tmp_path: Path) -> None:
    layout = Layout((FeatureSpec("f", 2, "float32", level="frame"),), n_classes=2)
    frames = [np.zeros((3, 2)), np.zeros((2, 2)), np.array([[0.0, np.inf]])]
    with pytest.raises(DataError, match="row 'c': frames of 'f' hold NaN or inf"):
        write(tmp_path / "ds", layout, [Batch(["a", "b", "c"], [[0]] * 3, frames={"f": frames})])


def test_empty_dataset_is_an_error(tmp_path: Path, video_layout: Layout) -> None:
    with pytest.raises(DataError, match="holds no rows; nothing was written"):
        write(tmp_path / "ds", video_layout, [])
    assert not (tmp_path / "ds").exists()


def test_existing_output_needs_overwrite(small_store: Dataset, video_layout: Layout) -> None:
    batch = random_batch(np.random.default_rng(5), video_layout, 7)
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        write(small_store.path, video_layout, [batch])
    assert len(Dataset.open(small_store.path)) == 200
    assert len(write(small_store.path, video_layout, [batch], overwrite=True)) == 7
    assert [p.name for p in small_store.path.parent.iterdir()] == ["store"]


def test_open_errors(tmp_path: Path, small_store: Dataset) -> None:
    with pytest.raises(DataError, match="does not exist"):
        Dataset.open(tmp_path / "nope")
    with pytest.raises(DataError, match="not a webly dataset folder"):
        Dataset.open(tmp_path)
    shard = small_store.path / "shard-00000.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert len(Dataset.open(small_store.path)) == 200  # size unchanged: only verify notices
    with pytest.raises(DataError, match="checksum mismatch; the dataset is damaged"):
        Dataset.open(small_store.path, verify=True)
    shard.write_bytes(bytes(data[:-10]))
    with pytest.raises(DataError, match=r"expected \d+ bytes, found \d+; the dataset is damaged"):
        Dataset.open(small_store.path)


def test_bad_layouts() -> None:
    with pytest.raises(DataError, match="'labels' is reserved"):
        FeatureSpec("labels", 3)
    with pytest.raises(DataError, match="dtype 'int8'; use one of"):
        FeatureSpec("x", 3, "int8")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="2 class names given for 3 classes"):
        Layout((), n_classes=3, class_names=("a", "b"))
    with pytest.raises(DataError, match="not in this dataset \\(it has: rgb\\)"):
        Layout((FeatureSpec("rgb", 2),), n_classes=3).feature("audio")


KILLED_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from webly.data import Batch, DatasetWriter, FeatureSpec, Layout
    layout = Layout((FeatureSpec("rgb", 1024, "uint8"),), n_classes=10)
    rng = np.random.default_rng(0)
    writer = DatasetWriter(sys.argv[1], layout)
    codes = rng.integers(0, 256, size=(4096, 1024), dtype=np.uint8)
    for i in range(100000):
        writer.write_batch(Batch([f"{i}_{j}" for j in range(4096)], [[1]] * 4096, {"rgb": codes}))
        if i == 2:
            print("writing", flush=True)
    """
)


def test_killed_import_leaves_nothing_that_opens(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    with pytest.raises(DataError, match="does not exist"):
        Dataset.open(out)
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".ds.tmp-")


MEMORY_PROBE = textwrap.dedent(
    """
    import json, os, sys, numpy as np
    from webly.data import Batch, Dataset, DatasetWriter, FeatureSpec, Layout

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    path, n_rows = sys.argv[1], int(sys.argv[2])
    layout = Layout((FeatureSpec("rgb", 1024, "uint8"), FeatureSpec("audio", 128, "uint8")), 100)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(8192, 1024), dtype=np.uint8)
    audio = rng.integers(0, 256, size=(8192, 128), dtype=np.uint8)
    with DatasetWriter(path, layout) as writer:
        for start in range(0, n_rows, 8192):
            ids = [str(i) for i in range(start, start + 8192)]
            labels = [[i % 100] for i in range(8192)]
            writer.write_batch(Batch(ids, labels, {"rgb": rgb, "audio": audio}))
    del rgb, audio, writer
    for shard in os.listdir(path):  # start cold: drop the store from the page cache
        fd = os.open(os.path.join(path, shard), os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    ds = Dataset.open(path)
    ds.features(np.arange(1024))  # warm the allocator and the chunk views
    file0 = status("RssFile:")
    ds.features(rng.choice(len(ds), 1024, replace=False))
    one_batch_file = status("RssFile:") - file0
    anon0 = status("RssAnon:")
    peak = 0
    for rows in np.array_split(rng.permutation(len(ds)), len(ds) // 1024):
        x = ds.features(rows)
        peak = max(peak, status("RssAnon:") - anon0)
    print(json.dumps({"peak_anon": peak, "one_batch_file": one_batch_file}))
    """
)


def _probe(path: Path, n_rows: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path), str(n_rows)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_memory_stays_flat_as_the_store_grows(tmp_path: Path) -> None:
    """An epoch of random 1,024-row batches over a 450 MB store: the process's own (anonymous)
    memory stays within the 64 MB this test allows, as it does over a store 8x smaller, and a
    random batch maps only the pages of its rows, not the store."""
    budget = 64 << 20
    small = _probe(tmp_path / "small", 49_152)
    large = _probe(tmp_path / "large", 393_216)
    store_bytes = sum(f.stat().st_size for f in (tmp_path / "large").iterdir())
    assert store_bytes > 6 * budget
    assert large["peak_anon"] < budget
    assert large["peak_anon"] < small["peak_anon"] + (16 << 20)
    assert large["one_batch_file"] < store_bytes // 10


def test_an_empty_output_folder_may_be_used(tmp_path: Path, video_layout: Layout) -> None:
    (tmp_path / "ds").mkdir()
    batch = random_batch(np.random.default_rng(0), video_layout, 3)
    assert len(write(tmp_path / "ds", video_layout, [batch])) == 3


def test_atomic_output_of_several_datasets(tmp_path: Path, video_layout: Layout) -> None:
    batch = random_batch(np.random.default_rng(0), video_layout, 3)
    with atomic_output(tmp_path / "bundle") as tmp:
        write(tmp / "train", video_layout, [batch])
        assert not (tmp_path / "bundle").exists()
    assert len(Dataset.open(tmp_path / "bundle" / "train")) == 3
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        atomic_output(tmp_path / "bundle").__enter__()
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "bundle", overwrite=True) as tmp:
        write(tmp / "test", video_layout, [batch])
        raise RuntimeError("killed half-way")
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    assert [p.name for p in (tmp_path / "bundle").iterdir()] == ["train"]


def test_relabel_by_record_batches(tmp_path: Path, small_store: Dataset) -> None:
    """Copy a store chunk by chunk with new labels, features untouched (as add-noise does)."""
    layout = Layout(
        small_store.layout.features,
        n_classes=20,
        class_descriptions=tuple(f"about class {i}" for i in range(20)),
        has_clean_labels=True,
    )
    with DatasetWriter(tmp_path / "relabelled", layout) as writer:
        for _, chunk in small_store.iter_chunks():
            columns = {
                n: chunk.column(n if n != "clean_labels" else "labels")
                for n in layout.schema().names
            }
            record = pa.RecordBatch.from_pydict(columns, schema=layout.schema())
            writer.write_record_batch(record)
        with pytest.raises(DataError, match="schema does not match the layout"):
            writer.write_record_batch(chunk)
    ds = Dataset.open(tmp_path / "relabelled")
    assert ds.layout.class_descriptions is not None
    assert ds.layout.class_descriptions[3] == "about class 3"
    np.testing.assert_array_equal(ds.features(np.arange(200)), small_store.features(np.arange(200)))
    assert (ds.clean_labels != small_store.labels).nnz == 0


def test_frames_without_decoding_return_the_stored_codes(tmp_path: Path) -> None:
    layout = Layout(
        (FeatureSpec("q", 3, "uint8", level="frame"), FeatureSpec("f", 2, level="frame")),
        n_classes=4,
    )
    ds = write(tmp_path / "ds", layout, [random_batch(np.random.default_rng(0), layout, 6)])
    codes, lengths = ds.frames([4, 1], groups=("q",), decode=False)
    decoded, same = ds.frames([4, 1], groups=("q",))
    assert codes.dtype == np.uint8 and np.array_equal(lengths, same)
    np.testing.assert_array_equal(layout.feature("q").decode(codes[0, : lengths[0]]),
                                  decoded[0, : lengths[0]])  # fmt: skip
    with pytest.raises(DataError, match="decode=False needs one stored dtype"):
        ds.frames([0], groups=("q", "f"), decode=False)


def _dead_pid() -> int:
    """The id of a process that has exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    return int(proc.stdout)


@pytest.mark.slow
def test_a_rerun_removes_what_a_killed_import_left(tmp_path: Path, video_layout: Layout) -> None:
    out = tmp_path / "ds"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p.name.startswith(".ds.tmp-") for p in tmp_path.iterdir()] == [True]
    batch = random_batch(np.random.default_rng(0), video_layout, 5)
    assert len(write(out, video_layout, [batch])) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_stale_temporaries_go_and_live_ones_stay(tmp_path: Path) -> None:
    from webly._fs import HOST, LEGACY_AGE

    dead, live = _dead_pid(), os.getpid()
    stale = [
        f".bundle.tmp-{HOST}-{dead}-0123456789ab",  # a killed run's build folder
        f".bundle.old-{HOST}-{dead}-0123456789ab",  # ... the old output it was deleting
        f"..bundle.tmp-{HOST}-{dead}-0123456789ab.tmp-{HOST}-{dead}-ba9876543210",  # nested
        ".bundle.tmp-0123456789ab",  # an older webly's, a day old
        ".bundle.abcd_123.tmp",  # an older webly's temporary file, a day old
    ]
    kept = [
        f".bundle.tmp-{HOST}-{live}-0123456789ab",  # a live process is writing it
        f".bundle.tmp-otherhost-{dead}-0123456789ab",  # another machine's: cannot tell
        ".bundle.tmp-ba9876543210",  # an older webly's, just written
        ".notes.txt",  # the user's
    ]
    for name in stale + kept:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "shard-00000.arrow").write_bytes(b"x")
    for name in stale[3:]:
        past = time.time() - LEGACY_AGE - 60
        os.utime(tmp_path / name, (past, past))
    with atomic_output(tmp_path / "bundle") as tmp:
        (tmp / "a").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "bundle"])
    assert (tmp_path / "bundle" / "a").read_text() == "a"


def test_overwrite_replaces_only_a_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, video_layout: Layout
) -> None:
    batch = random_batch(np.random.default_rng(0), video_layout, 5)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"mine is not a webly dataset \(no manifest.json"):
        write(mine, video_layout, [batch], overwrite=True)
    (tmp_path / "in.csv").write_text("x")
    with pytest.raises(ConfigError, match="holds the input"):
        write(tmp_path, video_layout, [batch], overwrite=True, inputs=[tmp_path / "in.csv"])
    with pytest.raises(ConfigError, match="is inside the input"):
        write(mine / "ds", video_layout, [batch], overwrite=True, inputs=[mine])
    monkeypatch.chdir(mine)
    for where in (Path("."), mine, tmp_path):
        with pytest.raises(ConfigError, match="is the current folder or a folder above it"):
            write(where, video_layout, [batch], overwrite=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    with pytest.raises(ConfigError, match="is the home folder or a folder above it"):
        write(tmp_path / "home", video_layout, [batch], overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "in.csv", "mine"]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    write(tmp_path / "ds", video_layout, [batch])
    other = random_batch(np.random.default_rng(1), video_layout, 7)
    assert len(write(tmp_path / "ds", video_layout, [other], overwrite=True)) == 7


@pytest.mark.parametrize(("dtype", "big"), [("float32", 1e308), ("float16", 1e5)])
def test_values_beyond_the_stored_dtype_are_refused(tmp_path: Path, dtype: str, big: float) -> None:
    layout = Layout(features=(FeatureSpec("x", 3, dtype),), n_classes=5)  # type: ignore[arg-type]
    batch = random_batch(np.random.default_rng(0), layout, 4)
    batch.features["x"] = batch.features["x"].astype(np.float64)
    batch.features["x"][2, 1] = big
    match = rf"row 'v2': feature 'x' holds values beyond {dtype}'s range"
    with pytest.raises(DataError, match=match), DatasetWriter(tmp_path / "ds", layout) as writer:
        writer.write_batch(batch)
    assert not (tmp_path / "ds").exists()


# ---------------------------------------------------------------- frames in one buffer, syncing


def ragged(rows: list[np.ndarray]) -> RaggedFrames:
    """Per-row ``(T_i, dim)`` frames as one buffer and ``(B + 1,)`` offsets."""
    return RaggedFrames(np.concatenate(rows), np.cumsum([0] + [len(r) for r in rows]))


def test_ragged_frames_make_the_same_shards_as_lists(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    batches = [random_batch(rng, FULL, 30, prefix=f"b{i}_") for i in range(3)]
    write(tmp_path / "lists", FULL, batches)
    for batch in batches:
        batch.frames = {name: ragged(list(rows)) for name, rows in batch.frames.items()}
    write(tmp_path / "ragged", FULL, batches)
    shards = sorted(p.name for p in (tmp_path / "lists").glob("shard-*.arrow"))
    assert shards == sorted(p.name for p in (tmp_path / "ragged").glob("shard-*.arrow"))
    for name in shards:
        assert (tmp_path / "lists" / name).read_bytes() == (tmp_path / "ragged" / name).read_bytes()


FLOAT_FRAMES = Layout((FeatureSpec("f", 2, "float32", level="frame"),), n_classes=2)


@pytest.mark.parametrize(
    ("values", "offsets", "message"),
    [
        (np.zeros((5, 3)), [0, 2, 5], r"frames of 'f' have shape \(5, 3\) but the layout declares"),
        (np.zeros((5, 2)), [0, 5], r"frame offsets of 'f' do not rise from 0 to 5 in 3 steps"),
        (np.zeros((5, 2)), [1, 2, 5], r"frame offsets of 'f' do not rise"),
        (np.zeros((5, 2)), [0, 2, 4], r"frame offsets of 'f' do not rise"),
        (np.zeros((5, 2)), [0, 6, 5], r"frame offsets of 'f' do not rise"),
        (np.array([[0, 0], [0, 0], [0, np.nan]]), [0, 2, 3], r"row 'b': frames of 'f' hold NaN"),
    ],
)
def test_ragged_frames_are_checked(
    tmp_path: Path, values: np.ndarray, offsets: list[int], message: str
) -> None:
    batch = Batch(["a", "b"], [[0], [1]], frames={"f": RaggedFrames(values, np.array(offsets))})
    with pytest.raises(DataError, match=f"^input: {message}"):
        write(tmp_path / "ds", FLOAT_FRAMES, [batch])
    assert list(tmp_path.iterdir()) == []


def test_every_shard_is_synced_before_the_manifest_names_it(
    tmp_path: Path, video_layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards are fsynced in the background while the next ones are written, each before the
    manifest is written; a failed fsync fails the commit and leaves nothing."""
    synced: list[tuple[str, bool]] = []  # (name, whether the manifest was there)

    def record(path: Path) -> None:
        synced.append((path.name, (path.parent / "manifest.json").exists()))

    monkeypatch.setattr(store, "fsync_path", record)
    rng = np.random.default_rng(4)
    batches = [random_batch(rng, video_layout, 30, prefix=f"b{i}_") for i in range(5)]
    ds = write(tmp_path / "ds", video_layout, batches, shard_bytes=2_000)
    shards = [shard["file"] for shard in ds.manifest["shards"]]
    assert len(shards) > 1
    assert sorted(name for name, _ in synced if name.startswith("shard-")) == shards
    assert not any(manifest for name, manifest in synced if name.startswith("shard-"))

    def fail(path: Path) -> None:
        raise OSError(5, "Input/output error", str(path))

    monkeypatch.setattr(store, "fsync_path", fail)
    with pytest.raises(OSError, match="Input/output error"):
        write(tmp_path / "failed", video_layout, batches, shard_bytes=2_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


WITHOUT_PANDAS = textwrap.dedent(
    """
    import sys, numpy as np
    from webly.data import Batch, DatasetWriter, FeatureSpec, Layout
    layout = Layout(
        (FeatureSpec("v", 4), FeatureSpec("f", 3, "uint8", level="frame")), n_classes=5,
        has_group=True, has_text=True, has_clean_labels=True,
    )
    frames = [np.zeros((2, 3), np.uint8), np.ones((1, 3), np.uint8)]
    with DatasetWriter(sys.argv[1], layout) as writer:
        writer.write_batch(Batch(
            ["a", "b"], [[1], [2, 3]], {"v": np.zeros((2, 4), np.float32)}, {"f": frames},
            groups=["g", "g"], texts=["x", "y"], clean_labels=[[1], [2]],
        ))
    print("pandas" in sys.modules)
    """
)


def test_writing_a_store_does_not_import_pandas(tmp_path: Path) -> None:
    """``pa.array`` imports pandas on its first call in a process (a second or more, in every
    worker of an import); the writer builds its Arrow arrays without it."""
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_PANDAS, str(tmp_path / "ds")],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "False"
    assert Dataset.open(tmp_path / "ds").texts.tolist() == ["x", "y"]
