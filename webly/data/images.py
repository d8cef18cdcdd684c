"""Import images into the webly store as the features of a pretrained image model.

Images come from a class-per-folder tree (``DIR/<class name>/*.jpg``) or from a CSV of
``path,label[,group][,text]`` rows. Each is decoded with Pillow, resized to cover the model's
input size and centre-cropped to it, scaled to [0, 1] and normalised (ImageNet mean/std by
default), then a batch of them goes through an `ImageExtractor`: an ONNX model (run with
onnxruntime on the CPU) or a TorchScript model. The features are stored as the video-level
feature group ``image``. Decoding runs in a thread pool one batch ahead of the model, and
only two batches of images are held at a time.

Test-time views (``views``): the store holds features, not pixels, so the flips and crops of
test-time augmentation are taken at import. Each view in `VIEWS` is stored as its own group
(`view_group`: ``image_flip``, ``image_top_left``, ...) beside ``image``: ``flip`` is the
centre crop mirrored left to right, the four corner views crop ``(H, W)`` from the image
resized to cover ``8/7`` of it (256 pixels for a 224 input, as in ten-crop evaluation). A
network trains on ``image``; `webly.ensemble.tta.tta_scores` (``stored_views``) averages its
predictions over the stored views.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from PIL import Image

from webly.core import Task
from webly.data.store import Batch, Dataset, DatasetWriter, Dtype, FeatureSpec, Layout
from webly.data.tables import read_class_names
from webly.errors import ConfigError, DataError, WeblyWarning

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
FEATURE_GROUP = "image"
DEFAULT_IMAGE_SIZE = 224
CENTRE = "centre"
VIEWS = ("flip", "top_left", "top_right", "bottom_left", "bottom_right")
CORNER_ZOOM = 8 / 7

_ONNX_SUFFIXES = (".onnx",)
_TORCHSCRIPT_SUFFIXES = (".pt", ".ts")
_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
_CSV_COLUMNS = ("path", "label", "group", "text")


# --------------------------------------------------------------------------- extractors


@runtime_checkable
class ImageExtractor(Protocol):
    """Maps a batch of preprocessed images to feature vectors.

    ``input_size`` is the ``(H, W)`` the images are cropped to; ``dim`` the feature length.
    ``extractor(batch)`` takes ``(B, 3, H, W)`` float32 and returns ``(B, dim)`` float32.
    """

    input_size: tuple[int, int]
    dim: int

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def _pair(size: int | tuple[int, int] | None) -> tuple[int, int]:
    """``(H, W)`` from a side, a pair, or None (`DEFAULT_IMAGE_SIZE`)."""
    if size is None:
        return (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _load_failed(path: Path, kind: str, err: Exception, fix: str) -> DataError:
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    return DataError(f"{path}: cannot load it as a {kind} model ({first}); {fix}")


def _probe_dim(path: Path, run: Callable[[np.ndarray], np.ndarray], size: tuple[int, int]) -> int:
    """The feature length, found by running the model on one blank image."""
    try:
        out = run(np.zeros((1, 3, *size), dtype=np.float32))
    except Exception as err:  # any runtime's failure on a wrong input; named, with the fix
        text = str(err).strip().splitlines()
        raise DataError(
            f"{path}: the model fails on a (1, 3, {size[0]}, {size[1]}) input "
            f"({text[0] if text else type(err).__name__}); check --image-size"
        ) from None
    return int(out.shape[1])


class OnnxExtractor:
    """An ONNX image model run by onnxruntime on the CPU.

    The model takes ``(B, 3, H, W)`` images as its first input and returns features as its
    first output (any trailing shape, flattened to ``(B, dim)``). ``H, W`` are read from the
    model when static, else taken from ``image_size``; a static batch size is honoured by
    running the batch in pieces of that size.
    """

    def __init__(self, path: str | Path, image_size: int | tuple[int, int] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        try:
            self._session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own classes for every kind of failure
            raise _load_failed(self.path, "ONNX", err, "export a valid .onnx file") from None
        first = self._session.get_inputs()[0]
        if len(first.shape) != 4 or first.type not in _ONNX_DTYPES:
            raise DataError(
                f"{self.path}: the model's input {first.name!r} is {first.type} {first.shape}; "
                "webly feeds float (B, 3, H, W) images, re-export it with such an input"
            )
        self._input, self._dtype = first.name, _ONNX_DTYPES[first.type]
        batch, _, height, width = first.shape
        static = isinstance(height, int) and isinstance(width, int)
        self.input_size = (height, width) if static else _pair(image_size)
        self._batch = batch if isinstance(batch, int) and batch > 0 else None
        self.dim = _probe_dim(self.path, self, self.input_size)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(B, 3, H, W)`` float32 images -> ``(B, dim)`` float32 features."""
        n = batch.shape[0]
        step = self._batch or n
        pieces = []
        for start in range(0, n, step):
            piece = batch[start : start + step].astype(self._dtype)
            short = step - piece.shape[0]
            if short:
                piece = np.concatenate([piece, np.zeros((short, *piece.shape[1:]), self._dtype)])
            out = self._session.run(None, {self._input: piece})[0]
            pieces.append(np.asarray(out).reshape(step, -1)[: step - short])
        return np.concatenate(pieces).astype(np.float32, copy=False)


class TorchScriptExtractor:
    """A TorchScript image model (``torch.jit.save`` d), run on the CPU in inference mode.

    TorchScript records no input size, so images are cropped to ``image_size``; the output
    (any trailing shape) is flattened to ``(B, dim)``.
    """

    def __init__(self, path: str | Path, image_size: int | tuple[int, int] | None = None) -> None:
        import torch

        self.path = Path(path)
        try:
            self._module = torch.jit.load(str(self.path), map_location="cpu").eval()
        except Exception as err:  # torch raises RuntimeError, ValueError or pickle errors
            raise _load_failed(
                self.path, "TorchScript", err, "save it with torch.jit.save(torch.jit.trace(...))"
            ) from None
        self.input_size = _pair(image_size)
        self.dim = _probe_dim(self.path, self, self.input_size)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(B, 3, H, W)`` float32 images -> ``(B, dim)`` float32 features."""
        import torch

        with torch.inference_mode():
            out = self._module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        if not isinstance(out, torch.Tensor):
            raise DataError(
                f"{self.path}: the model returns {type(out).__name__}, not a tensor; make it "
                "return the (B, dim) features only"
            )
        return out.reshape(batch.shape[0], -1).float().numpy()


def load_extractor(
    path: str | Path, image_size: int | tuple[int, int] | None = None
) -> ImageExtractor:
    """Load an image model by suffix: ``.onnx`` (onnxruntime) or ``.pt``/``.ts`` (TorchScript).

    Parameters
    ----------
    path
        The model file.
    image_size
        Input ``H`` (= ``W``) or ``(H, W)`` where the model does not fix it (TorchScript
        always, ONNX with dynamic spatial axes); None: 224.

    Returns
    -------
    ImageExtractor
        The loaded model; its ``dim`` is found by running it on one blank image.
    """
    path = Path(path)
    if not path.is_file():
        hint = "it is a folder" if path.is_dir() else "it does not exist"
        raise DataError(f"{path}: cannot read the model ({hint}); check --extractor")
    suffix = path.suffix.lower()
    if suffix in _ONNX_SUFFIXES:
        return OnnxExtractor(path, image_size)
    if suffix in _TORCHSCRIPT_SUFFIXES:
        return TorchScriptExtractor(path, image_size)
    raise DataError(
        f"{path}: unknown model format {path.suffix!r}; give an ONNX (.onnx) or TorchScript "
        "(.pt, .ts) file"
    )


# --------------------------------------------------------------------------- preprocessing


def view_group(view: str, group: str = FEATURE_GROUP) -> str:
    """The feature group a test-time view of ``group`` is stored in (``image_flip``, ...)."""
    return f"{group}_{view}"


def check_views(views: Sequence[str]) -> tuple[str, ...]:
    """``views`` as a tuple; `ConfigError` naming an unknown or repeated view."""
    for view in views:
        if view not in VIEWS:
            raise ConfigError(f"views: {view!r} is unknown; choose from {', '.join(VIEWS)}")
    if len(set(views)) != len(views):
        raise ConfigError(f"views: {', '.join(views)} names a view twice; give each once")
    return tuple(views)


def preprocess(
    image: Image.Image,
    size: tuple[int, int],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    views: Sequence[str] = (CENTRE,),
) -> np.ndarray:
    """Crops of ``image`` of ``size`` = ``(H, W)``, normalised, one per view.

    ``centre``: resized to cover ``(H, W)`` and centre-cropped; ``flip``: that crop mirrored
    left to right; ``top_left`` ... ``bottom_right``: that corner of the image resized to cover
    `CORNER_ZOOM` times ``(H, W)``. Returns ``(len(views), 3, H, W)`` float32:
    ``(rgb / 255 - mean) / std`` per channel.
    """
    height, width = size
    rgb = image.convert("RGB")
    centre = _crop(_cover(rgb, height, width), height, width, 0.5, 0.5)
    zoomed = None
    crops = []
    for view in views:
        if view == CENTRE:
            crops.append(centre)
        elif view == "flip":
            crops.append(centre[:, ::-1])
        else:
            if zoomed is None:
                zoomed = _cover(rgb, round(height * CORNER_ZOOM), round(width * CORNER_ZOOM))
            vertical, horizontal = view.split("_")
            top, left = float(vertical == "bottom"), float(horizontal == "right")
            crops.append(_crop(zoomed, height, width, top, left))
    pixels = np.stack(crops).astype(np.float32)  # (V, H, W, 3)
    scaled = (pixels / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2), dtype=np.float32)  # (V, 3, H, W)


def _cover(rgb: Image.Image, height: int, width: int) -> Image.Image:
    """``rgb`` resized (bilinear, aspect kept) to the smallest size covering ``(height, width)``."""
    scale = max(height / rgb.height, width / rgb.width)
    size = (max(width, round(rgb.width * scale)), max(height, round(rgb.height * scale)))
    return rgb if size == rgb.size else rgb.resize(size, Image.Resampling.BILINEAR)


def _crop(rgb: Image.Image, height: int, width: int, top: float, left: float) -> np.ndarray:
    """The ``(height, width, 3)`` uint8 window of ``rgb`` at fractions ``top``/``left`` of the
    free room (0: the first rows/columns, 0.5: centred, 1: the last)."""
    y, x = int((rgb.height - height) * top), int((rgb.width - width) * left)
    return np.asarray(rgb.crop((x, y, x + width, y + height)))


def load_image(
    path: str | Path,
    size: tuple[int, int],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    views: Sequence[str] = (CENTRE,),
) -> np.ndarray:
    """Decode the image file at ``path`` and `preprocess` it: ``(len(views), 3, H, W)`` float32.

    JPEGs are decoded at a reduced scale when they are much larger than ``size`` (Pillow's
    ``draft``), which is several times faster and keeps at least the covering resolution.
    Raises `DataError` naming the file if it is missing or cannot be decoded.
    """
    path = Path(path)
    zoom = CORNER_ZOOM if any(v not in (CENTRE, "flip") for v in views) else 1.0
    try:
        with Image.open(path) as image:
            scale = zoom * max(size[0] / image.height, size[1] / image.width)
            image.draft("RGB", (round(image.width * scale), round(image.height * scale)))
            return preprocess(image, size, mean, std, views)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        text = str(err).strip().splitlines()
        raise DataError(
            f"{path}: cannot read the image ({text[0] if text else type(err).__name__}); "
            "replace or remove it, or pass --skip-bad"
        ) from None


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Item:
    """One image to import: its file, row id, class ids and optional group and text."""

    file: Path
    id: str
    labels: list[int]
    group: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class _Source:
    """Where the images come from: the classes, which optional columns exist, and the items."""

    class_names: tuple[str, ...]
    has_group: bool
    has_text: bool
    items: Iterator[_Item]


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden ones skipped), sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _folder_source(root: Path, classes: tuple[str, ...] | None) -> _Source:
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DataError(
            f"{root}: no class folders; lay images out as {root}/<class name>/<image>.jpg"
        )
    names = classes if classes is not None else tuple(found)
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataError(
            f"{root}: folder {unknown[0]!r} is not in the class list ({len(names)} classes); "
            "add it to the classes file or remove the folder"
        )

    def items() -> Iterator[_Item]:
        for k, name in enumerate(names):
            folder = root / name
            for file in _image_files(folder) if folder.is_dir() else []:
                yield _Item(file, file.relative_to(root).as_posix(), [k])

    return _Source(names, False, False, items())


def _csv_rows(path: Path, columns: Sequence[str]) -> Iterator[dict[str, str | None]]:
    """The rows of ``columns`` of the CSV, as text, streamed block by block."""
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(columns, pa.string()), include_columns=list(columns)
    )
    try:
        for record in pacsv.open_csv(path, convert_options=convert):
            yield from record.to_pylist()
    except (pa.ArrowException, OSError) as err:
        text = str(err).strip().splitlines()
        raise DataError(
            f"{path}: unreadable CSV ({text[0] if text else type(err).__name__}); "
            "check that the file is complete and valid"
        ) from None


def _split_labels(cell: str | None, sep: str | None) -> list[str]:
    tokens = (cell or "").split(sep) if sep else [cell or ""]
    return [t.strip() for t in tokens if t.strip()]


def _csv_source(
    path: Path, classes: tuple[str, ...] | None, label_sep: str | None, task: Task
) -> _Source:
    try:
        header = pacsv.open_csv(path).schema.names
    except (pa.ArrowException, OSError) as err:
        text = str(err).strip().splitlines()
        raise DataError(
            f"{path}: unreadable CSV ({text[0] if text else type(err).__name__}); it needs a "
            "header row path,label[,group][,text]"
        ) from None
    for required in ("path", "label"):
        if required not in header:
            raise DataError(
                f"{path}: no {required!r} column; available: {', '.join(header)}; the CSV "
                "needs columns path,label[,group][,text]"
            )
    columns = [c for c in _CSV_COLUMNS if c in header]
    if classes is None:
        found: set[str] = set()
        for row in _csv_rows(path, ["label"]):
            found.update(_split_labels(row["label"], label_sep))
        if not found:
            raise DataError(f"{path}: the 'label' column is empty; give every image a label")
        classes = tuple(sorted(found))
    lookup = {name: k for k, name in enumerate(classes)}

    def items() -> Iterator[_Item]:
        for number, row in enumerate(_csv_rows(path, columns)):
            where = f"{path}: row {number} ({row['path']!r})"
            if not row["path"]:
                raise DataError(f"{where}: the path is empty; give every row an image path")
            tokens = _split_labels(row["label"], label_sep)
            unknown = [t for t in tokens if t not in lookup]
            if unknown:
                raise DataError(
                    f"{where}: label {unknown[0]!r} is not in the class list ({len(lookup)} "
                    "classes); add it to the classes file or fix the row"
                )
            if not task.multilabel and len(tokens) != 1:
                raise DataError(
                    f"{where}: {len(tokens)} labels but the task is multiclass (exactly one a "
                    "row); fix the row, or pass --label-sep and --task multilabel"
                )
            file = Path(row["path"])
            yield _Item(
                file if file.is_absolute() else path.parent / file,
                row["path"],
                [lookup[t] for t in tokens],
                row.get("group") or "",
                row.get("text") or "",
            )

    return _Source(classes, "group" in header, "text" in header, items())


def _open_source(
    src: Path, classes: tuple[str, ...] | None, label_sep: str | None, task: Task
) -> _Source:
    if src.is_dir():
        return _folder_source(src, classes)
    if src.is_file() and src.suffix.lower() == ".csv":
        return _csv_source(src, classes, label_sep, task)
    if src.is_file():
        raise DataError(
            f"{src}: not a folder or a .csv; give DIR/<class name>/*.jpg or a CSV of "
            "path,label[,group][,text]"
        )
    raise DataError(f"{src}: does not exist; check the image folder or CSV path")


# --------------------------------------------------------------------------- import


def import_images(
    src: str | Path,
    out: str | Path,
    *,
    extractor: str | Path | ImageExtractor,
    image_size: int | tuple[int, int] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    dtype: Dtype = "float16",
    classes: str | Path | Sequence[str] | None = None,
    label_sep: str | None = None,
    task: Task = Task.MULTICLASS,
    batch_size: int = 64,
    workers: int = 4,
    skip_bad: bool = False,
    views: Sequence[str] = (),
    overwrite: bool = False,
) -> Dataset:
    """Import images as the features of an image model into a new dataset folder ``out``.

    Parameters
    ----------
    src
        A class-per-folder tree ``DIR/<class name>/...`` (images found recursively; class ids
        follow the sorted folder names; row ids are the paths relative to ``DIR``), or a CSV
        with a header and columns ``path,label[,group][,text]`` (paths relative to the CSV's
        folder; the row id is the path as written; ``group``, e.g. the product id of several
        images, and ``text`` are stored in the dataset's group and text columns).
    out
        Dataset folder to create; nothing is left there if the import fails.
    extractor
        The image model: an ``.onnx`` or TorchScript ``.pt``/``.ts`` file (see
        `load_extractor`), or any `ImageExtractor` object.
    image_size
        Input ``H`` (= ``W``) or ``(H, W)`` for models that do not fix it (all TorchScript
        models; ONNX models with dynamic spatial axes); None: 224. A static ONNX input size
        always wins. Ignored for an `ImageExtractor` object.
    mean, std
        Per-channel normalisation of the [0, 1] RGB pixels (default: ImageNet's).
    dtype
        Stored dtype of the features: ``float16`` (default), ``float32`` or ``uint8``.
    classes
        The class names in id order: a text file with one name a line, or a sequence. Default:
        the sorted folder names, or the sorted set of CSV labels. Every folder / CSV label must
        be in it.
    label_sep
        Separator of several labels in one CSV label cell (with ``task="multilabel"``).
    task
        ``multiclass`` (default; exactly one label an image) or ``multilabel``.
    batch_size
        Images decoded and run through the model at a time.
    workers
        Threads that decode images (Pillow releases the GIL while decoding and resizing).
    skip_bad
        Skip unreadable or corrupt images (with one `WeblyWarning` giving their number)
        instead of failing on the first one.
    views
        Test-time views to store beside ``image``, each in its group `view_group` (module
        docstring): any of `VIEWS`. Each costs one more pass of the model over every image.
    overwrite
        Replace ``out`` if it exists.

    Returns
    -------
    Dataset
        The new dataset, with the ``(n_samples, dim)`` feature group ``image`` (and one such
        group a view).
    """
    src, out = Path(src), Path(out)
    views = check_views(views)
    crops = (CENTRE, *views)
    groups = (FEATURE_GROUP, *(view_group(v) for v in views))
    names = read_class_names(classes) if classes is not None else None
    source = _open_source(src, names, label_sep, Task.parse(task))
    first = next(source.items, None)
    if first is None:
        raise DataError(
            f"{src}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); check "
            "the path"
        )
    model = (
        extractor
        if isinstance(extractor, ImageExtractor)
        else load_extractor(extractor, image_size)
    )
    layout = Layout(
        tuple(FeatureSpec(group, model.dim, dtype) for group in groups),
        len(source.class_names),
        task,
        class_names=source.class_names,
        has_group=source.has_group,
        has_text=source.has_text,
    )
    provenance = {"input": str(src), "importer": "images", "extractor": str(extractor)}
    skipped: list[DataError] = []

    def load(item: _Item) -> np.ndarray | DataError:
        try:
            return load_image(item.file, model.input_size, mean, std, crops)
        except DataError as err:
            if not skip_bad:
                raise
            return err

    def write(items: list[_Item], futures: list[Future[np.ndarray | DataError]]) -> None:
        kept = []
        for item, future in zip(items, futures, strict=True):
            image = future.result()
            if isinstance(image, DataError):
                skipped.append(image)
            else:
                kept.append((item, image))
        if not kept:
            return
        batch = np.concatenate([image for _, image in kept])  # (B * V, 3, H, W)
        features = np.asarray(model(batch))  # (B * V, dim)
        if features.shape != (len(batch), model.dim):
            raise DataError(
                f"{provenance['extractor']}: the model returned shape {features.shape} for "
                f"{len(batch)} images; it must return (B, {model.dim})"
            )
        features = features.reshape(len(kept), len(crops), model.dim)  # (B, V, dim)
        rows = [item for item, _ in kept]
        writer.write_batch(
            Batch(
                ids=[item.id for item in rows],
                labels=[item.labels for item in rows],
                features={group: features[:, v] for v, group in enumerate(groups)},
                groups=[item.group or "" for item in rows] if source.has_group else None,
                texts=[item.text or "" for item in rows] if source.has_text else None,
            ),
            source=str(src),
        )

    items = chain([first], source.items)
    with (
        ThreadPoolExecutor(max(1, workers)) as pool,
        DatasetWriter(
            out,
            layout,
            overwrite=overwrite,
            source=provenance,
            inputs=[p for p in (src, extractor, classes) if isinstance(p, str | Path)],
        ) as writer,
    ):
        pending: tuple[list[_Item], list[Future[np.ndarray | DataError]]] | None = None
        while chunk := list(islice(items, batch_size)):
            futures = [pool.submit(load, item) for item in chunk]  # decode one batch ahead
            if pending is not None:
                write(*pending)
            pending = (chunk, futures)
        if pending is not None:
            write(*pending)
        if skipped:
            warnings.warn(
                f"{src}: skipped {len(skipped)} unreadable images (first: {skipped[0]})",
                WeblyWarning,
                stacklevel=2,
            )
        return writer.commit()
