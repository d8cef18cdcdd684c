"""An HTTP prediction service over an exported model (FastAPI + uvicorn).

Endpoints (the OpenAPI schema is at ``/openapi.json``, browsable at ``/docs``):

- ``POST /predict``: a JSON object with either ``features`` or ``records``, and ``top_k``
  (default 20):

  - ``features``: feature group -> rows, every group the model reads (``GET /model``), each at
    its own level: ``(B, dim)`` for a video-level group, ``(B, n_frames, dim)`` for a
    frame-level one (rows may have different numbers of frames, a row the same number in each
    of its frame groups), so a model reading both (e.g. ``rgb`` frames and ``mean_rgb``) takes
    both shapes in one request; values as stored: integer codes 0..255 for uint8 groups,
    numbers for the others; optional ``ids``, one per row;
  - ``records``: serialized YouTube-8M ``tf.train.Example`` or ``SequenceExample`` protos, base64
    encoded, read as `webly.deploy.inputs.parse_record` reads TFRecord files (``names``:
    ``2018`` or ``2017`` field names).

  The answer is ``{"predictions": [{"id", "classes", "names", "scores"}, ...]}``, each row's top
  classes best first.
- ``GET /health``: ``{"status": "ok", "batches": ..., "rows": ...}`` (model calls and rows so far).
- ``GET /model``: the export's ``model.json`` (classes, feature groups, preprocessing, metrics)
  and the service's limits.

A body over ``max_request_bytes``, more than ``max_rows`` rows or a row of more than
``max_frames`` frames in a frame-level group (default: the ``max_frames`` the model trained
with, as ``model.json`` records it) is refused with 413; invalid input (a value that is not a
finite number of the group's dtype, NaN, Infinity, 1e308 for float32, true/false, a wrong shape,
frame groups of one row with different numbers of frames) with 422, each with a one-line
``detail`` naming the row and the feature group. Concurrent requests are micro-batched: the
first waiting request is joined by those arriving within ``max_wait_ms``, up to ``max_batch``
rows, and ONNX Runtime runs them off the event loop; a model with frame-level groups in calls of
at most ``max_batch_frames`` padded frames (rows of similar length together; its video-level
groups go along row by row). A model call that fails is retried request by request, so one
request never fails another.

Memory is bounded: bodies being read, parsed or predicted hold at most ``max_inflight_bytes``
together (others wait, unread), and a model call at most ``max_batch_frames`` frames (a model
with video-level groups only: the rows of the requests it joins).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import itertools
import socket
import warnings
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webly.core import select_top_k
from webly.data.store import FeatureSpec
from webly.deploy.exported import ExportedModel
from webly.deploy.inputs import RowBatch, parse_record, stack_rows
from webly.errors import ConfigError, DataError
from webly.train.loop import TrainConfig

DEFAULT_MAX_FRAMES = TrainConfig.max_frames
"""Frames a row when neither ``--max-frames`` nor ``model.json`` says (an export made before
``max_frames`` was recorded): TrainConfig's default."""


class RequestTooLarge(DataError):
    """A request over one of the service's size limits (413)."""


@dataclass(frozen=True)
class Limits:
    """What one request may hold and how requests are batched.

    ``max_request_bytes``: largest body; ``max_rows``: most rows a request; ``max_batch``: rows
    a model call collects from waiting requests; ``max_wait_ms``: how long the first waiting
    request waits for company. Frame-level groups: ``max_frames``, most frames a row (None:
    the model's training ``max_frames``, `resolve_limits`); ``max_batch_frames``, most padded
    frames (rows x longest row) a model call. ``max_inflight_bytes``: request bodies being read,
    parsed and predicted at once, in bytes (None: 4 x ``max_request_bytes``); a body of unknown
    length counts as ``max_request_bytes``.
    """

    max_request_bytes: int = 16 << 20
    max_rows: int = 1024
    max_batch: int = 64
    max_wait_ms: float = 2.0
    max_frames: int | None = None
    max_batch_frames: int = 8192
    max_inflight_bytes: int | None = None

    def __post_init__(self) -> None:
        for key in (
            "max_request_bytes", "max_rows", "max_batch", "max_frames", "max_batch_frames",
            "max_inflight_bytes",
        ):  # fmt: skip
            value = getattr(self, key)
            if value is not None and (type(value) is not int or value < 1):
                raise ConfigError(f"service {key} is {value!r}; it must be an integer >= 1")
        if not self.max_wait_ms >= 0:
            raise ConfigError(f"service max_wait_ms is {self.max_wait_ms}; it must be >= 0")
        if self.max_frames is not None and self.max_frames > self.max_batch_frames:
            raise ConfigError(
                f"service max_frames is {self.max_frames} but max_batch_frames is "
                f"{self.max_batch_frames}: a full row must fit a model call; raise "
                "--max-batch-frames or lower --max-frames"
            )
        if self.max_inflight_bytes is not None and self.max_inflight_bytes < self.max_request_bytes:
            raise ConfigError(
                f"service max_inflight_bytes is {self.max_inflight_bytes}, under "
                f"max_request_bytes {self.max_request_bytes}; the largest body must fit"
            )


def resolve_limits(model: ExportedModel, limits: Limits | None = None) -> Limits:
    """``limits`` (default `Limits`) with ``max_frames`` filled in from the export (its
    training ``max_frames``, else `DEFAULT_MAX_FRAMES`) and ``max_inflight_bytes``."""
    limits = limits or Limits()
    frames = limits.max_frames
    if frames is None:
        recorded = model.info.get("max_frames")
        frames = recorded if type(recorded) is int and recorded >= 1 else DEFAULT_MAX_FRAMES
    inflight = limits.max_inflight_bytes or 4 * limits.max_request_bytes
    return replace(
        limits,
        max_frames=frames,
        max_batch_frames=max(limits.max_batch_frames, frames),
        max_inflight_bytes=inflight,
    )


class PredictRequest(BaseModel):
    """Rows to predict: ``features`` (with optional ``ids``) or base64 ``records``."""

    model_config = ConfigDict(extra="forbid")

    features: dict[str, list[Any]] | None = Field(
        None,
        description="feature group -> rows: (B, dim) for a video-level group, (B, n_frames, dim) "
        "for a frame-level one",
    )
    ids: list[str] | None = Field(None, description="one id per row of features")
    records: list[str] | None = Field(
        None, description="base64 serialized tf.train.Example / SequenceExample protos"
    )
    names: Literal["2018", "2017"] = Field("2018", description="YouTube-8M field names")
    top_k: int = Field(20, ge=1, description="classes returned a row")


class Prediction(BaseModel):
    """One row's top classes, best first."""

    id: str | None
    classes: list[int]
    names: list[str]
    scores: list[float]


class PredictResponse(BaseModel):
    predictions: list[Prediction]


@dataclass
class _Job:
    batch: RowBatch
    done: asyncio.Future[np.ndarray]


_Part = list[tuple[int, np.ndarray]]
"""Rows of a model call: (job index, that job's row indices) pairs."""


@dataclass
class MicroBatcher:
    """Runs waiting requests through the model together; see the module docstring."""

    model: ExportedModel
    limits: Limits
    batches: int = 0
    rows: int = 0
    _queue: asyncio.Queue[_Job] = field(default_factory=asyncio.Queue)

    async def predict(self, batch: RowBatch) -> np.ndarray:
        """Probabilities ``(B, n_classes)`` of one request's rows."""
        done: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(batch, done))
        return await done

    async def run(self) -> None:
        """Serve the queue until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].batch.ids)
            deadline = loop.time() + self.limits.max_wait_ms / 1000
            while size < self.limits.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    jobs.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
                size += len(jobs[-1].batch.ids)
            await self._serve(jobs)

    async def _serve(self, jobs: list[_Job]) -> None:
        """Answer ``jobs``: their rows in model calls within the limits; a call that fails is
        retried job by job, so only the jobs that fail on their own get the error."""
        out = [np.empty((len(job.batch.ids), self.model.n_classes), np.float32) for job in jobs]
        failed: dict[int, BaseException] = {}
        for part in _plan(jobs, self.limits.max_batch_frames, self.model.features):
            try:
                self._fill(out, part, await self._call(jobs, part))
            except Exception as err:
                if len(part) == 1:
                    failed.setdefault(part[0][0], err)
                    continue
                for single in part:  # alone, so one request's failure stays its own
                    if single[0] in failed:
                        continue
                    try:
                        self._fill(out, [single], await self._call(jobs, [single]))
                    except Exception as alone:
                        failed[single[0]] = alone
        for j, job in enumerate(jobs):
            if job.done.done():  # its client has gone
                continue
            if j in failed:
                job.done.set_exception(failed[j])
            else:
                job.done.set_result(out[j])

    async def _call(self, jobs: list[_Job], part: _Part) -> np.ndarray:
        merged = _gather(jobs, part, self.model.features)
        probs = await asyncio.get_running_loop().run_in_executor(
            None, self.model.predict, merged.groups, merged.lengths
        )
        self.batches, self.rows = self.batches + 1, self.rows + len(merged.ids)
        return np.asarray(probs)

    @staticmethod
    def _fill(out: list[np.ndarray], part: _Part, probs: np.ndarray) -> None:
        start = 0
        for j, rows in part:
            out[j][rows] = probs[start : start + len(rows)]
            start += len(rows)


def _plan(jobs: Sequence[_Job], max_frames: int, features: Sequence[FeatureSpec]) -> list[_Part]:
    """The model calls answering ``jobs``: one call when every group of ``features`` is
    video-level; else rows sorted by length, longest first, in calls of at most ``max_frames``
    padded frames (rows x longest)."""
    if not any(spec.level == "frame" for spec in features):
        return [[(j, np.arange(len(job.batch.ids))) for j, job in enumerate(jobs)]]
    rows = sorted(
        (
            (int(n), j, r)
            for j, job in enumerate(jobs)
            for r, n in enumerate(np.asarray(job.batch.lengths))
        ),
        key=lambda row: -row[0],
    )
    calls: list[list[tuple[int, int]]] = []
    longest = 0
    for n, j, r in rows:
        if not calls or (len(calls[-1]) + 1) * max(longest, 1) > max_frames:
            calls.append([])
            longest = n
        calls[-1].append((j, r))
    parts = []
    for call in calls:
        by_job: dict[int, list[int]] = {}
        for j, r in call:
            by_job.setdefault(j, []).append(r)
        parts.append([(j, np.array(rs, dtype=np.int64)) for j, rs in sorted(by_job.items())])
    return parts


def _gather(jobs: Sequence[_Job], part: _Part, features: Sequence[FeatureSpec]) -> RowBatch:
    """The rows ``part`` names as one batch: video-level groups ``(B, dim)`` as they are,
    frame-level ones zero-padded to the longest of the rows."""
    ids = [jobs[j].batch.ids[r] for j, rows in part for r in rows]
    groups = {
        spec.name: np.concatenate([jobs[j].batch.groups[spec.name][rows] for j, rows in part])
        for spec in features
        if spec.level != "frame"
    }
    if not any(spec.level == "frame" for spec in features):
        return RowBatch(ids, groups, None)
    lengths = np.concatenate([jobs[j].batch.lengths[rows] for j, rows in part])  # type: ignore[index]
    n_frames = int(lengths.max()) if lengths.size else 0
    for spec in features:
        if spec.level != "frame":
            continue
        padded = np.zeros((len(ids), n_frames, spec.dim), dtype=spec.dtype)  # (B, T, D)
        start = 0
        for j, rows in part:
            values = jobs[j].batch.groups[spec.name]
            width = min(values.shape[1], n_frames)
            padded[start : start + len(rows), :width] = values[rows, :width]
            start += len(rows)
        groups[spec.name] = padded
    return RowBatch(ids, {spec.name: groups[spec.name] for spec in features}, lengths)


def request_rows(
    model: ExportedModel, request: PredictRequest, limits: Limits | None = None
) -> RowBatch:
    """The rows of a request as a checked batch; a `DataError` says what is wrong, a
    `RequestTooLarge` which limit (of `resolve_limits`) it is over."""
    limits = resolve_limits(model, limits)
    max_frames = int(limits.max_frames or DEFAULT_MAX_FRAMES)
    if (request.features is None) == (request.records is None):
        raise DataError("give either features (with optional ids) or records, not both or none")
    if request.records is not None:
        _check_rows(len(request.records), limits)
        rows, ids = [], []
        for i, text in enumerate(request.records):
            try:
                payload = base64.b64decode(text, validate=True)
            except binascii.Error:
                raise DataError(
                    f"records[{i}] is not base64; encode the serialized proto"
                ) from None
            row_id, row = parse_record(payload, model.features, request.names, f"records[{i}]")
            for spec in model.features:
                _check_numbers(spec, row[spec.name], f"records[{i}]", max_frames)
            ids.append(row_id)
            rows.append(row)
        batch = stack_rows(ids, rows, model.features) if rows else None
    else:
        batch = _feature_rows(model, request.features or {}, request.ids, limits, max_frames)
    if batch is None:
        raise DataError("the request holds no rows; send at least one")
    model.feeds(batch.groups, batch.lengths)  # widths and dtypes
    return batch


def _check_rows(count: int, limits: Limits) -> None:
    if count > limits.max_rows:
        raise RequestTooLarge(f"{count} rows in one request; send at most {limits.max_rows}")


def _feature_rows(
    model: ExportedModel,
    features: dict[str, list[Any]],
    ids: list[str] | None,
    limits: Limits,
    max_frames: int,
) -> RowBatch | None:
    known = [spec.name for spec in model.features]
    unknown = sorted(set(features) - set(known))
    if unknown:
        raise DataError(f"unknown feature group {unknown[0]!r}; the model reads {known}")
    n_rows = {len(features.get(name, [])) for name in known}
    if len(n_rows) > 1:
        raise DataError(f"feature groups hold {sorted(n_rows)} rows; give each the same rows")
    count = n_rows.pop()
    _check_rows(count, limits)
    if ids is not None and len(ids) != count:
        raise DataError(f"{len(ids)} ids for {count} rows; give one id per row")
    if count == 0:
        return None
    per_row: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    for spec in model.features:
        if spec.name not in features:
            raise DataError(f"feature group {spec.name!r} is missing; the model reads {known}")
        for i, values in enumerate(features[spec.name]):
            per_row[i][spec.name] = _values(spec, values, i, max_frames)
    frame_groups = [spec.name for spec in model.features if spec.level == "frame"]
    for i, row in enumerate(per_row):
        _check_frame_counts(row, frame_groups, i)
    row_ids = ids if ids is not None else [str(i) for i in range(count)]
    return stack_rows(row_ids, per_row, model.features)


def _check_frame_counts(row: dict[str, np.ndarray], frame_groups: Sequence[str], i: int) -> None:
    """Refuse row ``i`` unless its frame-level groups hold the same number of frames."""
    counts = {name: len(row[name]) for name in frame_groups}
    if len(set(counts.values())) > 1:
        said = ", ".join(f"{name!r} {n}" for name, n in counts.items())
        raise DataError(
            f"row {i}: the frame-level feature groups hold different numbers of frames ({said}); "
            "give every frame-level group of a row the same frames"
        )


def _values(
    spec: FeatureSpec, values: Any, row: int, max_frames: int = DEFAULT_MAX_FRAMES
) -> np.ndarray:
    """One row of a group from JSON: ``(dim,)`` for a video-level group, ``(n_frames, dim)``
    for a frame-level one, in the stored dtype."""
    rank, shape = (2, "(n_frames, dim)") if spec.level == "frame" else (1, "(dim,)")
    where = f"feature group {spec.name!r} row {row}"
    if rank == 2 and isinstance(values, list) and len(values) > max_frames:  # before any copy
        _check_frames(where, len(values), max_frames)
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        array = np.empty(0)
    if array.ndim != rank or array.shape[-1] != spec.dim:
        got = array.shape if array.size else "not an array of numbers"
        fix = ""
        if array.size and array.ndim in (1, 2) and array.ndim != rank:  # the other level's shape
            fix = f"; it is a {spec.level}-level group, give each row as {shape}"
        raise DataError(f"{where}: expected {shape} with dim {spec.dim}, got {got}{fix}")
    flat = itertools.chain.from_iterable(values) if rank == 2 else values
    odd = set(map(type, flat)) - {int, float}
    if odd:  # true/false (which numpy reads as 1/0) or numbers given as text
        kind = "true/false" if bool in odd else f"a {sorted(t.__name__ for t in odd)[0]}"
        raise DataError(f"{where}: holds {kind}; give numbers (JSON numbers, not {kind})")
    return _check_numbers(spec, array, where, max_frames)


def _check_frames(where: str, n_frames: int, max_frames: int) -> None:
    raise RequestTooLarge(
        f"{where}: {n_frames:,} frames, over the service's {max_frames:,} a row (the model's "
        "training max_frames, or --max-frames); send fewer frames"
    )


_LARGEST = {"float16": float(np.finfo(np.float16).max), "float32": float(np.finfo(np.float32).max)}


def _check_numbers(spec: FeatureSpec, array: np.ndarray, where: str, max_frames: int) -> np.ndarray:
    """``array`` of one row in the group's stored dtype, once its values fit it: finite, within
    the float range, integer codes 0..255 for uint8; a frame-level group at most
    ``max_frames`` frames."""
    if spec.level == "frame" and len(array) > max_frames:
        _check_frames(where, len(array), max_frames)
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        problem = "is not a finite number"
        if not bad.any() and spec.dtype in _LARGEST:
            bad = np.abs(array) > _LARGEST[spec.dtype]
            problem = f"overflows {spec.dtype} (largest {_LARGEST[spec.dtype]:.4g})"
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            place = f"frame {at[0]}, column {at[1]}" if array.ndim == 2 else f"column {at[0]}"
            raise DataError(
                f"{where}: {float(array[at])!r} at {place} {problem}; give finite "
                f"{spec.dtype} values"
            )
    if spec.dtype != "uint8":
        return array.astype(spec.dtype)
    if array.dtype == np.uint8:
        return array
    if not np.all((array >= 0) & (array <= 255) & (array == np.round(array))):
        raise DataError(f"{where}: stored as uint8, give integer codes 0..255")
    return array.astype(np.uint8)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before the app sees it, and
    the bodies being read and handled hold at most ``max_inflight`` bytes together (a request
    waits, unread, for room; one of unknown length counts as ``max_bytes``)."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_inflight: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_inflight = max(max_inflight or 4 * max_bytes, max_bytes)
        self.inflight = 0
        self._room: asyncio.Condition | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"")
        cost = self.max_bytes if chunked else int(declared)
        if cost == 0:
            await self._handle(scope, receive, send)
            return
        if self._room is None:
            self._room = asyncio.Condition()
        async with self._room:
            await self._room.wait_for(lambda: self.inflight + cost <= self.max_inflight)
            self.inflight += cost
        try:
            await self._handle(scope, receive, send)
        finally:
            async with self._room:
                self.inflight -= cost
                self._room.notify_all()

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body is over {self.max_bytes:,} bytes; send fewer rows a request"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


def create_app(model: ExportedModel, limits: Limits | None = None) -> FastAPI:
    """The FastAPI application serving ``model``; see the module docstring."""
    limits = resolve_limits(model, limits)
    options = model.options
    if options.tta or options.group_aggregation is not None:
        warnings.warn(
            f"{model.folder}/model.json asks for test-time views ({options.views}) or group "
            f"aggregation ({options.group_aggregation}); the service predicts each row once, as "
            "sent: use webly predict for those",
            stacklevel=2,
        )
    batcher = MicroBatcher(model, limits)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    app = FastAPI(
        title="webly prediction service",
        description=f"{model.name} ({model.level} level), exported by webly "
        f"{model.info['webly_version']}",
        lifespan=lifespan,
    )
    app.add_middleware(
        BodyLimit, max_bytes=limits.max_request_bytes, max_inflight=limits.max_inflight_bytes
    )
    hidden = {"source", "files", "network", "members", "combine"}
    summary = {k: v for k, v in model.info.items() if k not in hidden}
    summary |= {"model": model.name, "limits": asdict(limits)}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, and the model calls and rows served so far."""
        return {"status": "ok", "batches": batcher.batches, "rows": batcher.rows}

    @app.get("/model")
    async def describe() -> dict[str, Any]:
        """The exported model: classes, feature groups, preprocessing, metrics; the limits."""
        return summary

    @app.post("/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest) -> PredictResponse:
        """Each row's top ``top_k`` classes with names and scores."""
        try:
            batch = request_rows(model, request, limits)
        except RequestTooLarge as err:
            raise HTTPException(413, str(err)) from None
        except DataError as err:
            raise HTTPException(422, str(err)) from None
        try:
            probs = await batcher.predict(batch)
        except DataError as err:
            raise HTTPException(422, str(err)) from None
        except Exception as err:  # the model failed on this request's rows alone
            said = " ".join(str(err).split())[:300]
            raise HTTPException(
                500, f"the model failed on this request ({type(err).__name__}: {said})"
            ) from None
        classes, scores = select_top_k(probs, min(request.top_k, model.n_classes), sort=True)
        names = model.class_names
        has_ids = request.records is not None or request.ids is not None
        return PredictResponse(
            predictions=[
                Prediction(
                    id=row_id if has_ids else None,
                    classes=row_classes,
                    names=[names[c] for c in row_classes],
                    scores=row_scores,
                )
                for row_id, row_classes, row_scores in zip(
                    batch.ids, classes.tolist(), scores.tolist(), strict=True
                )
            ]
        )

    return app


def open_socket(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A TCP socket bound to ``host:port`` for `serve` (IPv6 when ``host`` holds a colon).

    A port in use, or an address that cannot be bound, is a one-line `ConfigError` (uvicorn
    itself would log a traceback-free line and exit 1 only once the model is loaded).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on connections
    # whose socket says TCP, and with Nagle on every response waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use; pass another --port or stop the program "
                "listening there"
            ) from None
        raise ConfigError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); pass another --host or --port"
        ) from None
    return sock


def serve(
    model: ExportedModel,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``model`` over HTTP until interrupted, on ``sock`` (from `open_socket`) or on a
    socket bound to ``host:port`` here."""
    import uvicorn

    sock = sock if sock is not None else open_socket(host, port)
    config = uvicorn.Config(create_app(model, limits), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
