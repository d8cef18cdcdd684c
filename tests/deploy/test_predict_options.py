"""What an export's ``predict`` section asks of `predict`: test-time views of a frame-level
model through ONNX Runtime equal `tta_scores` in PyTorch; group aggregation writes one line a
group, equal to `aggregate_groups` over the rows' probabilities, contiguous groups or not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import random_batch
from tests.deploy.conftest import MixedModel, save_model
from webly.core import TopK
from webly.data import Dataset, DatasetWriter, FeatureSpec, Layout
from webly.deploy import export_onnx, load_exported
from webly.deploy.export import torch_probabilities
from webly.deploy.exported import LENGTHS
from webly.deploy.inputs import row_batches
from webly.deploy.options import PredictOptions
from webly.deploy.predict import predict, view_probabilities
from webly.deploy.serve import create_app
from webly.ensemble.aggregate import aggregate_groups
from webly.ensemble.tta import tta_scores
from webly.errors import ConfigError, DataError
from webly.models.quantized import open_network


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "sampling"), [("mean", "random"), ("max", "regular")])
def test_views_through_onnx_runtime_equal_tta_scores(
    tmp_path: Path, frame_store: Dataset, mode: str, sampling: str
) -> None:
    groups = ("rgb", "audio")
    source = save_model(tmp_path / "net", "dbof", frame_store.layout, groups)
    options = PredictOptions(tta_views=3, tta_mode=mode, tta_sampling=sampling, tta_max_frames=4)  # type: ignore[arg-type]
    export_onnx(source, tmp_path / "export", layout=frame_store.layout, predict_options=options)
    assert load_exported(tmp_path / "export").options == options
    summary = predict(tmp_path / "export", frame_store.path, tmp_path / "tta.jsonl", top_k=4,
                      fmt="jsonl", batch_size=16)  # fmt: skip
    assert summary.views == 3 and "3 views a row" in str(summary)
    reference = np.concatenate([
        probs for _, probs in tta_scores(
            open_network(source), frame_store, groups, views=3, mode=mode, seed=0, batch_size=16,  # type: ignore[arg-type]
            frame_sampling=sampling, max_frames=4,  # type: ignore[arg-type]
        )
    ])  # fmt: skip
    lines = read_jsonl(tmp_path / "tta.jsonl")
    order = np.argsort(-reference, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal([line["classes"] for line in lines], order)
    np.testing.assert_allclose(
        [line["scores"] for line in lines], np.take_along_axis(reference, order, 1), atol=1e-4
    )
    # the views change the figures: one view is the plain prediction
    plain = export_onnx(source, tmp_path / "plain", layout=frame_store.layout)
    predict(plain, frame_store.path, tmp_path / "plain.jsonl", top_k=4, fmt="jsonl")
    once = np.array([line["scores"] for line in read_jsonl(tmp_path / "plain.jsonl")])
    assert np.abs(once - np.array([line["scores"] for line in lines])).max() > 1e-3


def image_store(folder: Path, views: tuple[str, ...]) -> Dataset:
    """Video-level ``image`` features (float16, as `webly.data.images` stores them) and one
    group a stored view, e.g. ``image_flip``."""
    names = ("image", *(f"image_{v}" for v in views))
    layout = Layout(tuple(FeatureSpec(n, 8, "float16") for n in names), n_classes=6)
    with DatasetWriter(folder, layout) as writer:
        writer.write_batch(random_batch(np.random.default_rng(7), layout, 30))
    return Dataset.open(folder)


def test_stored_views_through_onnx_runtime_equal_tta_scores(tmp_path: Path) -> None:
    store = image_store(tmp_path / "images", ("flip", "top_left"))
    source = save_model(tmp_path / "net", "mlp", store.layout, ("image",))
    options = PredictOptions(tta_stored=("flip", "top_left"))
    export_onnx(source, tmp_path / "export", layout=store.layout, predict_options=options)
    exported = load_exported(tmp_path / "export")
    assert exported.options == options and exported.options.tta_stored == ("flip", "top_left")
    summary = predict(exported, store.path, tmp_path / "tta.jsonl", top_k=6, fmt="jsonl",
                      batch_size=8)  # fmt: skip
    assert summary.views == 3 and "3 views a row" in str(summary)
    reference = np.concatenate([
        probs for _, probs in tta_scores(open_network(source), store, ("image",), batch_size=8,
                                         stored_views=("flip", "top_left"))
    ])  # fmt: skip
    lines = read_jsonl(tmp_path / "tta.jsonl")
    got = np.zeros_like(reference)
    np.put_along_axis(got, np.array([line["classes"] for line in lines]),
                      np.array([line["scores"] for line in lines]), axis=1)  # fmt: skip
    np.testing.assert_allclose(got, reference, atol=1e-4)
    predict(export_onnx(source, tmp_path / "plain", layout=store.layout), store.path,
            tmp_path / "plain.jsonl", top_k=6, fmt="jsonl")  # fmt: skip
    once = np.zeros_like(reference)
    plain = read_jsonl(tmp_path / "plain.jsonl")
    np.put_along_axis(once, np.array([line["classes"] for line in plain]),
                      np.array([line["scores"] for line in plain]), axis=1)  # fmt: skip
    assert np.abs(once - got).max() > 1e-3  # the views change the figures


def test_stored_views_refuse_a_store_or_source_without_them(tmp_path: Path) -> None:
    store = image_store(tmp_path / "images", ("flip",))
    source = save_model(tmp_path / "net", "mlp", store.layout, ("image",))
    options = PredictOptions(tta_stored=("top_left",))
    export_onnx(source, tmp_path / "export", layout=store.layout, predict_options=options)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=r"no feature group image_top_left for the stored "
                       r"test-time view 'top_left'.*--views top_left"):  # fmt: skip
        predict(tmp_path / "export", store.path, out / "p.csv")
    with pytest.raises(DataError, match="which only a data store has"):
        predict(tmp_path / "export", str(tmp_path / "*.tfrecord"), out / "p.csv")
    assert list(out.iterdir()) == []
    with pytest.raises(ConfigError, match="tta_views 2 and tta_stored flip: give one kind"):
        PredictOptions(tta_views=2, tta_stored=("flip",))
    with pytest.raises(ConfigError, match="give distinct view names"):
        PredictOptions.from_json({"tta_stored": ["flip", "flip"]})


def group_store(folder: Path, contiguous: bool) -> Dataset:
    """Video-level rows in groups of 3 (``g0``, ``g1``, ...); written in two parts whose group
    ids repeat when not ``contiguous``."""
    layout = Layout(
        features=(FeatureSpec("rgb", 16, "uint8"), FeatureSpec("audio", 4, "float32")),
        n_classes=12,
        has_group=True,
    )
    rng = np.random.default_rng(5)
    with DatasetWriter(folder, layout) as writer:
        if contiguous:
            writer.write_batch(random_batch(rng, layout, 40))
        else:
            writer.write_batch(random_batch(rng, layout, 20, prefix="a"))
            writer.write_batch(random_batch(rng, layout, 22, prefix="b"))
    return Dataset.open(folder)


@pytest.mark.slow
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("method", ["mean", "belief"])
def test_group_aggregation_writes_one_line_a_group(
    tmp_path: Path, contiguous: bool, method: str
) -> None:
    store = group_store(tmp_path / "store", contiguous)
    source = save_model(tmp_path / "net", "mlp", store.layout, ("rgb", "audio"))
    options = PredictOptions(group_aggregation=method, group_k=6)  # type: ignore[arg-type]
    export_onnx(source, tmp_path / "export", layout=store.layout, predict_options=options)
    summary = predict(tmp_path / "export", store.path, tmp_path / "groups.jsonl", top_k=3,
                      fmt="jsonl", batch_size=7)  # fmt: skip
    rows = np.arange(len(store))
    specs = [store.layout.feature(g) for g in ("rgb", "audio")]
    arrays = [s.encode(store.features(rows, (s.name,))) for s in specs]
    probs = torch_probabilities(open_network(source), specs, arrays, None, multilabel=True)
    ids, want = aggregate_groups(TopK.from_dense(probs, 6), store.groups, method, k=3)  # type: ignore[arg-type]
    lines = read_jsonl(tmp_path / "groups.jsonl")
    assert summary.groups == len(ids) == len(lines) and summary.rows == len(store)
    assert f"{len(ids)} groups ({len(store)} rows)" in str(summary)
    assert [line["id"] for line in lines] == list(ids)
    np.testing.assert_array_equal([line["classes"] for line in lines], want.indices)
    np.testing.assert_allclose([line["scores"] for line in lines], want.scores, atol=1e-5)


def test_what_the_options_refuse(tmp_path: Path, small_store: Dataset) -> None:
    source = save_model(tmp_path / "net", "mlp", small_store.layout, ("rgb", "audio"))
    with pytest.raises(ConfigError, match="test-time views take frame-level models, mlp is video"):
        export_onnx(source, tmp_path / "export", predict_options=PredictOptions(tta_views=2))
    with pytest.raises(ConfigError, match="group_aggregation 'median' is unknown"):
        PredictOptions(group_aggregation="median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown predict option 'views'"):
        PredictOptions.from_json({"views": 3})
    options = PredictOptions(group_aggregation="mean")
    export_onnx(source, tmp_path / "export", layout=small_store.layout, predict_options=options)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match="has no group column, and the model aggregates rows"):
        predict(tmp_path / "export", small_store.path, out / "p.csv")
    with pytest.raises(ConfigError, match="TFRecord files have no group column"):
        predict(tmp_path / "export", str(tmp_path / "*.tfrecord"), out / "p.csv")
    with pytest.warns(UserWarning, match=r"group aggregation \(mean\); the service predicts each"):
        create_app(load_exported(tmp_path / "export"))
    info = json.loads((tmp_path / "export" / "model.json").read_text())
    info["predict"]["tta_views"] = 0
    (tmp_path / "export" / "model.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match=r"model\.json: tta_views is 0; .* re-export the model"):
        load_exported(tmp_path / "export")
    assert list(out.iterdir()) == []


def test_views_of_a_mixed_model_take_frames_and_pass_its_video_groups(
    frame_store: Dataset,
) -> None:
    layout = frame_store.layout
    specs = (layout.feature("rgb"), layout.feature("mean_rgb"))  # frame uint8, video float32
    options = PredictOptions(tta_views=2, tta_max_frames=3)
    model = MixedModel(specs, options=options)
    batch = next(iter(row_batches(frame_store.path, specs, batch_size=10)))
    assert batch.lengths is not None and batch.groups["rgb"].shape[1] > 3
    probs = view_probabilities(model, batch, model.options, np.random.SeedSequence(0))  # type: ignore[arg-type]
    assert len(model.calls) == 2
    plain, view = model.calls
    for call in model.calls:  # the video-level group reaches every view unchanged
        np.testing.assert_array_equal(call["mean_rgb"], batch.groups["mean_rgb"])
    np.testing.assert_array_equal(plain["rgb"], batch.groups["rgb"])
    np.testing.assert_array_equal(plain[LENGTHS], batch.lengths)
    assert view["rgb"].shape == (10, 3, 16) and view[LENGTHS].tolist() == [3] * 10
    for b, kept in enumerate(view["rgb"]):  # each kept frame one of the row's real frames
        real = batch.groups["rgb"][b, : batch.lengths[b]]
        assert all((real == frame).all(axis=1).any() for frame in kept)
    # the frames drawn are those a frame-level model gets from the same seed
    frames_only = MixedModel(specs[:1], options=options)
    rgb_batch = next(iter(row_batches(frame_store.path, specs[:1], batch_size=10)))
    view_probabilities(frames_only, rgb_batch, options, np.random.SeedSequence(0))  # type: ignore[arg-type]
    np.testing.assert_array_equal(frames_only.calls[1]["rgb"], view["rgb"])
    again = MixedModel(specs)
    views = [again.predict(batch.groups, batch.lengths), again.predict(view, view[LENGTHS])]
    np.testing.assert_allclose(probs, np.mean(views, axis=0), rtol=1e-6)
