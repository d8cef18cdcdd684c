"""Batch prediction: stores and YouTube-8M TFRecords (video and frame level) in, Kaggle CSV,
Parquet and JSON lines out, equal to PyTorch; bad inputs leave no output file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import random_batch
from tests.data.test_yt8m import make_frame_files, make_video_files
from tests.deploy.conftest import save_model
from webly.data import Dataset, DatasetWriter, FeatureSpec, Layout
from webly.data import tfrecord as tr
from webly.data.yt8m import import_yt8m, yt8m_layout
from webly.deploy import export_onnx
from webly.deploy.export import torch_probabilities
from webly.deploy.inputs import row_batches
from webly.deploy.predict import predict
from webly.errors import ConfigError, DataError
from webly.io import read_submission
from webly.models.quantized import open_network


def torch_top(network_folder: Path, store: Dataset, groups: tuple[str, ...], k: int) -> tuple:
    """Each row's top-k classes and scores by PyTorch eval on the store's stored values."""
    network = open_network(network_folder)
    specs = [store.layout.feature(g) for g in groups]
    rows = np.arange(len(store))
    if network.level == "frame":
        arrays, lengths = [], None
        for g in groups:
            codes, lengths = store.frames(rows, (g,), decode=False)
            arrays.append(codes)
    else:
        arrays = [s.encode(store.features(rows, (s.name,))) for s in specs]
        lengths = None
    probs = torch_probabilities(network, specs, arrays, lengths, multilabel=True)
    order = np.argsort(-probs, axis=1)[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


def assert_no_leftovers(folder: Path, *expected: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)


def test_video_store_to_kaggle_csv(
    tmp_path: Path, small_store: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    source = save_model(tmp_path / "net", "resnet_av", small_store.layout, ("rgb", "audio"))
    export_onnx(source, tmp_path / "export", layout=small_store.layout)
    out = tmp_path / "sub.csv"
    capsys.readouterr()
    summary = predict(tmp_path / "export", small_store.path, out, batch_size=64)
    assert (summary.rows, summary.k) == (200, 20) and "200 rows" in str(summary)
    assert capsys.readouterr().err.startswith("predict: 200 rows in ")  # progress, not a tty
    ids, top = read_submission(out, None, 20)
    assert ids == list(small_store.ids) and top.k == 20
    classes, scores = torch_top(source, small_store, ("rgb", "audio"), 20)
    np.testing.assert_array_equal(top.indices, classes)
    np.testing.assert_allclose(top.scores, scores, atol=2e-6)  # 6 decimals
    assert out.read_text().startswith("VideoId,LabelConfidencePairs\nv0,")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="is a folder; name the file to write"):
        predict(tmp_path / "export", small_store.path, tmp_path / "folder")
    with pytest.raises(ConfigError, match="holds the input"):
        predict(tmp_path / "export", small_store.path, tmp_path)


def test_frame_store_to_parquet_and_jsonl(tmp_path: Path, frame_store: Dataset) -> None:
    groups = ("rgb", "audio")
    source = save_model(tmp_path / "net", "attention_pool", frame_store.layout, groups)
    export_onnx(source, tmp_path / "export", layout=frame_store.layout)
    classes, scores = torch_top(source, frame_store, groups, 5)
    predict(tmp_path / "export", frame_store.path, tmp_path / "top.parquet", top_k=5, fmt="parquet",
            batch_size=7)  # fmt: skip
    table = pq.read_table(tmp_path / "top.parquet")
    assert table.column_names == ["id", "classes", "scores", "names"]
    assert table.column("id").to_pylist() == list(frame_store.ids)
    np.testing.assert_array_equal(np.array(table.column("classes").to_pylist()), classes)
    np.testing.assert_allclose(np.array(table.column("scores").to_pylist()), scores, atol=1e-4)
    assert table.column("names").to_pylist()[0] == [f"class-{c}" for c in classes[0]]
    predict(tmp_path / "export", frame_store.path, tmp_path / "top.jsonl", top_k=30, fmt="jsonl")
    lines = [json.loads(line) for line in (tmp_path / "top.jsonl").read_text().splitlines()]
    assert len(lines) == 45 and len(lines[0]["classes"]) == 9  # top-k capped at the classes
    assert lines[4]["id"] == "v4" and lines[4]["classes"][:5] == classes[4].tolist()
    assert lines[4]["names"][0] == f"class-{classes[4][0]}"
    np.testing.assert_allclose(lines[4]["scores"][:5], scores[4], atol=1e-4)


def test_video_level_tfrecords_predict_like_their_import(tmp_path: Path) -> None:
    make_video_files(tmp_path / "files", n_files=2, per_file=7)
    pattern = str(tmp_path / "files" / "*.tfrecord")
    store = tmp_path / "store"
    import_yt8m(pattern, store, level="video", workers=1)
    layout = yt8m_layout("video", 3862)
    source = save_model(tmp_path / "net", "mlp", layout, ("mean_rgb", "mean_audio"))
    export_onnx(source, tmp_path / "export", layout=layout)
    predict(tmp_path / "export", pattern, tmp_path / "a.csv", batch_size=4)
    predict(tmp_path / "export", store, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


@pytest.mark.slow
def test_frame_level_tfrecords_for_both_levels(tmp_path: Path) -> None:
    make_frame_files(tmp_path / "files", n_files=2, per_file=5)
    pattern = str(tmp_path / "files" / "*.tfrecord")
    store = tmp_path / "store"
    import_yt8m(pattern, store, level="frame", workers=1)
    layout = yt8m_layout("frame", 3862)
    for name, groups in (("lstm", ("rgb", "audio")), ("logistic", ("mean_rgb", "mean_audio"))):
        source = save_model(tmp_path / name, name, layout, groups)
        export_onnx(source, tmp_path / f"{name}-export", layout=layout)
        predict(tmp_path / f"{name}-export", pattern, tmp_path / "a.csv", batch_size=3)
        predict(tmp_path / f"{name}-export", store, tmp_path / "b.csv")
        a, b = ((tmp_path / f).read_text().splitlines() for f in ("a.csv", "b.csv"))
        assert len(a) == 11 and [line.split(",")[0] for line in a] == [
            line.split(",")[0] for line in b
        ]
        for line_a, line_b in zip(a[1:], b[1:], strict=True):  # scores to the 6th decimal
            pairs_a, pairs_b = (np.array(s.split(",")[1].split(), float) for s in (line_a, line_b))
            np.testing.assert_allclose(pairs_a, pairs_b, atol=2e-6)


def test_a_tfrecord_of_another_schema_is_refused(tmp_path: Path, small_store: Dataset) -> None:
    layout = yt8m_layout("frame", 3862)
    source = save_model(tmp_path / "net", "dbof", layout, ("rgb", "audio"))
    export_onnx(source, tmp_path / "export", layout=layout)
    files = tmp_path / "files"
    files.mkdir()
    foreign = tr.encode_example({"id": [b"x1"], "pixels": np.zeros(5, np.float32)})
    tr.write_records(files / "other.tfrecord", [foreign])
    out = tmp_path / "out" / "sub.csv"
    out.parent.mkdir()
    with pytest.raises(DataError, match=r"other.tfrecord: record at byte 0 \(id 'x1'\): this "
                       r"video-level record has no frame list 'rgb'"):  # fmt: skip
        predict(tmp_path / "export", str(files / "*.tfrecord"), out)
    make_video_files(files, n_files=1, per_file=2)
    with pytest.raises(DataError, match="this video-level record has no frame list 'rgb'"):
        predict(tmp_path / "export", str(files / "v*.tfrecord"), out)
    with pytest.raises(DataError, match="no files match"):
        predict(tmp_path / "export", str(files / "none*.tfrecord"), out)
    with pytest.raises(DataError, match="'rgb' is video-level but the model reads it frame"):
        predict(tmp_path / "export", small_store.path, out)
    assert_no_leftovers(out.parent)


@pytest.mark.slow
def test_wrong_feature_dimensions_are_refused(tmp_path: Path, small_store: Dataset) -> None:
    wide = Layout(features=(FeatureSpec("rgb", 24, "uint8"), FeatureSpec("audio", 4)), n_classes=20)
    source = save_model(tmp_path / "net", "mlp", wide, ("rgb", "audio"))
    export_onnx(source, tmp_path / "export", layout=wide)
    out = tmp_path / "out" / "sub.csv"
    out.parent.mkdir()
    with pytest.raises(
        DataError, match="store: feature group 'rgb' has 16 values per row, the model expects 24"
    ):
        predict(tmp_path / "export", small_store.path, out)
    yt8m = yt8m_layout("video", 3862)
    source = save_model(tmp_path / "yt8m", "logistic", yt8m, ("mean_rgb", "mean_audio"))
    export_onnx(source, tmp_path / "yt8m-export", layout=yt8m)
    files = tmp_path / "files"
    files.mkdir()
    short = tr.encode_example(
        {
            "id": [b"v1"],
            "mean_rgb": np.zeros(512, np.float32),
            "mean_audio": np.zeros(128, np.float32),
        }
    )
    tr.write_records(files / "short.tfrecord", [short])
    with pytest.raises(
        DataError, match="'mean_rgb' has 512 values per row, the model expects 1024"
    ):
        predict(tmp_path / "yt8m-export", str(files / "*.tfrecord"), out)
    assert_no_leftovers(out.parent)


@pytest.mark.slow
def test_an_error_mid_stream_leaves_the_old_file(tmp_path: Path) -> None:
    make_video_files(tmp_path / "files", n_files=2, per_file=300)
    layout = yt8m_layout("video", 3862)
    source = save_model(tmp_path / "net", "logistic", layout, ("mean_rgb", "mean_audio"))
    export_onnx(source, tmp_path / "export", layout=layout)
    second = tmp_path / "files" / "v1.tfrecord"
    second.write_bytes(second.read_bytes()[:-10])  # truncated: found after 300 rows are written
    out = tmp_path / "out" / "sub.csv"
    out.parent.mkdir()
    out.write_text("old\n")
    with pytest.raises(DataError, match=r"v1\.tfrecord: record at byte \d+ is truncated"):
        predict(tmp_path / "export", str(tmp_path / "files" / "*.tfrecord"), out, batch_size=100)
    assert out.read_text() == "old\n"
    assert_no_leftovers(out.parent, "sub.csv")


def test_nan_or_inf_features_are_refused_not_scored(tmp_path: Path) -> None:
    layout = Layout(
        features=(FeatureSpec("mean_rgb", 8, "float32"), FeatureSpec("mean_audio", 4, "float16")),
        n_classes=5,
    )
    source = save_model(tmp_path / "net", "logistic", layout, ("mean_rgb", "mean_audio"))
    export_onnx(source, tmp_path / "export", layout=layout)
    out = tmp_path / "out" / "sub.csv"
    out.parent.mkdir()
    files = tmp_path / "files"
    files.mkdir()

    def record(vid: bytes, rgb: float, audio: float) -> bytes:
        return tr.encode_example(
            {
                "id": [vid],
                "mean_rgb": np.full(8, rgb, np.float32),
                "mean_audio": np.full(4, audio, np.float32),
            }
        )

    for name, bad in (("nan", record(b"v2", np.nan, 0.0)), ("big", record(b"v2", 0.0, 1e6))):
        tr.write_records(files / f"{name}.tfrecord", [record(b"v1", 0.5, 0.5), bad])
        with pytest.raises(DataError, match=r"\.tfrecord: record at byte \d+ \(id 'v2'\): feat"):
            predict(tmp_path / "export", str(files / f"{name}.tfrecord"), out)
    # a store holding values beyond the model's float16 (stored as float32)
    stored = Layout(
        features=(FeatureSpec("mean_rgb", 8, "float32"), FeatureSpec("mean_audio", 4, "float32")),
        n_classes=5,
    )
    rng = np.random.default_rng(0)
    batch = random_batch(rng, stored, 6)
    batch.features["mean_audio"][4, 2] = 1e6
    with DatasetWriter(tmp_path / "store", stored) as writer:
        writer.write_batch(batch)
    with pytest.raises(
        DataError, match=r"store: row 'v4': feature group 'mean_audio' holds NaN, inf or values"
    ):
        predict(tmp_path / "export", tmp_path / "store", out)
    assert_no_leftovers(out.parent)


def test_a_mixed_model_reads_each_group_of_a_store_at_its_level(frame_store: Dataset) -> None:
    layout = frame_store.layout
    specs = (layout.feature("rgb"), layout.feature("mean_rgb"))  # uint8 frames, float32 means
    batches = list(row_batches(frame_store.path, specs, batch_size=7))
    assert sum(len(b.ids) for b in batches) == 45
    start = 0
    for batch in batches:
        rows = np.arange(start, start + len(batch.ids))
        start += len(batch.ids)
        codes, lengths = frame_store.frames(rows, ("rgb",), decode=False)
        assert batch.ids == [str(i) for i in frame_store.ids[rows]]
        assert batch.groups["rgb"].dtype == np.uint8 and batch.groups["rgb"].ndim == 3
        np.testing.assert_array_equal(batch.groups["rgb"], codes)
        assert batch.lengths is not None and batch.lengths.dtype == np.int64
        np.testing.assert_array_equal(batch.lengths, lengths)
        means = batch.groups["mean_rgb"]
        assert means.dtype == np.float32 and means.shape == (len(rows), 16)
        np.testing.assert_array_equal(means, frame_store.features(rows, ("mean_rgb",)))
    only_video = next(iter(row_batches(frame_store.path, specs[1:], batch_size=5)))
    assert only_video.lengths is None and only_video.groups["mean_rgb"].shape == (5, 16)
    for spec, said in (
        (FeatureSpec("mean_rgb", 16, "float32", "frame"), "'mean_rgb' is video-level but the "
         "model reads it frame-level"),
        (FeatureSpec("rgb", 16, "uint8", "video"), "'rgb' is frame-level but the model reads "
         "it video-level"),
    ):  # fmt: skip
        with pytest.raises(DataError, match=said):
            next(iter(row_batches(frame_store.path, (specs[0], spec), batch_size=5)))


def test_a_mixed_model_reads_frame_level_tfrecords_as_their_import(tmp_path: Path) -> None:
    videos = make_frame_files(tmp_path / "files", n_files=2, per_file=4)
    pattern = str(tmp_path / "files" / "*.tfrecord")
    import_yt8m(pattern, tmp_path / "store", level="frame", workers=1)
    store = Dataset.open(tmp_path / "store")
    layout = yt8m_layout("frame", 3862)
    specs = (layout.feature("rgb"), layout.feature("mean_rgb"), layout.feature("mean_audio"))
    from_files = list(row_batches(pattern, specs, batch_size=3))
    from_store = list(row_batches(store.path, specs, batch_size=3))
    assert [b.ids for b in from_files] == [b.ids for b in from_store]
    for got, want in zip(from_files, from_store, strict=True):
        assert got.lengths is not None and want.lengths is not None
        np.testing.assert_array_equal(got.lengths, want.lengths)
        for spec in specs:  # the means bit for bit as the importer computes them
            assert got.groups[spec.name].dtype == np.dtype(spec.dtype)
            np.testing.assert_array_equal(got.groups[spec.name], want.groups[spec.name])
    first = from_files[0]
    rgb, audio = videos[0][2], videos[0][3]
    assert first.ids[0] == videos[0][0] and first.lengths is not None
    assert first.lengths[0] == len(rgb) and first.groups["rgb"].shape[2] == 1024
    np.testing.assert_array_equal(first.groups["rgb"][0, : len(rgb)], rgb)
    assert not first.groups["rgb"][0, len(rgb) :].any()  # zero-padded
    assert first.groups["mean_rgb"].shape == (3, 1024)
    for name, frames in (("mean_rgb", rgb), ("mean_audio", audio)):
        expected = (frames.astype(np.float64) * 4 / 255 + 4 / 512 - 2).mean(axis=0)
        np.testing.assert_allclose(first.groups[name][0], expected, atol=1e-5)
    # frames counted across the frame-level groups only: an audio list of another length
    # feeds mean_audio, but not the frame-level group audio
    odd = tmp_path / "odd"
    odd.mkdir()
    record = tr.encode_sequence_example(
        {"id": [b"odd"]},
        {"rgb": np.zeros((3, 1024), np.uint8), "audio": np.full((5, 128), 255, np.uint8)},
    )
    tr.write_records(odd / "odd.tfrecord", [record])
    batch = next(iter(row_batches(str(odd / "*.tfrecord"), specs, batch_size=2)))
    assert batch.lengths is not None and batch.lengths.tolist() == [3]
    assert batch.groups["mean_audio"][0, 0] == pytest.approx(2 + 4 / 512, abs=1e-5)  # code 255
    frames = (specs[0], layout.feature("audio"), specs[1])
    with pytest.raises(DataError, match=r"record at byte 0 \(id 'odd'\): frame lists of \[3, 5\]"):
        next(iter(row_batches(str(odd / "*.tfrecord"), frames, batch_size=2)))
    make_video_files(tmp_path / "video", n_files=1, per_file=2)
    said = r"video-level record has no frame list 'rgb' .*; the frame-level model reads rgb, mean_"
    with pytest.raises(DataError, match=said):
        next(iter(row_batches(str(tmp_path / "video" / "*.tfrecord"), specs, batch_size=2)))
