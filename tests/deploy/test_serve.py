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

from tests.deploy.conftest import MixedModel, save_model
from tests.deploy.test_commands import assert_user_error, webly
from webly.core import select_top_k
from webly.data import Dataset, FeatureSpec
from webly.data import tfrecord as tr
from webly.data.store import dequantize_uint8
from webly.deploy import ExportedModel, export_onnx
from webly.deploy.exported import LENGTHS
from webly.deploy.serve import (
    Limits,
    PredictRequest,
    RequestTooLarge,
    create_app,
    open_socket,
    request_rows,
)
from webly.errors import ConfigError, DataError


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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --------------------------------------------------------------------------- hostile input
# (issue 20: frames a row and a model call bounded, one request never failing another,
# non-finite, out-of-range and boolean values refused)


def raw_post(url: str, body: str) -> tuple:
    return call(f"{url}/predict", body.encode(), {"Content-Type": "application/json"})


class Watched:
    """An `ExportedModel` whose model calls are recorded (``(rows, frames)`` of each) and that
    fails a call holding a row of ``poison`` frames."""

    def __init__(self, model: ExportedModel, poison: int | None = None) -> None:
        self.model, self.poison, self.calls = model, poison, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict(self, groups: dict[str, np.ndarray], lengths: Any = None) -> np.ndarray:
        first = next(iter(groups.values()))
        self.calls.append(first.shape[:2])
        if self.poison is not None and lengths is not None and self.poison in lengths:
            raise RuntimeError("the model cannot take this row\nsecond line")
        return self.model.predict(groups, lengths)


@pytest.fixture
def frame_model(tmp_path: Path, frame_store: Dataset) -> ExportedModel:
    source = save_model(tmp_path / "frame-net", "dbof", frame_store.layout, ("rgb", "audio"))
    return export_onnx(source, tmp_path / "frame-export", layout=frame_store.layout, max_frames=6)


def frame_rows(n_frames: list[int], seed: int = 0) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    return {
        g: [rng.integers(0, 256, (t, dim)).tolist() for t in n_frames]
        for g, dim in (("rgb", 16), ("audio", 4))
    }


@pytest.mark.slow
def test_the_export_records_max_frames_and_the_service_bounds_rows_by_it(
    tmp_path: Path, frame_store: Dataset, frame_model: ExportedModel
) -> None:
    assert frame_model.info["max_frames"] == 6
    # a zoo member's fold model: its member's config.json says how it trained
    member = tmp_path / "zoo" / "dbof"
    source = save_model(member / "fold-0" / "model", "dbof", frame_store.layout, ("rgb", "audio"))
    (member / "config.json").write_text(json.dumps({"config": {"train": {"max_frames": 7}}}))
    from_zoo = export_onnx(source, tmp_path / "export-zoo", layout=frame_store.layout)
    assert from_zoo.info["max_frames"] == 7
    with Server(frame_model, Limits(max_wait_ms=5)) as server:
        assert call(f"{server.url}/model")[1]["limits"]["max_frames"] == 6
        status, answer = post(server.url, {"features": frame_rows([6, 2])})
        assert status == 200 and len(answer["predictions"]) == 2
        status, answer = post(server.url, {"features": frame_rows([2, 7])})
        assert status == 413
        assert "feature group 'rgb' row 1: 7 frames, over the service's 6 a row" in answer["detail"]
    with Server(frame_model, Limits(max_frames=8, max_wait_ms=5)) as server:  # --max-frames
        assert post(server.url, {"features": frame_rows([2, 7])})[0] == 200


def test_a_long_row_gets_413_and_the_good_requests_beside_it_200(
    frame_model: ExportedModel,
) -> None:
    payloads = [{"features": frame_rows([t], seed=t)} for t in (3, 1000, 5, 2, 6, 4)]
    with Server(frame_model, Limits(max_wait_ms=50)) as server, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda p: post(server.url, p), payloads))
    assert [status for status, _ in answers] == [200, 413, 200, 200, 200, 200]
    for payload, (_, answer) in zip(payloads[2:], answers[2:], strict=True):
        rows = {g: np.array(v[0])[None].astype(np.uint8) for g, v in payload["features"].items()}
        classes, _ = expected(frame_model, rows, np.array([len(payload["features"]["rgb"][0])]), 20)
        assert answer["predictions"][0]["classes"] == classes[0]


def test_model_calls_hold_at_most_max_batch_frames(frame_model: ExportedModel) -> None:
    watched = Watched(frame_model)
    lengths = [6, 1, 5, 2, 6, 3, 4, 6]
    single = {"features": frame_rows(lengths, seed=1)}
    singles = [{"features": frame_rows([t], seed=10 + t)} for t in lengths]
    limits = Limits(max_wait_ms=100, max_batch_frames=12)
    with Server(watched, limits) as server:  # type: ignore[arg-type]
        status, answer = post(server.url, single)  # one request split over several calls
        with ThreadPoolExecutor(len(singles)) as pool:  # requests merged, then split
            answers = list(pool.map(lambda p: post(server.url, p), singles))
    assert status == 200 and [s for s, _ in answers] == [200] * len(singles)
    assert max(rows * frames for rows, frames in watched.calls) <= 12
    assert len(watched.calls) >= 2 * 4  # 44 frames at most 12 a call, twice
    rows = {g: np.zeros((8, 6, d), np.uint8) for g, d in (("rgb", 16), ("audio", 4))}
    for g in rows:
        for b, t in enumerate(lengths):
            rows[g][b, :t] = single["features"][g][b]
    classes, scores = expected(frame_model, rows, np.array(lengths), 20)
    assert [p["classes"] for p in answer["predictions"]] == classes
    np.testing.assert_allclose([p["scores"] for p in answer["predictions"]], scores, rtol=1e-5)


def test_a_request_the_model_fails_on_does_not_fail_the_others(
    frame_model: ExportedModel,
) -> None:
    watched = Watched(frame_model, poison=5)
    payloads = [{"features": frame_rows([t], seed=t)} for t in (2, 5, 3, 4)]
    with Server(watched, Limits(max_wait_ms=100)) as server:  # type: ignore[arg-type]
        with ThreadPoolExecutor(len(payloads)) as pool:
            answers = list(pool.map(lambda p: post(server.url, p), payloads))
        assert call(f"{server.url}/health")[0] == 200
    assert [status for status, _ in answers] == [200, 500, 200, 200]
    detail = answers[1][1]["detail"]
    assert "RuntimeError: the model cannot take this row second line" in detail
    assert any(rows > 1 for rows, _ in watched.calls)  # they did share a model call


ONES = "[" + ",".join(["1"] * 16) + "]"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rgb", "audio", "needle"),
    [
        (ONES, "[0, NaN, 0, 0]", "feature group 'audio' row 0: nan at column 1 is not a finite"),
        (ONES, "[0, 0, Infinity, 0]", "'audio' row 0: inf at column 2 is not a finite number"),
        (ONES, "[-Infinity, 0, 0, 0]", "'audio' row 0: -inf at column 0"),
        (ONES, "[0, 0, 0, 1e400]", "'audio' row 0: inf at column 3 is not a finite number"),
        (f"{ONES}, {ONES}", "[0, 0, 0, 0], [0, 1e308, 0, 0]",
         "'audio' row 1: 1e+308 at column 1 overflows float32"),
        (ONES, "[0, 0, 0, true]", "'audio' row 0: holds true/false; give numbers"),
        (ONES.replace("1]", "false]"), "[0, 0, 0, 0]", "'rgb' row 0: holds true/false"),
        (ONES.replace("1]", "NaN]"), "[0, 0, 0, 0]", "'rgb' row 0: nan at column 15 is not a"),
        (ONES.replace("1]", '"1"]'), "[0, 0, 0, 0]", "'rgb' row 0: holds a str; give numbers"),
    ],
)  # fmt: skip
def test_non_finite_overflowing_and_boolean_values_get_422(
    video_server: tuple[Server, ExportedModel], rgb: str, audio: str, needle: str
) -> None:
    server, _ = video_server
    status, answer = raw_post(server.url, f'{{"features": {{"rgb": [{rgb}], "audio": [{audio}]}}}}')
    assert status == 422 and needle in answer["detail"], answer
    assert "\n" not in answer["detail"]


def test_non_finite_values_in_records_and_frames_get_422(
    video_server: tuple[Server, ExportedModel], frame_model: ExportedModel
) -> None:
    server, _ = video_server
    audio = np.array([0.5, np.nan, 0.0, 1.0], np.float32)
    record = tr.encode_example({"id": [b"v"], "mean_rgb": np.zeros(16, np.float32),
                                "mean_audio": audio})  # fmt: skip
    status, answer = post(server.url, {"records": [base64.b64encode(record).decode()]})
    assert status == 422
    assert answer["detail"].startswith("records[0]") and "'audio'" in answer["detail"]
    features = frame_rows([3])
    features["audio"][0][2][1] = float("inf")
    with Server(frame_model, Limits(max_wait_ms=5)) as frames:
        status, answer = post(frames.url, {"features": features})
    assert status == 422
    assert "'audio' row 0: inf at frame 2, column 1 is not a finite number" in answer["detail"]


def test_service_limits_are_checked(
    tmp_path: Path, small_store: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="service max_frames is 0; it must be an integer >= 1"):
        Limits(max_frames=0)
    with pytest.raises(ConfigError, match="max_frames is 9000 but max_batch_frames is 8192"):
        Limits(max_frames=9000)
    with pytest.raises(ConfigError, match="max_inflight_bytes is 10, under max_request_bytes"):
        Limits(max_request_bytes=100, max_inflight_bytes=10)
    source = save_model(tmp_path / "net", "logistic", small_store.layout, ("rgb", "audio"))
    export_onnx(source, tmp_path / "export", layout=small_store.layout)
    result = webly(capsys, "serve", str(tmp_path / "export"), "--max-batch-frames", "0")
    assert_user_error(result, "service max_batch_frames is 0; it must be an integer >= 1")


def mixed_model() -> MixedModel:
    """A stand-in for a model reading ``rgb``/``audio`` frames and ``mean_rgb`` together."""
    return MixedModel(
        (
            FeatureSpec("rgb", 16, "uint8", "frame"),
            FeatureSpec("audio", 4, "uint8", "frame", quant_min=-1.0, quant_max=3.0),
            FeatureSpec("mean_rgb", 16, "float32"),
        )
    )


def mixed_rows(n_frames: list[int], seed: int = 0) -> dict[str, list]:
    rows = frame_rows(n_frames, seed)
    rng = np.random.default_rng(seed + 100)
    rows["mean_rgb"] = rng.uniform(-2, 2, (len(n_frames), 16)).astype(np.float32).tolist()
    return rows


def padded(rows: dict[str, list]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A request's ``features`` as the model's inputs: frames zero-padded, and lengths."""
    lengths = np.array([len(frames) for frames in rows["rgb"]])
    groups = {"mean_rgb": np.array(rows["mean_rgb"], np.float32)}
    for g, dim in (("rgb", 16), ("audio", 4)):
        groups[g] = np.zeros((len(lengths), lengths.max(), dim), np.uint8)
        for b, frames in enumerate(rows[g]):
            groups[g][b, : len(frames)] = frames
    return groups, lengths


def test_a_request_for_a_mixed_model_gives_frames_and_video_rows() -> None:
    model = mixed_model()
    rows = mixed_rows([3, 1, 5])
    batch = request_rows(model, PredictRequest(features=rows, ids=list("abc")))  # type: ignore[arg-type]
    groups, lengths = padded(rows)
    assert batch.ids == list("abc") and batch.lengths is not None
    np.testing.assert_array_equal(batch.lengths, lengths)
    for g in ("rgb", "audio", "mean_rgb"):
        assert batch.groups[g].dtype == groups[g].dtype
        np.testing.assert_array_equal(batch.groups[g], groups[g])
    # a record: the frame groups its frames, mean_rgb the mean of its rgb frames
    rng = np.random.default_rng(3)
    rgb, audio = rng.integers(0, 256, (4, 16), np.uint8), rng.integers(0, 256, (4, 4), np.uint8)
    record = tr.encode_sequence_example({"id": [b"r1"]}, {"rgb": rgb, "audio": audio})
    request = PredictRequest(records=[base64.b64encode(record).decode()])
    batch = request_rows(model, request)  # type: ignore[arg-type]
    assert batch.ids == ["r1"] and batch.lengths is not None and batch.lengths.tolist() == [4]
    np.testing.assert_array_equal(batch.groups["rgb"][0], rgb)
    np.testing.assert_array_equal(batch.groups["audio"][0], audio)
    mean = dequantize_uint8(rgb.sum(axis=0, dtype=np.uint32) / 4)
    np.testing.assert_array_equal(batch.groups["mean_rgb"], mean[None])


def test_a_mixed_request_refuses_frames_of_another_count_or_level() -> None:
    model = mixed_model()
    uneven = mixed_rows([3, 2])
    uneven["audio"][1] = uneven["audio"][1][:1]
    as_frames = mixed_rows([2])
    as_frames["mean_rgb"] = [[as_frames["mean_rgb"][0]] * 2]
    flat = mixed_rows([1])
    flat["audio"] = [flat["audio"][0][0]]
    cases = [
        (uneven, DataError, r"^row 1: the frame-level feature groups hold different numbers of "
         r"frames \('rgb' 2, 'audio' 1\); give every frame-level group of a row the same frames$"),
        (as_frames, DataError, r"^feature group 'mean_rgb' row 0: expected \(dim,\) with dim 16, "
         r"got \(2, 16\); it is a video-level group, give each row as \(dim,\)$"),
        (flat, DataError, r"^feature group 'audio' row 0: expected \(n_frames, dim\) with dim 4, "
         r"got \(4,\); it is a frame-level group, give each row as \(n_frames, dim\)$"),
        (mixed_rows([2, 7]), RequestTooLarge, r"^feature group 'rgb' row 1: 7 frames, over the "
         "service's 6 a row"),
    ]  # fmt: skip
    for features, error, said in cases:
        with pytest.raises(error, match=said):
            request_rows(model, PredictRequest(features=features))  # type: ignore[arg-type]
    assert model.calls == []


def test_mixed_rows_are_micro_batched_with_their_video_groups() -> None:
    model = mixed_model()
    lengths = [6, 1, 5, 2, 6, 3]
    single = mixed_rows(lengths, seed=1)
    singles = [mixed_rows([t], seed=10 + t) for t in lengths]
    with Server(model, Limits(max_wait_ms=100, max_batch_frames=12)) as server:  # type: ignore[arg-type]
        status, answer = post(server.url, {"features": single})  # split over several calls
        with ThreadPoolExecutor(len(singles)) as pool:  # merged, then split
            answers = list(pool.map(lambda rows: post(server.url, {"features": rows}), singles))
    assert status == 200 and [s for s, _ in answers] == [200] * len(singles)
    calls = list(model.calls)
    assert len(calls) >= 4 and any(len(call[LENGTHS]) > 1 for call in calls)
    for call in calls:
        rows, frames = call["rgb"].shape[:2]
        assert rows * frames <= 12 and call["audio"].shape[:2] == (rows, frames)
        assert call["mean_rgb"].shape == (rows, 16) and frames == call[LENGTHS].max()
    for rows, got in [(single, answer), *zip(singles, (a for _, a in answers), strict=True)]:
        groups, n = padded(rows)
        classes, scores = expected(model, groups, n, 5)  # type: ignore[arg-type]
        assert [p["classes"] for p in got["predictions"]] == classes
        np.testing.assert_allclose([p["scores"] for p in got["predictions"]], scores, rtol=1e-6)
