"""The HTTP service, with real requests to a server started on loopback: predictions equal the
model's, malformed, invalid, oversized and concurrent requests, the console script, a port in
use."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn

from tests.compress.conftest import save_model
from tests.compress.test_commands import assert_user_error, webly
from webly.compress import ExportedModel, export_onnx
from webly.compress.serve import Limits, create_app, open_socket
from webly.data import Dataset
from webly.data import tfrecord as tr
from webly.errors import ConfigError
from webly.metrics.ranking import select_top_k


class Server:
    """``create_app(model, limits)`` served by uvicorn in a thread on a free loopback port."""

    def __init__(self, model: ExportedModel, limits: Limits) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(create_app(model, limits), log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]})

    def __enter__(self) -> Server:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join()
        self.socket.close()


def call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple:
    """``(status, decoded JSON)`` of a GET (no body) or POST to ``url``."""
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post(url: str, payload: dict[str, Any]) -> tuple:
    body = json.dumps(payload).encode()
    return call(f"{url}/predict", body, {"Content-Type": "application/json"})


def expected(model: ExportedModel, groups: dict[str, np.ndarray], lengths: Any, k: int) -> tuple:
    classes, scores = select_top_k(model.predict(groups, lengths), k, sort=True)
    return classes.tolist(), scores


@pytest.fixture
def video_server(tmp_path: Path, small_store: Dataset) -> Iterator[tuple[Server, ExportedModel]]:
    source = save_model(tmp_path / "net", "mlp", small_store.layout, ("rgb", "audio"))
    model = export_onnx(source, tmp_path / "export", layout=small_store.layout)
    limits = Limits(max_request_bytes=200_000, max_rows=50, max_batch=64, max_wait_ms=30)
    with Server(model, limits) as server:
        yield server, model


def test_health_model_and_openapi(video_server: tuple[Server, ExportedModel]) -> None:
    server, model = video_server
    assert call(f"{server.url}/health") == (200, {"status": "ok", "batches": 0, "rows": 0})
    status, info = call(f"{server.url}/model")
    assert status == 200 and info["model"] == "mlp" and info["n_classes"] == 20
    assert info["features"] == model.info["features"] and info["limits"]["max_rows"] == 50
    assert "files" not in info and "source" not in info
    status, schema = call(f"{server.url}/openapi.json")
    assert status == 200 and "/predict" in schema["paths"]
    assert "PredictRequest" in schema["components"]["schemas"]


def test_features_and_records_predict_as_the_model(
    video_server: tuple[Server, ExportedModel], small_store: Dataset
) -> None:
    server, model = video_server
    rows = np.arange(5)
    rgb = small_store.layout.feature("rgb").encode(small_store.features(rows, ("rgb",)))
    audio = small_store.features(rows, ("audio",))
    status, answer = post(server.url, {"features": {"rgb": rgb.tolist(), "audio": audio.tolist()},
                                       "ids": list("abcde"), "top_k": 3})  # fmt: skip
    assert status == 200
    classes, scores = expected(model, {"rgb": rgb, "audio": audio}, None, 3)
    predictions = answer["predictions"]
    assert [p["id"] for p in predictions] == list("abcde")
    assert [p["classes"] for p in predictions] == classes
    np.testing.assert_allclose([p["scores"] for p in predictions], scores, rtol=1e-6)
    assert predictions[0]["names"] == [model.class_names[c] for c in classes[0]]
    record = tr.encode_example(
        {"id": [b"vid-1"], "mean_rgb": small_store.features([0], ("rgb",))[0],
         "mean_audio": audio[0]}
    )  # fmt: skip
    status, answer = post(server.url, {"records": [base64.b64encode(record).decode()]})
    assert status == 200 and answer["predictions"][0]["id"] == "vid-1"
    assert answer["predictions"][0]["classes"][:3] == classes[0]
    assert len(answer["predictions"][0]["classes"]) == 20


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ({"features": {"rgb": [[1] * 16], "audio": [[0.5] * 3]}}, 422, "'audio' row 0: expected"),
        ({"features": {"rgb": [[300] * 16], "audio": [[0.5] * 4]}}, 422, "integer codes 0..255"),
        ({"features": {"rgb": [[1] * 16], "audio": [[0.5] * 4], "x": [[1]]}}, 422, "unknown"),
        ({"features": {"rgb": [[1] * 16]}}, 422, "feature groups hold [0, 1] rows"),
        ({"features": {"rgb": [["a"] * 16], "audio": [[1] * 4]}}, 422, "not an array of numbers"),
        ({"records": ["%%%"]}, 422, "records[0] is not base64"),
        ({"records": [base64.b64encode(b"\xff\x01").decode()]}, 422, "records[0]"),
        ({}, 422, "give either features"),
        ({"features": {}, "top_k": 0}, 422, "top_k"),
        ({"features": {"rgb": [[1] * 16] * 51, "audio": [[0.5] * 4] * 51}}, 413, "at most 50"),
    ],
)
def test_invalid_requests_get_4xx(
    video_server: tuple[Server, ExportedModel], payload: dict[str, Any], status: int, needle: str
) -> None:
    server, _ = video_server
    got, answer = post(server.url, payload)
    assert got == status and needle in json.dumps(answer["detail"])


def test_malformed_and_oversized_bodies(video_server: tuple[Server, ExportedModel]) -> None:
    server, _ = video_server
    headers = {"Content-Type": "application/json"}
    status, answer = call(f"{server.url}/predict", b'{"features": [1, 2', headers)
    assert status == 422 and "json" in json.dumps(answer).lower()
    big = json.dumps({"features": {"rgb": [[1] * 16] * 10_000}}).encode()
    status, answer = call(f"{server.url}/predict", big, headers)
    assert status == 413 and "over 200,000 bytes" in answer["detail"]
    assert call(f"{server.url}/health")[0] == 200  # still serving


def test_concurrent_requests_are_batched_and_answered_right(
    video_server: tuple[Server, ExportedModel],
) -> None:
    server, model = video_server
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 16), dtype=np.uint8)
    audio = rng.normal(size=(24, 4)).astype(np.float32)

    def one(i: int) -> tuple:
        payload = {"features": {"rgb": rgb[i : i + 1].tolist(), "audio": audio[i : i + 1].tolist()}}
        return post(server.url, payload)

    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(one, range(24)))
    classes, _ = expected(model, {"rgb": rgb, "audio": audio}, None, 20)
    assert [status for status, _ in answers] == [200] * 24
    assert [a["predictions"][0]["classes"] for _, a in answers] == classes
    health = call(f"{server.url}/health")[1]
    assert health["rows"] == 24 and health["batches"] < 24  # requests shared model calls


def test_frame_level_rows_of_different_lengths(tmp_path: Path, frame_store: Dataset) -> None:
    source = save_model(tmp_path / "net", "netvlad", frame_store.layout, ("rgb", "audio"))
    model = export_onnx(source, tmp_path / "export", layout=frame_store.layout)
    codes = {g: frame_store.frames(np.arange(3), (g,), decode=False) for g in ("rgb", "audio")}
    lengths = codes["rgb"][1]
    features = {
        g: [values[b, : lengths[b]].tolist() for b in range(3)] for g, (values, _) in codes.items()
    }
    with Server(model, Limits(max_wait_ms=20)) as server:
        status, answer = post(server.url, {"features": features, "top_k": 4})
        with ThreadPoolExecutor(3) as pool:  # one row a request, batched together
            singles = list(pool.map(
                lambda b: post(server.url, {"features": {g: [v[b]] for g, v in features.items()},
                                            "top_k": 4}),
                range(3),
            ))  # fmt: skip
    assert status == 200
    classes, scores = expected(model, {g: v for g, (v, _) in codes.items()}, lengths, 4)
    assert [p["classes"] for p in answer["predictions"]] == classes
    np.testing.assert_allclose([p["scores"] for p in answer["predictions"]], scores, rtol=1e-5)
    assert [s[1]["predictions"][0]["classes"] for s in singles] == classes


def test_the_console_script_serves(tmp_path: Path, small_store: Dataset) -> None:
    source = save_model(tmp_path / "net", "logistic", small_store.layout, ("rgb", "audio"))
    export_onnx(source, tmp_path / "export", layout=small_store.layout)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "webly", "serve", str(tmp_path / "export"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                status, _ = call(f"{url}/health")
                break
            except urllib.error.URLError:
                time.sleep(0.1)
        assert status == 200
        payload = {"features": {"rgb": [[7] * 16], "audio": [[0.1] * 4]}, "top_k": 2}
        status, answer = post(url, payload)
        assert status == 200 and len(answer["predictions"][0]["classes"]) == 2
    finally:
        process.terminate()
        process.wait(timeout=30)
    bad = subprocess.run(
        [sys.executable, "-m", "webly", "serve", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
    assert "no model.json" in bad.stderr


@pytest.mark.parametrize("listening", [False, True])
def test_a_port_in_use_is_one_line_and_exit_2(
    tmp_path: Path, small_store: Dataset, capsys: pytest.CaptureFixture[str], listening: bool
) -> None:
    source = save_model(tmp_path / "net", "logistic", small_store.layout, ("rgb", "audio"))
    export_onnx(source, tmp_path / "export", layout=small_store.layout)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        if listening:
            taken.listen()
        port = taken.getsockname()[1]
        result = webly(capsys, "serve", str(tmp_path / "export"), "--port", str(port))
    assert_user_error(result, f"port {port} on 127.0.0.1 is in use; pass another --port")
    assert "serving" not in result[1]
    with pytest.raises(ConfigError, match=r"cannot listen on 203\.0\.113\.9:80"):
        open_socket("203.0.113.9", 80)  # an address of no interface here


def test_accepted_connections_send_without_nagle_delay() -> None:
    # asyncio sets TCP_NODELAY only on sockets whose proto says TCP; an accepted socket takes
    # the listening one's. Without it every response waited ~40 ms for a delayed ACK.
    with open_socket("127.0.0.1", 0) as listening:
        listening.listen()
        with socket.create_connection(listening.getsockname()[:2]):
            accepted, _ = listening.accept()
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP
