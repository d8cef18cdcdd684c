"""YouTube-8M import: values, labels, ids, both releases' names, every bad input, parallelism,
and the real 2018 video-level sample when it is present."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from webly.data import tfrecord as tr
from webly.data import yt8m
from webly.data.store import Dataset, ShardWriter, dequantize_uint8
from webly.data.yt8m import FRAME_GROUPS, VIDEO_GROUPS, Names, import_yt8m, yt8m_layout
from webly.errors import DataError, WeblyWarning
from webly.train.zoo import parse_zoo, plan_zoo

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "yt8m-2018-validate"


def video_example(vid: str, labels: list[int], rgb: np.ndarray, audio: np.ndarray) -> bytes:
    return tr.encode_example(
        {
            "id": [vid.encode()],
            "labels": np.array(labels, np.int64),
            "mean_rgb": rgb,
            "mean_audio": audio,
        }
    )


def make_video_files(folder: Path, n_files: int = 3, per_file: int = 5) -> dict[str, Any]:
    """Video-level files ``v{i}.tfrecord``; returns the rows in file order."""
    rng = np.random.default_rng(0)
    rows: dict[str, Any] = {"ids": [], "labels": [], "rgb": [], "audio": []}
    folder.mkdir(exist_ok=True)
    for f in range(n_files):
        payloads = []
        for r in range(per_file):
            vid, labels = f"f{f}r{r}", sorted(rng.choice(3862, r % 4, replace=False).tolist())
            rgb = rng.uniform(-2, 2, 1024).astype(np.float32)
            audio = rng.uniform(-2, 2, 128).astype(np.float32)
            payloads.append(video_example(vid, labels, rgb, audio))
            for key, value in zip(rows, (vid, labels, rgb, audio), strict=True):
                rows[key].append(value)
        tr.write_records(folder / f"v{f}.tfrecord", payloads)
    return rows


def make_frame_files(
    folder: Path, n_files: int = 2, per_file: int = 4, names: str = "2018"
) -> list[tuple[str, list[int], np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    id_key, rgb_key = ("id", "rgb") if names == "2018" else ("video_id", "inc3")
    videos = []
    folder.mkdir(exist_ok=True)
    for f in range(n_files):
        payloads = []
        for r in range(per_file):
            n_frames = int(rng.integers(1, 12))
            video = (
                f"f{f}r{r}",
                [int(rng.integers(0, 3862))],
                rng.integers(0, 256, (n_frames, 1024), dtype=np.uint8),
                rng.integers(0, 256, (n_frames, 128), dtype=np.uint8),
            )
            payloads.append(
                tr.encode_sequence_example(
                    {id_key: [video[0].encode()], "labels": np.array(video[1])},
                    {rgb_key: video[2], "audio": video[3]},
                )
            )
            videos.append(video)
        tr.write_records(folder / f"s{f}.tfrecord", payloads)
    return videos


def arr(value: object) -> np.ndarray:
    """``value``, checked to be a numpy array (numeric lists and byte frames decode to one)."""
    assert isinstance(value, np.ndarray), type(value)
    return value


def dequantize(codes: np.ndarray) -> np.ndarray:
    return codes.astype(np.float64) * 4 / 255 + 4 / 512 - 2


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name != "in")


# ---------------------------------------------------------------- video level


def test_video_level_import_is_exact(tmp_path: Path) -> None:
    rows = make_video_files(tmp_path / "in")
    summary = import_yt8m(str(tmp_path / "in" / "*.tfrecord"), tmp_path / "ds", "video")
    assert (summary.files, summary.rows, summary.corrupt_records) == (3, 15, 0)
    ds = Dataset.open(tmp_path / "ds")
    assert ds.ids.tolist() == rows["ids"]
    assert [sorted(ds.labels[i].indices.tolist()) for i in range(len(ds))] == rows["labels"]
    assert ds.labels.shape == (15, 3862)
    assert [(f.name, f.level) for f in ds.layout.features] == [
        ("mean_rgb", "video"),
        ("mean_audio", "video"),
    ]
    features = ds.features(np.arange(15))
    np.testing.assert_array_equal(features[:, :1024], np.stack(rows["rgb"]))
    np.testing.assert_array_equal(features[:, 1024:], np.stack(rows["audio"]))


def test_video_level_uint8_quantizes(tmp_path: Path) -> None:
    rows = make_video_files(tmp_path / "in", n_files=1)
    import_yt8m(str(tmp_path / "in" / "*"), tmp_path / "ds", "video", video_dtype="uint8")
    ds = Dataset.open(tmp_path / "ds")
    assert {f.name: f.dtype for f in ds.layout.features} == {
        "mean_rgb": "uint8",
        "mean_audio": "uint8",
    }
    got = ds.features(np.arange(5), groups=("mean_rgb",))
    codes = np.rint((np.stack(rows["rgb"]).astype(np.float64) + 2) * 255 / 4)
    np.testing.assert_allclose(got, dequantize(codes), atol=1e-6)


def test_parallel_import_equals_serial(tmp_path: Path) -> None:
    make_video_files(tmp_path / "in", n_files=4)
    pattern = str(tmp_path / "in" / "*.tfrecord")
    import_yt8m(pattern, tmp_path / "one", "video", workers=1)
    import_yt8m(pattern, tmp_path / "two", "video", workers=2)
    one, two = Dataset.open(tmp_path / "one"), Dataset.open(tmp_path / "two")
    assert one.ids.tolist() == two.ids.tolist()
    assert (one.labels != two.labels).nnz == 0
    np.testing.assert_array_equal(one.features(np.arange(20)), two.features(np.arange(20)))
    assert [s["crc32c"] for s in one.manifest["shards"]] == [
        s["crc32c"] for s in two.manifest["shards"]
    ]


# ---------------------------------------------------------------- frame level


@pytest.mark.parametrize("names", ["2018", "2017"])
def test_frame_level_import(tmp_path: Path, names: Names) -> None:
    videos = make_frame_files(tmp_path / "in", names=names)
    import_yt8m(str(tmp_path / "in" / "*"), tmp_path / "ds", "frame", names=names, workers=2)
    ds = Dataset.open(tmp_path / "ds")
    assert {(f.name, f.level, f.dtype) for f in ds.layout.features} == {
        ("rgb", "frame", "uint8"),
        ("audio", "frame", "uint8"),
        ("mean_rgb", "video", "float32"),
        ("mean_audio", "video", "float32"),
    }
    assert ds.ids.tolist() == [v[0] for v in videos]
    assert ds.n_frames().tolist() == [len(v[2]) for v in videos]
    x, lengths = ds.frames(np.arange(len(videos)))
    means = ds.features(np.arange(len(videos)), groups=("mean_rgb", "mean_audio"))
    for i, (_, labels, rgb, audio) in enumerate(videos):
        assert ds.labels[i].indices.tolist() == labels
        expected = dequantize(np.concatenate([rgb, audio], axis=1))
        np.testing.assert_allclose(x[i, : lengths[i]], expected, atol=1e-6)
        np.testing.assert_allclose(means[i], expected.mean(axis=0), atol=1e-5)


# ---------------------------------------------------------------- frame level: the gathered path


def tf_layout_video(vid: str, labels: list[int], rgb: np.ndarray, audio: np.ndarray) -> bytes:
    """A frame-level SequenceExample with the context in the order TensorFlow writes it here
    (``labels`` before ``id``)."""
    context: dict[str, tr.FeatureInput] = {
        "labels": np.array(labels, np.int64),
        "id": [vid.encode()],
    }
    return tr.encode_sequence_example(context, {"rgb": rgb, "audio": audio})


# frame counts around the uint16 sum blocks (257) and the buffers' slack
FRAME_COUNTS = [1, 2, 1, 40, 257, 258, 600, 5, 1, 3, 300, 7, 1]


def make_varied_frame_files(
    folder: Path, n_files: int = 1
) -> tuple[list[int], list[tuple[int, ...]], list[Any]]:
    """`FRAME_COUNTS` frame-level videos (0-4 labels each) in ``n_files`` files ``a0.tfrecord``,
    ``a1.tfrecord`` ...; returns the byte offsets of the records of ``a0``, and each video's
    labels and (labels, rgb, audio). Videos of more than 257 frames hold codes of 254 and 255,
    whose sums over 258 frames overflow uint16."""
    rng = np.random.default_rng(7)
    videos, payloads = [], []
    for i, n_frames in enumerate(FRAME_COUNTS):
        labels = sorted(rng.choice(3862, i % 5, replace=False).tolist())
        low = 254 if n_frames > 257 else 0
        rgb = rng.integers(low, 256, (n_frames, 1024), dtype=np.uint8)
        audio = rng.integers(low, 256, (n_frames, 128), dtype=np.uint8)
        videos.append((labels, rgb, audio))
        payloads.append(tf_layout_video(f"v{i}", labels, rgb, audio))
    folder.mkdir(exist_ok=True)
    parts = np.array_split(np.arange(len(payloads)), n_files)
    for f, part in enumerate(parts):
        tr.write_records(folder / f"a{f}.tfrecord", [payloads[i] for i in part])
    offsets = np.cumsum([0] + [16 + len(payloads[i]) for i in parts[0]]).tolist()
    return offsets, [tuple(v[0]) for v in videos], videos


def stored_codes(ds: Dataset, group: str) -> tuple[np.ndarray, list[int]]:
    """Every row's stored uint8 frames of ``group``, concatenated, and the record batch sizes."""
    chunks = [chunk for _, chunk in ds.iter_chunks()]
    values = [chunk.column(group).values.values.to_numpy() for chunk in chunks]
    return np.concatenate(values), [chunk.num_rows for chunk in chunks]


@pytest.mark.parametrize("small_batches", [False, True])
def test_frame_level_values_are_exact_in_batches_of_any_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_batches: bool
) -> None:
    """Codes are stored as read and the means are the means of the dequantised codes, whatever
    the batches: small ones (3 rows, or about 40 frames) split the videos of two files into
    record batches, keep one (3 rows, 4 frames) until the next is written, refill the buffers
    of written ones and make them grow for the 600-frame video."""
    _, labels, videos = make_varied_frame_files(tmp_path / "in", n_files=2)
    if small_batches:
        monkeypatch.setattr(yt8m, "_BATCH_ROWS", 3)
        monkeypatch.setattr(yt8m, "_FRAME_SLACK", 2)
        monkeypatch.setattr(yt8m, "ShardWriter", partial(ShardWriter, batch_bytes=40 * 1152))
    import_yt8m(str(tmp_path / "in" / "*"), tmp_path / "ds", "frame", workers=1)
    ds = Dataset.open(tmp_path / "ds")
    assert ds.ids.tolist() == [f"v{i}" for i in range(len(videos))]
    assert [tuple(ds.labels[i].indices.tolist()) for i in range(len(videos))] == labels
    assert ds.n_frames().tolist() == FRAME_COUNTS
    for group, index in (("rgb", 1), ("audio", 2)):
        codes, chunk_rows = stored_codes(ds, group)
        np.testing.assert_array_equal(codes.reshape(-1, codes.size // sum(FRAME_COUNTS)),
                                      np.concatenate([v[index] for v in videos]))  # fmt: skip
        means = ds.features(np.arange(len(videos)), groups=(f"mean_{group}",))
        for row, video in enumerate(videos):
            frames = video[index]
            exact = dequantize_uint8(frames.sum(axis=0, dtype=np.uint32) / len(frames))
            np.testing.assert_array_equal(means[row], exact)
            np.testing.assert_allclose(means[row], dequantize(frames).mean(axis=0), atol=1e-5)
    assert (len(chunk_rows) > 4) == small_batches


def test_a_bad_video_among_good_ones_names_its_record(tmp_path: Path) -> None:
    offsets = make_varied_frame_files(tmp_path / "in")[0]
    path = tmp_path / "in" / "a0.tfrecord"
    payloads = [payload for _, payload in tr.iter_records(path)]
    empty = np.zeros((0, 1024), np.uint8), np.zeros((0, 128), np.uint8)
    payloads.insert(4, tf_layout_video("none", [1], *empty))
    tr.write_records(path, payloads)
    with pytest.raises(DataError) as err:
        import_yt8m(str(path), tmp_path / "ds", "frame", workers=1)
    assert str(err.value).startswith(
        f"{path}: record at byte {offsets[4]} (id 'none'): 0 'rgb' frames and 0 'audio' frames"
    )
    assert "\n" not in str(err.value)
    assert leftovers(tmp_path) == []


def test_a_truncated_frame_file(tmp_path: Path) -> None:
    """A frame-level file cut inside its 7th record: an error naming the file and record, and
    nothing written; with --skip-corrupt the 6 whole records before it, exactly."""
    offsets, _, videos = make_varied_frame_files(tmp_path / "in")
    path = tmp_path / "in" / "a0.tfrecord"
    path.write_bytes(path.read_bytes()[: offsets[6] + 500])
    message = rf"^{path}: record at byte {offsets[6]} is truncated \(it needs \d+ bytes, 500 left\)"
    with pytest.raises(DataError, match=message):
        import_yt8m(str(path), tmp_path / "ds", "frame", workers=1)
    assert leftovers(tmp_path) == []
    with pytest.warns(WeblyWarning, match="skipped 1 corrupt records"):
        summary = import_yt8m(str(path), tmp_path / "ds", "frame", skip_corrupt=True)
    assert (summary.rows, summary.corrupt_records) == (6, 1)
    codes, _ = stored_codes(Dataset.open(tmp_path / "ds"), "rgb")
    np.testing.assert_array_equal(
        codes.reshape(-1, 1024), np.concatenate([v[1] for v in videos[:6]])
    )


# ---------------------------------------------------------------- group names


def test_video_level_groups_are_named_alike_at_both_levels(tmp_path: Path) -> None:
    """``rgb``/``audio`` are frames, ``mean_rgb``/``mean_audio`` video level, at either level:
    one zoo of video-level members plans the same on a video-level and a frame-level import."""
    assert (VIDEO_GROUPS, FRAME_GROUPS) == (("mean_rgb", "mean_audio"), ("rgb", "audio"))
    for level in ("video", "frame"):
        layout = yt8m_layout(level)  # type: ignore[arg-type]
        assert [f.name for f in layout.features if f.level == "video"] == list(VIDEO_GROUPS)
        frames = [f.name for f in layout.features if f.level == "frame"]
        assert frames == (list(FRAME_GROUPS) if level == "frame" else [])
    make_video_files(tmp_path / "in-video", n_files=1)
    make_frame_files(tmp_path / "in-frame", n_files=1)
    stores = [
        Dataset.open(import_yt8m(str(tmp_path / f"in-{level}" / "*"), tmp_path / level, level).out)
        for level in ("video", "frame")
    ]
    zoo = parse_zoo(
        {
            "members": [
                {"name": "logistic"},  # every video-level group
                {"name": "mlp", "id": "mlp_rgb", "groups": ["mean_rgb"]},
                {"name": "mlp", "id": "mlp_audio", "options": {"groups": ["mean_audio"]}},
            ]
        }
    )
    video, frame = ([(m.groups, m.input_dims) for m in plan_zoo(zoo, ds)] for ds in stores)
    assert video == frame
    assert video[0] == (VIDEO_GROUPS, {"mean_rgb": 1024, "mean_audio": 128})
    # without groups, the store reads every group of the level asked for
    assert stores[0].features([0]).shape == stores[1].features([0]).shape == (1, 1152)
    assert stores[1].frames([0])[0].shape[2] == 1152


# ---------------------------------------------------------------- bad input


def write_one(folder: Path, payload: bytes) -> str:
    folder.mkdir(exist_ok=True)
    tr.write_records(folder / "bad.tfrecord", [payload])
    return str(folder / "bad.tfrecord")


RGB, AUDIO = np.zeros(1024, np.float32), np.zeros(128, np.float32)
BAD_VIDEOS: dict[str, tuple[dict[str, Any], str]] = {
    "no id": (
        {"labels": np.array([1]), "mean_rgb": RGB, "mean_audio": AUDIO},
        r"record at byte 0: no feature 'id' \(it has: labels, mean_rgb, mean_audio\); "
        r"pick the release with --names",
    ),
    "2017 names": (
        {"video_id": [b"v"], "labels": np.array([1]), "mean_inc3": RGB, "mean_audio": AUDIO},
        r"no feature 'id' .*--names 2018\|2017",
    ),
    "no audio": (
        {"id": [b"v"], "labels": np.array([1]), "mean_rgb": RGB},
        r"record at byte 0 \(id 'v'\): no feature 'mean_audio'",
    ),
    "no labels": (
        {"id": [b"v"], "mean_rgb": RGB, "mean_audio": AUDIO},
        r"\(id 'v'\): no feature 'labels'",
    ),
    "short rgb": (
        {"id": [b"v"], "labels": np.array([1]), "mean_rgb": RGB[:1000], "mean_audio": AUDIO},
        r"\(id 'v'\): 'mean_rgb' has 1000 values but YouTube-8M mean_rgb has 1024; check that "
        r"these are video-level files \(--level\)",
    ),
    "label too big": (
        {"id": [b"v"], "labels": np.array([5, 3862]), "mean_rgb": RGB, "mean_audio": AUDIO},
        r"\(id 'v'\): 'labels' use class 3862 but the dataset declares 3862 classes "
        r"\(0..3861\); check --num-classes",
    ),
    "negative label": (
        {"id": [b"v"], "labels": np.array([-1]), "mean_rgb": RGB, "mean_audio": AUDIO},
        r"'labels' use class -1",
    ),
    "nan": (
        {"id": [b"v"], "labels": np.array([1]), "mean_rgb": RGB, "mean_audio": AUDIO + np.nan},
        r"\(id 'v'\): 'mean_audio' holds NaN or inf; the file is damaged",
    ),
    "float labels": (
        {"id": [b"v"], "labels": np.array([1.0]), "mean_rgb": RGB, "mean_audio": AUDIO},
        r"'labels' is a float32 list, YouTube-8M's is a int64 list",
    ),
    "bytes rgb": (
        {"id": [b"v"], "labels": np.array([1]), "mean_rgb": [b"x"], "mean_audio": AUDIO},
        r"'mean_rgb' is a bytes_list, YouTube-8M's is a float32 list",
    ),
    "int id": (
        {"id": np.array([7]), "labels": np.array([1]), "mean_rgb": RGB, "mean_audio": AUDIO},
        r"'id' is a int64_list, YouTube-8M's is a bytes_list",
    ),
    "two ids": (
        {"id": [b"a", b"b"], "labels": np.array([1]), "mean_rgb": RGB, "mean_audio": AUDIO},
        r"'id' holds 2 values, expected one video id",
    ),
    "binary id": (
        {"id": [b"\xff"], "labels": np.array([1]), "mean_rgb": RGB, "mean_audio": AUDIO},
        r"'id' is not UTF-8 text",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_VIDEOS))
def test_bad_video_record(tmp_path: Path, case: str) -> None:
    features, message = BAD_VIDEOS[case]
    path = write_one(tmp_path / "in", tr.encode_example(features))
    with pytest.raises(DataError, match=message) as err:
        import_yt8m(path, tmp_path / "ds", "video", workers=1)
    assert str(err.value).startswith(f"{path}: record at byte 0")
    assert "\n" not in str(err.value)
    assert leftovers(tmp_path) == []


FRAMES = np.zeros((3, 1024), np.uint8), np.zeros((3, 128), np.uint8)
BAD_FRAMES: dict[str, tuple[dict[str, Any], str]] = {
    "no audio list": ({"rgb": FRAMES[0]}, r"\(id 'v'\): no feature list 'audio' \(it has: rgb\)"),
    "wrong dim": (
        {"rgb": FRAMES[0][:, :1000], "audio": FRAMES[1]},
        r"frames of 'rgb' are 1000-byte features, YouTube-8M's are 1024 bytes each",
    ),
    "float frames": (
        {"rgb": [RGB] * 3, "audio": FRAMES[1]},
        r"frames of 'rgb' are other features",
    ),
    "frame counts differ": (
        {"rgb": FRAMES[0], "audio": FRAMES[1][:2]},
        r"3 'rgb' frames and 2 'audio' frames; a video needs the same number",
    ),
    "no frames": ({"rgb": [], "audio": []}, r"0 'rgb' frames and 0 'audio' frames; a video needs"),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_frame_record(tmp_path: Path, case: str) -> None:
    lists, message = BAD_FRAMES[case]
    payload = tr.encode_sequence_example({"id": [b"v"], "labels": np.array([1])}, lists)
    path = write_one(tmp_path / "in", payload)
    with pytest.raises(DataError, match=message):
        import_yt8m(path, tmp_path / "ds", "frame", workers=1)
    assert leftovers(tmp_path) == []


def test_video_file_read_as_frame_level(tmp_path: Path) -> None:
    make_video_files(tmp_path / "in", n_files=1)
    with pytest.raises(DataError, match=r"record at byte 0 \(id 'f0r0'\): no feature list 'rgb'"):
        import_yt8m(str(tmp_path / "in" / "*"), tmp_path / "ds", "frame")
    assert leftovers(tmp_path) == []


def test_error_in_a_worker_leaves_nothing(tmp_path: Path) -> None:
    make_video_files(tmp_path / "in", n_files=3)
    path = tmp_path / "in" / "v1.tfrecord"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    pattern = str(tmp_path / "in" / "*.tfrecord")
    with pytest.raises(DataError, match=rf"{path}: record at byte 0 has a bad payload CRC32C"):
        import_yt8m(pattern, tmp_path / "ds", "video", workers=2)
    assert leftovers(tmp_path) == []
    with pytest.warns(WeblyWarning, match="skipped 1 corrupt records"):
        summary = import_yt8m(pattern, tmp_path / "ds", "video", skip_corrupt=True, workers=2)
    assert (summary.rows, summary.corrupt_records) == (14, 1)
    assert str(summary).endswith("into " + str(tmp_path / "ds") + "; skipped 1 corrupt records")
    assert Dataset.open(tmp_path / "ds").manifest["source"]["corrupt_records"] == 1


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, r"no files match '.*'; check the path and the glob"),
        (
            lambda d: (d / "empty.tfrecord").write_bytes(b""),
            r"the 1 files matching '.*' hold no records; check that they are YouTube-8M",
        ),
    ],
)
def test_nothing_to_import(tmp_path: Path, setup: Callable[[Path], object], message: str) -> None:
    (tmp_path / "in").mkdir()
    setup(tmp_path / "in")
    with pytest.raises(DataError, match=message):
        import_yt8m(str(tmp_path / "in" / "*"), tmp_path / "ds", "video")
    assert leftovers(tmp_path) == []


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    make_video_files(tmp_path / "in", n_files=1)
    pattern = str(tmp_path / "in" / "*")
    import_yt8m(pattern, tmp_path / "ds", "video")
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        import_yt8m(pattern, tmp_path / "ds", "video")
    assert import_yt8m(pattern, tmp_path / "ds", "video", overwrite=True).rows == 5


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"level": "clip"}, r"level 'clip' is unknown; use 'video' or 'frame'"),
        ({"names": "2019"}, r"names '2019' is unknown; use '2018' or '2017'"),
        ({"workers": 0}, r"workers is 0; it must be >= 1"),
    ],
)
def test_bad_options(tmp_path: Path, option: dict[str, Any], message: str) -> None:
    make_video_files(tmp_path / "in", n_files=1)
    kwargs = {"level": "video", **option}
    with pytest.raises(DataError, match=message):
        import_yt8m(str(tmp_path / "in" / "*"), tmp_path / "ds", **kwargs)
    assert leftovers(tmp_path) == []


def test_duplicate_ids_warn(tmp_path: Path) -> None:
    payload = video_example("same", [1], RGB, AUDIO)
    (tmp_path / "in").mkdir()
    tr.write_records(tmp_path / "in" / "a.tfrecord", [payload, payload])
    with pytest.warns(WeblyWarning, match="ids occur more than once"):
        import_yt8m(str(tmp_path / "in" / "*"), tmp_path / "ds", "video")
    assert len(Dataset.open(tmp_path / "ds")) == 2


def test_inputs_are_not_modified(tmp_path: Path) -> None:
    make_frame_files(tmp_path / "in", n_files=1)
    before = {p: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    import_yt8m(str(tmp_path / "in" / "*"), tmp_path / "ds", "frame")
    assert {p: p.read_bytes() for p in (tmp_path / "in").iterdir()} == before


# ---------------------------------------------------------------- the real 2018 sample


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason=f"real YouTube-8M sample not at {REAL}")
def test_real_video_level_files(tmp_path: Path) -> None:
    summary = import_yt8m(str(REAL / "*.tfrecord"), tmp_path / "ds", "video")
    assert summary.files == 30 and 8_000 < summary.rows < 9_500
    ds = Dataset.open(tmp_path / "ds")
    assert len(ds) == summary.rows and ds.labels.indices.max() < 3862
    assert 2.5 < ds.labels.nnz / len(ds) < 3.5
    first = sorted(REAL.glob("*.tfrecord"))[0]
    for row, (_, payload) in enumerate(tr.iter_records(first)):
        if row % 50:
            continue
        example = tr.parse_example(payload)
        assert ds.ids[row] == example["id"][0].decode()
        assert sorted(ds.labels[row].indices.tolist()) == sorted(arr(example["labels"]).tolist())
        features = ds.features([row])[0]
        np.testing.assert_array_equal(features[:1024], example["mean_rgb"])
        np.testing.assert_array_equal(features[1024:], example["mean_audio"])
