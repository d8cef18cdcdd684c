"""TFRecord framing and Example/SequenceExample decoding, checked against bytes built here by hand
from the format (not with webly's writer) and against protobuf's own parser."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import crc32c
import numpy as np
import pytest

from webly.data import tfrecord as tr
from webly.errors import DataError


# ---------------------------------------------------------------- the format, by hand
def arr(value: object) -> np.ndarray:
    """``value``, checked to be a numpy array (numeric lists and byte frames decode to one)."""
    assert isinstance(value, np.ndarray), type(value)
    return value


def masked(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32


def record(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked(length)) + payload + struct.pack("<I", masked(payload))


def varint(n: int) -> bytes:
    n %= 2**64
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        out += bytes([low | (0x80 if n else 0)])
        if not n:
            return out


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def vi(field: int, n: int) -> bytes:
    return varint(field << 3) + varint(n)


def f32(field: int, x: float) -> bytes:
    return varint(field << 3 | 5) + struct.pack("<f", x)


def f64(field: int, x: float) -> bytes:
    return varint(field << 3 | 1) + struct.pack("<d", x)


def group(field: int, body: bytes) -> bytes:
    return varint(field << 3 | 3) + body + varint(field << 3 | 4)


def entry(key: str, value: bytes) -> bytes:
    return ld(1, ld(1, key.encode()) + ld(2, value))


def bytes_feature(*values: bytes) -> bytes:
    return ld(1, b"".join(ld(1, v) for v in values))


def floats_packed(*xs: float) -> bytes:
    return ld(2, ld(1, struct.pack(f"<{len(xs)}f", *xs)))


def ints_packed(*ns: int) -> bytes:
    return ld(3, ld(1, b"".join(varint(n) for n in ns)))


def write(path: Path, payloads: list[bytes]) -> Path:
    path.write_bytes(b"".join(record(p) for p in payloads))
    return path


# ---------------------------------------------------------------- framing


def test_iter_records_yields_offsets_and_payloads(tmp_path: Path) -> None:
    payloads = [b"first", b"", b"x" * 70_000]
    path = write(tmp_path / "a.tfrecord", payloads)
    stats = tr.ReadStats()
    got = list(tr.iter_records(path, stats=stats))
    assert got == [(0, b"first"), (21, b""), (37, b"x" * 70_000)]
    assert (stats.records, stats.corrupt) == (3, 0)


def test_empty_file_has_no_records(tmp_path: Path) -> None:
    (tmp_path / "e.tfrecord").write_bytes(b"")
    assert list(tr.iter_records(tmp_path / "e.tfrecord")) == []


def corrupt_file(tmp_path: Path, where: str) -> Path:
    """Three records of 10, 20, 30 bytes (at bytes 0, 26, 62); the second one damaged."""
    data = bytearray(b"".join(record(bytes([i]) * (10 * (i + 1))) for i in range(3)))
    if where == "length_crc":
        data[26 + 9] ^= 0xFF
    elif where == "payload":
        data[26 + 12 + 5] ^= 0x01
    path = tmp_path / f"{where}.tfrecord"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("where", "message", "kept"),
    [
        ("length_crc", "record at byte 26 has a bad length CRC32C", [0]),
        ("payload", "record at byte 26 has a bad payload CRC32C", [0, 62]),
    ],
)
def test_bad_crc_raises_or_is_skipped(
    tmp_path: Path, where: str, message: str, kept: list[int]
) -> None:
    path = corrupt_file(tmp_path, where)
    with pytest.raises(DataError, match=message) as err:
        list(tr.iter_records(path))
    assert str(path) in str(err.value) and "--skip-corrupt" in str(err.value)
    stats = tr.ReadStats()
    assert [off for off, _ in tr.iter_records(path, skip_corrupt=True, stats=stats)] == kept
    assert (stats.records, stats.corrupt) == (len(kept), 1)


@pytest.mark.parametrize(("cut", "detail"), [(5, "into its header"), (20, "needs 46 bytes")])
def test_truncated_file(tmp_path: Path, cut: int, detail: str) -> None:
    full = b"".join(record(b"a" * 30) for _ in range(2))  # 46 bytes each
    path = tmp_path / "t.tfrecord"
    path.write_bytes(full[: 46 + cut])
    with pytest.raises(DataError, match=f"record at byte 46 is truncated .*{detail}"):
        list(tr.iter_records(path))
    stats = tr.ReadStats()
    assert [off for off, _ in tr.iter_records(path, skip_corrupt=True, stats=stats)] == [0]
    assert stats.corrupt == 1


def test_huge_length_with_valid_crc_is_truncation_not_allocation(tmp_path: Path) -> None:
    length = struct.pack("<Q", 2**60)
    path = tmp_path / "h.tfrecord"
    path.write_bytes(length + struct.pack("<I", masked(length)) + b"abc")
    with pytest.raises(DataError, match="record at byte 0 is truncated"):
        list(tr.iter_records(path))


# ---------------------------------------------------------------- Example


def test_parse_example_hand_encoded() -> None:
    mean = [0.5, -1.25, 3.0e-8]
    payload = b"".join(
        [
            vi(7, 99),  # unknown top-level field before the features
            ld(
                1,
                b"".join(
                    [
                        entry("id", bytes_feature(b"vid-1")),
                        entry("labels", ints_packed(0, 300, 3861, -1, 2**62)),
                        entry("mean", floats_packed(*mean)),
                        # unpacked floats, with unknown fields inside the FloatList
                        entry("unpacked_f", ld(2, f32(1, 1.5) + vi(4, 1) + f32(1, -2.0))),
                        entry("unpacked_i", ld(3, vi(1, 5) + vi(1, 2**64 - 2))),
                        # value before key, unknown fixed64 and group fields in the entry
                        ld(1, ld(2, bytes_feature(b"a", b"")) + f64(9, 1.0) + ld(1, b"swapped")),
                        ld(1, group(6, vi(1, 3) + ld(2, b"zz")) + ld(1, b"empty") + ld(2, b"")),
                    ]
                ),
            ),
            f64(3, 2.0),
        ]
    )
    got = tr.parse_example(payload)
    assert got["id"] == [b"vid-1"]
    assert arr(got["labels"]).dtype == np.int64
    assert arr(got["labels"]).tolist() == [0, 300, 3861, -1, 2**62]
    assert arr(got["mean"]).dtype == np.float32
    assert arr(got["mean"]).tolist() == np.array(mean, np.float32).tolist()
    assert arr(got["unpacked_f"]).tolist() == [1.5, -2.0]
    assert arr(got["unpacked_i"]).tolist() == [5, -2]
    assert got["swapped"] == [b"a", b""]
    assert got["empty"] == []
    assert list(got) == ["id", "labels", "mean", "unpacked_f", "unpacked_i", "swapped", "empty"]


def test_repeated_fields_merge_like_protobuf() -> None:
    """Packed chunks and single values concatenate in order; a later Feature kind replaces an
    earlier one (oneof); a repeated key replaces the earlier entry; two Features merge."""
    mixed = ld(2, f32(1, 1.0) + ld(1, struct.pack("<2f", 2.0, 3.0)) + f32(1, 4.0))
    ints = ld(3, vi(1, 1) + ld(1, varint(2) + varint(3)) + vi(1, 4))
    switched = bytes_feature(b"gone") + floats_packed(9.0)
    payload = ld(1, entry("f", mixed) + entry("i", ints) + entry("k", switched))
    payload += ld(1, entry("dup", bytes_feature(b"old")) + entry("dup", bytes_feature(b"new")))
    payload += ld(1, ld(1, ld(1, b"two") + ld(2, ints_packed(1)) + ld(2, ints_packed(2))))
    got = tr.parse_example(payload)
    assert arr(got["f"]).tolist() == [1.0, 2.0, 3.0, 4.0]
    assert arr(got["i"]).tolist() == [1, 2, 3, 4]
    assert arr(got["k"]).tolist() == [9.0]
    assert got["dup"] == [b"new"]
    assert arr(got["two"]).tolist() == [1, 2]


def test_long_packed_int64_list_uses_every_varint_width() -> None:
    values = [0, 1, 127, 128, 16383, 16384, 2**35, 2**63 - 1, -(2**63), -1, -3862] * 5
    got = tr.parse_example(ld(1, entry("v", ints_packed(*values))))["v"]
    assert arr(got).tolist() == values


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (ld(1, entry("id", bytes_feature(b"x")))[:-2], "longer than its message"),
        (b"\x0a\x05ab", "runs past|longer than its message"),
        (vi(1, 0)[:1] + b"\xff" * 11, "longer than 10 bytes"),
        (ld(1, entry("f", ld(2, ld(1, b"abcde")))), "not a multiple of 4"),
        (varint(1 << 3 | 7), "wire type 7"),
        (group(5, vi(1, 1))[:-1], "group 5 is not closed"),
        (ld(1, entry("v", ld(3, ld(1, b"\x80" * 40)))), "run past their field"),
        (ld(1, entry("v", ld(3, ld(1, b"\x80" * 2)))), "runs past the end"),
        (ld(1, ld(1, ld(1, b"\xff") + ld(2, b""))), "a feature name is not UTF-8"),
    ],
)
def test_malformed_example(payload: bytes, detail: str) -> None:
    with pytest.raises(DataError, match=r"not a valid tf\.train\.Example") as err:
        tr.parse_example(payload)
    assert any(d in str(err.value) for d in detail.split("|"))


# ---------------------------------------------------------------- SequenceExample


def frame_list(*frames: bytes) -> bytes:
    return b"".join(ld(1, bytes_feature(f)) for f in frames)


def test_parse_sequence_example_hand_encoded() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 200), dtype=np.uint8)
    audio = rng.integers(0, 256, (5, 3), dtype=np.uint8)
    lists = b"".join(
        [
            entry("rgb", frame_list(*(row.tobytes() for row in rgb))),
            ld(
                1, vi(3, 1) + ld(2, frame_list(*(row.tobytes() for row in audio))) + ld(1, b"audio")
            ),
            entry("ragged", frame_list(b"ab", b"abc")),
            entry("floats", ld(1, floats_packed(1.0, 2.0)) + ld(1, floats_packed(3.0))),
            entry("none", b""),
        ]
    )
    context = entry("id", bytes_feature(b"v")) + entry("labels", ints_packed(4, 2))
    # feature_lists before context, unknown field between them
    context_out, lists_out = tr.parse_sequence_example(ld(2, lists) + vi(5, 1) + ld(1, context))
    assert context_out["id"] == [b"v"]
    assert arr(context_out["labels"]).tolist() == [4, 2]
    assert arr(lists_out["rgb"]).dtype == np.uint8
    np.testing.assert_array_equal(lists_out["rgb"], rgb)
    np.testing.assert_array_equal(lists_out["audio"], audio)
    assert lists_out["ragged"] == [[b"ab"], [b"abc"]]
    assert [arr(f).tolist() for f in lists_out["floats"]] == [[1.0, 2.0], [3.0]]
    assert lists_out["none"] == []


@pytest.mark.parametrize(
    "odd_frame",
    [
        # the length of the frame's bytes as a non-minimal (2-byte) varint
        ld(1, ld(1, b"\x0a\x84\x00" + b"wxyz")),
        # an unknown field after the BytesList inside the Feature
        ld(1, bytes_feature(b"wxyz") + vi(9, 1)),
        # the BytesList sent in two parts, merged by the decoder into one value
        ld(1, ld(1, b"") + bytes_feature(b"wxyz")),
    ],
)
def test_frames_that_break_the_stride_use_the_general_decoder(odd_frame: bytes) -> None:
    frames = frame_list(b"abcd", b"efgh") + odd_frame + frame_list(b"ijkl")
    _, lists = tr.parse_sequence_example(ld(2, entry("rgb", frames)))
    assert arr(lists["rgb"]).tolist() == [
        list(b"abcd"),
        list(b"efgh"),
        list(b"wxyz"),
        list(b"ijkl"),
    ]


def test_regular_frames_skip_the_per_frame_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = np.arange(3000, dtype=np.uint32).astype(np.uint8).reshape(3, 1000)
    payload = ld(2, entry("rgb", frame_list(*(row.tobytes() for row in frames))))

    def per_frame(*args: object) -> None:
        raise AssertionError("the strided fast path was not taken")

    monkeypatch.setattr(tr, "_parse_feature", per_frame)
    np.testing.assert_array_equal(tr.parse_sequence_example(payload)[1]["rgb"], frames)


def test_odd_but_valid_encodings_at_the_end_of_a_payload() -> None:
    """Empty map entries and empty frames whose headers end the buffer decode, not raise."""
    _, lists = tr.parse_sequence_example(ld(2, entry("e", b"\x0a\x80\x80\x80\x80\x00")))
    assert lists["e"] == [[]]
    assert tr.parse_example(ld(1, ld(1, b""))) == {"": []}


def test_frames_with_two_values_are_not_taken_as_one() -> None:
    frames = ld(1, bytes_feature(b"ab", b"cd")) * 3  # same stride, but two values a frame
    _, lists = tr.parse_sequence_example(ld(2, entry("rgb", frames)))
    assert lists["rgb"] == [[b"ab", b"cd"]] * 3


def test_malformed_sequence_example() -> None:
    with pytest.raises(DataError, match=r"not a valid tf\.train\.SequenceExample"):
        tr.parse_sequence_example(ld(2, entry("rgb", frame_list(b"abcd")))[:-3])


# ---------------------------------------------------------------- the writer


def test_writer_matches_the_hand_encoding() -> None:
    features: dict[str, tr.FeatureInput] = {
        "id": [b"vid"],
        "labels": np.array([3, 300, -1]),
        "mean": np.array([0.25, -2.0], np.float64),
    }
    expected = ld(
        1,
        entry("id", bytes_feature(b"vid"))
        + entry("labels", ints_packed(3, 300, -1))
        + entry("mean", floats_packed(0.25, -2.0)),
    )
    assert tr.encode_example(features) == expected
    frames = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert tr.encode_sequence_example({"id": [b"v"]}, {"rgb": frames}) == ld(
        1, entry("id", bytes_feature(b"v"))
    ) + ld(2, entry("rgb", frame_list(b"\x00\x01\x02", b"\x03\x04\x05")))


def test_writer_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(7).astype(np.float32)
    rgb = rng.integers(0, 256, (300, 1024), dtype=np.uint8)
    payloads = [
        tr.encode_example({"x": x, "e": []}),
        tr.encode_sequence_example(
            {"labels": np.array([1, 2])},
            {"rgb": rgb, "per_frame": [np.array([1.5], np.float32), [b"a", b"b"]]},
        ),
    ]
    path = tmp_path / "rt.tfrecord"
    assert tr.write_records(path, payloads) == 2
    (_, first), (off, second) = tr.iter_records(path)
    assert first == payloads[0] and second == payloads[1] and off == len(record(payloads[0]))
    example = tr.parse_example(first)
    np.testing.assert_array_equal(example["x"], x)
    assert example["e"] == []
    context, lists = tr.parse_sequence_example(second)
    assert arr(context["labels"]).tolist() == [1, 2]
    np.testing.assert_array_equal(lists["rgb"], rgb)
    assert arr(lists["per_frame"][0]).tolist() == [1.5] and lists["per_frame"][1] == [b"a", b"b"]


def test_write_records_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "keep.tfrecord"
    tr.write_records(path, [b"old"])

    def failing() -> Iterator[bytes]:
        yield b"new"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        tr.write_records(path, failing())
    assert [p for _, p in tr.iter_records(path)] == [b"old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tfrecord"]


def test_encode_rejects_a_bare_byte_string() -> None:
    with pytest.raises(TypeError, match="wrap byte strings in a list"):
        tr.encode_example({"id": b"vid"})  # type: ignore[dict-item]


# ---------------------------------------------------------------- cross-check with protobuf


def test_cross_check_with_protobuf_and_the_tfrecord_package(tmp_path: Path) -> None:
    example_pb2 = pytest.importorskip("tfrecord.example_pb2")
    reader = pytest.importorskip("tfrecord.reader")
    rng = np.random.default_rng(2)
    payloads = []
    for i in range(20):
        seq = example_pb2.SequenceExample()
        ctx = seq.context.feature
        ctx["id"].bytes_list.value.append(f"video-{i}".encode())
        ctx["labels"].int64_list.value.extend(rng.integers(-(2**40), 2**40, i + 1).tolist())
        ctx["score"].float_list.value.extend(rng.standard_normal(i + 1).tolist())
        n_frames = int(rng.integers(1, 40))
        for name, dim in (("rgb", 1024), ("audio", 128)):
            frames = seq.feature_lists.feature_list[name].feature
            for _ in range(n_frames):
                frames.add().bytes_list.value.append(rng.bytes(dim))
        payloads.append(seq.SerializeToString())
    path = tmp_path / "pb.tfrecord"
    tr.write_records(path, payloads)
    ours = [tr.parse_sequence_example(p) for _, p in tr.iter_records(path)]
    theirs = list(reader.sequence_loader(str(path), None))
    assert len(ours) == len(theirs) == 20
    for (context, lists), (their_ctx, their_lists), payload in zip(
        ours, theirs, payloads, strict=True
    ):
        assert context["id"] == [their_ctx["id"]]
        np.testing.assert_array_equal(context["labels"], their_ctx["labels"])
        np.testing.assert_array_equal(context["score"], their_ctx["score"])
        for name in ("rgb", "audio"):
            expected = np.stack([np.frombuffer(f, np.uint8) for f in their_lists[name]])
            np.testing.assert_array_equal(lists[name], expected)
        # and protobuf parses webly's encoding of the same content back to the same message
        again = tr.encode_sequence_example(
            {"id": context["id"], "labels": context["labels"], "score": context["score"]},
            {"rgb": lists["rgb"], "audio": lists["audio"]},
        )
        parsed = example_pb2.SequenceExample()
        parsed.ParseFromString(again)
        original = example_pb2.SequenceExample()
        original.ParseFromString(payload)
        assert parsed == original
