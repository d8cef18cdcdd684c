"""An HTTP prediction service over an exported model (FastAPI + uvicorn).

Endpoints (the OpenAPI schema is at ``/openapi.json``, browsable at ``/docs``):

- ``POST /predict``: a JSON object with either ``features`` or ``records``, and ``top_k``
  (default 20):

  - ``features``: feature group -> rows, ``(B, dim)`` for a video-level model or ``(B, n_frames,
    dim)`` for a frame-level one (rows may have different numbers of frames), every group the
    model reads (``GET /model``), values as stored: integer codes 0..255 for uint8 groups,
    numbers for the others; optional ``ids``, one per row;
  - ``records``: serialized YouTube-8M ``tf.train.Example`` or ``SequenceExample`` protos, base64
    encoded, read as `webly.compress.inputs.parse_record` reads TFRecord files (``names``:
    ``2018`` or ``2017`` field names).

  The answer is ``{"predictions": [{"id", "classes", "names", "scores"}, ...]}``, each row's top
  classes best first.
- ``GET /health``: ``{"status": "ok", "batches": ..., "rows": ...}`` (model calls and rows so far).
- ``GET /model``: the export's ``model.json`` (classes, feature groups, preprocessing, metrics)
  and the service's limits.

A body over ``max_request_bytes`` or with more than ``max_rows`` rows is refused with 413,
invalid input with 422 and a one-line ``detail`` naming the problem. Concurrent requests are
micro-batched: the first waiting request is joined by those arriving within ``max_wait_ms``, up
to ``max_batch`` rows, and ONNX Runtime runs them as one batch off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import socket
import warnings
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webly.compress.export import ExportedModel
from webly.compress.inputs import RowBatch, parse_record, stack_rows
from webly.data.store import FeatureSpec
from webly.errors import ConfigError, DataError
from webly.metrics.ranking import select_top_k


@dataclass(frozen=True)
class Limits:
    """What one request may hold and how requests are batched.

    ``max_request_bytes``: largest body; ``max_rows``: most rows a request; ``max_batch``: rows
    a model call collects from waiting requests; ``max_wait_ms``: how long the first waiting
    request waits for company.
    """

    max_request_bytes: int = 16 << 20
    max_rows: int = 1024
    max_batch: int = 64
    max_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        for key in ("max_request_bytes", "max_rows", "max_batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"service {key} is {getattr(self, key)}; it must be >= 1")
        if self.max_wait_ms < 0:
            raise ConfigError(f"service max_wait_ms is {self.max_wait_ms}; it must be >= 0")


class PredictRequest(BaseModel):
    """Rows to predict: ``features`` (with optional ``ids``) or base64 ``records``."""

    model_config = ConfigDict(extra="forbid")

    features: dict[str, list[Any]] | None = Field(
        None, description="feature group -> rows (B, dim), or (B, n_frames, dim) at frame level"
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
            merged = _merge([job.batch for job in jobs], self.model.features)
            try:
                probs = await loop.run_in_executor(
                    None, self.model.predict, merged.groups, merged.lengths
                )
            except Exception as err:  # every request of the batch gets the error
                for job in jobs:
                    if not job.done.done():  # its client may have gone
                        job.done.set_exception(err)
                continue
            self.batches, self.rows = self.batches + 1, self.rows + size
            start = 0
            for job in jobs:
                stop = start + len(job.batch.ids)
                if not job.done.done():
                    job.done.set_result(probs[start:stop])
                start = stop


def _merge(batches: Sequence[RowBatch], features: Sequence[FeatureSpec]) -> RowBatch:
    """Requests' rows as one batch, frames zero-padded to the longest."""
    ids = [row_id for batch in batches for row_id in batch.ids]
    if batches[0].lengths is None:
        groups = {
            spec.name: np.concatenate([b.groups[spec.name] for b in batches]) for spec in features
        }
        return RowBatch(ids, groups, None)
    lengths = np.concatenate([b.lengths for b in batches if b.lengths is not None])
    n_frames = max(b.groups[features[0].name].shape[1] for b in batches)
    groups = {}
    for spec in features:
        padded = np.zeros((len(ids), n_frames, spec.dim), dtype=spec.dtype)
        start = 0
        for b in batches:
            values = b.groups[spec.name]
            padded[start : start + len(values), : values.shape[1]] = values
            start += len(values)
        groups[spec.name] = padded
    return RowBatch(ids, groups, lengths)


def request_rows(model: ExportedModel, request: PredictRequest) -> RowBatch:
    """The rows of a request as a checked batch; a `DataError` says what is wrong."""
    if (request.features is None) == (request.records is None):
        raise DataError("give either features (with optional ids) or records, not both or none")
    if request.records is not None:
        rows, ids = [], []
        for i, text in enumerate(request.records):
            try:
                payload = base64.b64decode(text, validate=True)
            except binascii.Error:
                raise DataError(
                    f"records[{i}] is not base64; encode the serialized proto"
                ) from None
            row_id, row = parse_record(
                payload, model.features, model.level, request.names, f"records[{i}]"
            )
            ids.append(row_id)
            rows.append(row)
        batch = stack_rows(ids, rows, model.features, model.level) if rows else None
    else:
        batch = _feature_rows(model, request.features or {}, request.ids)
    if batch is None:
        raise DataError("the request holds no rows; send at least one")
    model.feeds(batch.groups, batch.lengths)  # widths and dtypes
    return batch


def _feature_rows(
    model: ExportedModel, features: dict[str, list[Any]], ids: list[str] | None
) -> RowBatch | None:
    known = [spec.name for spec in model.features]
    unknown = sorted(set(features) - set(known))
    if unknown:
        raise DataError(f"unknown feature group {unknown[0]!r}; the model reads {known}")
    n_rows = {len(features.get(name, [])) for name in known}
    if len(n_rows) > 1:
        raise DataError(f"feature groups hold {sorted(n_rows)} rows; give each the same rows")
    count = n_rows.pop()
    if ids is not None and len(ids) != count:
        raise DataError(f"{len(ids)} ids for {count} rows; give one id per row")
    if count == 0:
        return None
    per_row: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    for spec in model.features:
        if spec.name not in features:
            raise DataError(f"feature group {spec.name!r} is missing; the model reads {known}")
        for i, values in enumerate(features[spec.name]):
            per_row[i][spec.name] = _values(spec, values, model.level, i)
    row_ids = ids if ids is not None else [str(i) for i in range(count)]
    return stack_rows(row_ids, per_row, model.features, model.level)


def _values(spec: FeatureSpec, values: Any, level: str, row: int) -> np.ndarray:
    """One row of a group from JSON: ``(dim,)`` or ``(n_frames, dim)`` in the stored dtype."""
    rank, shape = (2, "(n_frames, dim)") if level == "frame" else (1, "(dim,)")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.empty(0)
    if array.ndim != rank or array.shape[-1] != spec.dim:
        got = array.shape if array.size else "not an array of numbers"
        raise DataError(
            f"feature group {spec.name!r} row {row}: expected {shape} with dim {spec.dim}, "
            f"got {got}"
        )
    if spec.dtype != "uint8":
        return array.astype(spec.dtype)
    if not np.all((array >= 0) & (array <= 255) & (array == np.round(array))):
        raise DataError(
            f"feature group {spec.name!r} row {row}: stored as uint8, give integer codes 0..255"
        )
    return array.astype(np.uint8)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before the app sees it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
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
    limits = limits or Limits()
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
        description=f"{model.info['network']['name']} ({model.level} level), exported by webly "
        f"{model.info['webly_version']}",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=limits.max_request_bytes)
    hidden = {"source", "files", "network"}
    summary = {k: v for k, v in model.info.items() if k not in hidden}
    summary |= {"model": model.info["network"]["name"], "limits": asdict(limits)}

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
            batch = request_rows(model, request)
        except DataError as err:
            raise HTTPException(422, str(err)) from None
        if len(batch.ids) > limits.max_rows:
            raise HTTPException(
                413, f"{len(batch.ids)} rows in one request; send at most {limits.max_rows}"
            )
        probs = await batcher.predict(batch)
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
