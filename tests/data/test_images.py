"""Tests of `webly.data.images`: preprocessing, ONNX and TorchScript extractors, folder and CSV
sources, and bad input (message content, and nothing left at ``out``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from webly.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VIEWS,
    ImageExtractor,
    import_images,
    load_extractor,
    load_image,
    preprocess,
    view_group,
)
from webly.errors import ConfigError, DataError, WeblyWarning

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")

CLASSES = ("cat", "dog", "emu")
SIZE = (16, 16)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 16),
    ).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same tiny CNN as TorchScript, as ONNX (dynamic batch) and as ONNX with batch 1."""
    folder = tmp_path_factory.mktemp("models")
    net, example = _net(), torch.rand(2, 3, *SIZE)
    paths = {"ts": folder / "net.pt", "onnx": folder / "net.onnx", "onnx1": folder / "net1.onnx"}
    torch.jit.save(torch.jit.trace(net, example), str(paths["ts"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(paths["onnx"]),
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            dynamic_axes={"images": {0: "batch"}},
        )
        torch.onnx.export(net, (example[:1],), str(paths["onnx1"]), dynamo=False, opset_version=17)
    return paths


def _tree(root: Path, rng: np.random.Generator) -> Path:
    """3 classes x 4 random 20x24 images, PNG and JPEG mixed."""
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"img{i}.{'png' if i % 2 else 'jpg'}")
    return root


def _expected(files: list[Path], model: Path) -> np.ndarray:
    batch = np.concatenate([load_image(f, SIZE) for f in files])
    with torch.inference_mode():
        return torch.jit.load(str(model))(torch.from_numpy(batch)).numpy()


def _fails(out: Path, *needles: str, **call: object) -> None:
    with pytest.raises(DataError) as info:
        import_images(out=out, **call)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    assert not out.exists()


def test_preprocess_covers_crops_and_normalises() -> None:
    stripes = np.zeros((20, 40, 3), np.uint8)
    stripes[:, :10, 0] = 255  # red left quarter
    stripes[:, 10:30, 1] = 255  # green middle
    stripes[:, 30:, 2] = 255  # blue right quarter
    x = preprocess(Image.fromarray(stripes), (10, 10))[0]
    assert x.shape == (3, 10, 10) and x.dtype == np.float32
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    green = (np.array([0.0, 1.0, 0.0]) - mean) / std
    np.testing.assert_allclose(x[:, :, 1:9].reshape(3, -1).T, np.tile(green, (80, 1)), atol=1e-5)
    grey = preprocess(Image.new("L", (7, 5), 51), (4, 6), mean=(0.2,) * 3, std=(0.5,) * 3)
    np.testing.assert_allclose(grey, 0.0, atol=1e-6)
    assert grey.shape == (1, 3, 4, 6)


def test_preprocess_views_flip_the_centre_and_crop_the_corners_of_a_zoomed_image() -> None:
    # 14 x 14 pixels whose red channel is the column and green the row: resized to cover
    # 8/7 of (7, 7) = (8, 8), a corner view keeps 7 of the 8 rows and columns
    ramp = np.zeros((14, 14, 3), np.uint8)
    ramp[..., 0] = np.arange(14)[None, :] * 18
    ramp[..., 1] = np.arange(14)[:, None] * 18
    image = Image.fromarray(ramp)
    views = ("centre", "flip", "top_left", "top_right", "bottom_left", "bottom_right")
    x = preprocess(image, (7, 7), mean=(0.0,) * 3, std=(1.0,) * 3, views=views)
    assert x.shape == (6, 3, 7, 7)
    np.testing.assert_array_equal(x[1], x[0][:, :, ::-1])
    zoomed = np.asarray(image.resize((8, 8), Image.Resampling.BILINEAR), np.float32) / 255
    for view, (y, x0) in zip(views[2:], [(0, 0), (0, 1), (1, 0), (1, 1)], strict=True):
        np.testing.assert_allclose(
            x[views.index(view)], zoomed[y : y + 7, x0 : x0 + 7].transpose(2, 0, 1), atol=1e-6
        )
    assert x[3][0].mean() > x[2][0].mean() and x[4][1].mean() > x[2][1].mean()


def test_folder_import_onnx_and_torchscript_agree(tmp_path: Path, models: dict[str, Path]) -> None:
    root = _tree(tmp_path / "imgs", np.random.default_rng(0))
    via_onnx = import_images(
        root, tmp_path / "a", extractor=models["onnx"], dtype="float32", batch_size=5, workers=2
    )
    via_ts = import_images(
        root, tmp_path / "b", extractor=models["ts"], image_size=16, dtype="float32", batch_size=64
    )
    via_fixed = import_images(root, tmp_path / "c", extractor=models["onnx1"], batch_size=5)
    assert via_onnx.class_names == list(CLASSES) and via_onnx.task == "multiclass"
    assert list(via_onnx.ids[:2]) == ["cat/img0.jpg", "cat/img1.png"]
    np.testing.assert_array_equal(via_onnx.labels.indices, np.repeat([0, 1, 2], 4))
    files = [root / i for i in via_onnx.ids]
    expected = _expected(files, models["ts"])
    rows = np.arange(12)
    np.testing.assert_allclose(via_ts.features(rows, ("image",)), expected, atol=1e-6)
    np.testing.assert_allclose(via_onnx.features(rows, ("image",)), expected, atol=1e-4)
    np.testing.assert_allclose(via_fixed.features(rows, ("image",)), expected, atol=2e-3)
    assert via_fixed.layout.feature("image").dtype == "float16"
    assert via_fixed.layout.feature("image").dim == 16
    onnx = load_extractor(models["onnx"], image_size=99)  # static 16x16 input wins
    assert (onnx.input_size, onnx.dim) == (SIZE, 16)


def test_views_are_stored_as_groups_of_the_extractor_run_on_each_crop(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    root = _tree(tmp_path / "imgs", np.random.default_rng(5))
    views = ("flip", "bottom_right")
    ds = import_images(root, tmp_path / "ds", extractor=models["ts"], image_size=16,
                       dtype="float32", batch_size=5, views=views)  # fmt: skip
    assert [f.name for f in ds.layout.features] == ["image", "image_flip", "image_bottom_right"]
    files = [root / i for i in ds.ids]
    crops = np.stack([load_image(f, SIZE, views=("centre", *views)) for f in files])
    with torch.inference_mode():
        net = torch.jit.load(str(models["ts"]))
        for v, group in enumerate(("image", *map(view_group, views))):
            expected = net(torch.from_numpy(np.ascontiguousarray(crops[:, v]))).numpy()
            np.testing.assert_allclose(ds.features(np.arange(12), (group,)), expected, atol=1e-5)
    assert not np.allclose(ds.features([0], ("image",)), ds.features([0], ("image_flip",)))
    plain = import_images(root, tmp_path / "plain", extractor=models["ts"], image_size=16,
                          dtype="float32")  # fmt: skip
    np.testing.assert_array_equal(plain.features(np.arange(12), ("image",)),
                                  ds.features(np.arange(12), ("image",)))  # fmt: skip


@pytest.mark.parametrize(
    ("views", "needle"),
    [(("mirror",), "'mirror' is unknown; choose from " + ", ".join(VIEWS)),
     (("flip", "flip"), "names a view twice")],
)  # fmt: skip
def test_unknown_or_repeated_views_fail_before_anything_is_written(
    tmp_path: Path, models: dict[str, Path], views: tuple[str, ...], needle: str
) -> None:
    root = _tree(tmp_path / "imgs", np.random.default_rng(6))
    with pytest.raises(ConfigError, match=needle):
        import_images(root, tmp_path / "ds", extractor=models["ts"], views=views)
    assert not (tmp_path / "ds").exists()


def test_csv_with_groups_and_text(tmp_path: Path, models: dict[str, Path]) -> None:
    root = _tree(tmp_path / "imgs", np.random.default_rng(1))
    csv = tmp_path / "items.csv"
    csv.write_text(
        "path,label,group,text\n"
        "imgs/dog/img0.jpg,shoes,p1,red shoe\n"
        "imgs/dog/img1.png,shoes,p1,\n"
        f"{root / 'cat/img2.jpg'},bags,p2,a bag\n"
    )
    ds = import_images(csv, tmp_path / "ds", extractor=models["onnx"], dtype="float32")
    assert ds.class_names == ["bags", "shoes"]
    np.testing.assert_array_equal(ds.labels.indices, [1, 1, 0])
    assert list(ds.ids)[:2] == ["imgs/dog/img0.jpg", "imgs/dog/img1.png"]
    assert ds.groups is not None and list(ds.groups) == ["p1", "p1", "p2"]
    assert ds.texts is not None and list(ds.texts) == ["red shoe", "", "a bag"]
    files = [root / "dog/img0.jpg", root / "dog/img1.png", root / "cat/img2.jpg"]
    expected = _expected(files, models["ts"])
    np.testing.assert_allclose(ds.features([0, 1, 2], ("image",)), expected, atol=1e-4)
    _fails(
        tmp_path / "bad",
        "items.csv",
        "row 0",
        "'shoes'",
        "not in the class list",
        src=csv,
        extractor=models["onnx"],
        classes=["bags", "hats"],
    )


def test_corrupt_image_fails_or_is_skipped(tmp_path: Path, models: dict[str, Path]) -> None:
    root = _tree(tmp_path / "imgs", np.random.default_rng(2))
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    _fails(
        tmp_path / "ds",
        "broken.jpg",
        "cannot read the image",
        "--skip-bad",
        src=root,
        extractor=models["onnx"],
    )
    with pytest.warns(WeblyWarning, match="skipped 1 unreadable images"):
        ds = import_images(root, tmp_path / "ds", extractor=models["onnx"], skip_bad=True)
    assert len(ds) == 12 and "dog/broken.jpg" not in set(ds.ids)


def test_missing_and_bad_inputs(tmp_path: Path, models: dict[str, Path]) -> None:
    root = _tree(tmp_path / "imgs", np.random.default_rng(3))
    out = tmp_path / "ds"
    _fails(out, "nowhere", "does not exist", src=tmp_path / "nowhere", extractor=models["ts"])
    _fails(out, "net.onnx", "does not exist", src=root, extractor=tmp_path / "net.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    _fails(out, "junk.onnx", "ONNX", src=root, extractor=tmp_path / "junk.onnx")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    _fails(out, "junk.pt", "TorchScript", src=root, extractor=tmp_path / "junk.pt")
    (tmp_path / "net.h5").write_bytes(b"junk")
    _fails(out, "net.h5", ".onnx", src=root, extractor=tmp_path / "net.h5")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    _fails(out, "empty", "no images found", src=tmp_path / "empty", extractor=models["ts"])
    _fails(out, "no class folders", src=tmp_path / "empty" / "cat", extractor=models["ts"])
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
    torch.jit.save(torch.jit.trace(flat, torch.rand(1, 3, *SIZE)), str(tmp_path / "flat.ts"))
    _fails(
        out,
        "flat.ts",
        "fails on a (1, 3, 8, 8) input",
        "--image-size",
        src=root,
        extractor=tmp_path / "flat.ts",
        image_size=8,
    )


def test_any_image_extractor_object(tmp_path: Path) -> None:
    root = _tree(tmp_path / "imgs", np.random.default_rng(4))

    class MeanColour:
        input_size = (8, 8)
        dim = 3

        def __call__(self, batch: np.ndarray) -> np.ndarray:
            return batch.mean(axis=(2, 3))

    assert isinstance(MeanColour(), ImageExtractor)
    ds = import_images(root, tmp_path / "ds", extractor=MeanColour(), dtype="float32")
    first = load_image(root / "cat" / "img0.jpg", (8, 8))[0].mean(axis=(1, 2))
    np.testing.assert_allclose(ds.features([0], ("image",))[0], first, atol=1e-6)
