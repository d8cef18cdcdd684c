"""TFRecord files and ``tf.train.Example`` / ``SequenceExample`` protobufs, without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length | uint32 masked CRC32C(length bytes) | payload | uint32 masked CRC32C(payload)

(all little-endian)

with ``mask(crc) = ((crc >> 15) | (crc << 17)) + 0xA282EAD8 (mod 2**32)``. Both checksums of
every record are verified. The payloads decoded here are the protobuf messages::

    Example         { Features features = 1; }
    SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
    Features        { map<string, Feature> feature = 1; }
    FeatureLists    { map<string, FeatureList> feature_list = 1; }
    FeatureList     { repeated Feature feature = 1; }
    Feature         { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                                   Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }   FloatList { repeated float value = 1; }
    Int64List { repeated int64 value = 1; }

The decoder is a small wire-format walker over ``(buffer, start, end)`` ranges, so nothing is
sliced until a value is produced. Numeric lists go straight into numpy. A feature list whose
frames each hold one byte string of the same length (YouTube-8M frame features) is taken in one
strided numpy view: ``(n_frames, dim)`` uint8 with a single copy.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, TypeVar

import crc32c
import numpy as np

from webly._fs import replaced_file
from webly.errors import DataError

FeatureValue: TypeAlias = "list[bytes] | np.ndarray"
"""A decoded Feature: bytes_list -> list[bytes]; float_list -> (n,) float32; int64_list ->
(n,) int64. A Feature with no kind set decodes to an empty list."""

FrameValue: TypeAlias = "np.ndarray | list[FeatureValue]"
"""A decoded FeatureList: ``(n_frames, dim)`` uint8 when every frame is one byte string of the
same length, else the list of per-frame `FeatureValue` s (empty list for no frames)."""

_V = TypeVar("_V")
_READ_BUFFER = 16 << 20  # bytes read from disk at a time
_HEADER = struct.Struct("<QI")  # length, masked CRC32C of the length
_FOOTER = struct.Struct("<I")  # masked CRC32C of the payload
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1
_FIX = "re-download it or pass --skip-corrupt"

# Wire types and the tags (field << 3 | wire type) the decoder dispatches on.
_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
_TAG1_LEN = 1 << 3 | _LEN  # 0x0A: field 1, length-delimited
_TAG2_LEN = 2 << 3 | _LEN
_TAG3_LEN = 3 << 3 | _LEN
_TAG1_I32 = 1 << 3 | _I32
_TAG1_VARINT = 1 << 3 | _VARINT
_BYTES, _FLOAT, _INT64 = 1, 2, 3  # Feature kinds (their field numbers)


class _Malformed(Exception):
    """Internal: the protobuf bytes are not a valid message of the expected type."""


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum of ``data``: CRC32C rotated right by 15 bits plus 0xA282EAD8."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


# --------------------------------------------------------------------------- record framing


@dataclass
class ReadStats:
    """Counters filled in by `iter_records`: records read and corrupt records skipped."""

    records: int = 0
    corrupt: int = 0


def iter_records(
    path: str | Path, skip_corrupt: bool = False, stats: ReadStats | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(byte offset, payload)`` for every record of the TFRecord file at ``path``.

    The file is streamed through a 16 MB buffer; memory holds one record at a time. A bad
    checksum or a truncated record raises `DataError` naming the file and the record's offset,
    unless ``skip_corrupt``: then a record with a bad payload CRC is skipped and reading goes on,
    while a bad length CRC or a truncation ends the file (it can no longer be framed). Skipped
    records are counted in ``stats.corrupt``.
    """
    stats = stats if stats is not None else ReadStats()
    with open(path, "rb", buffering=_READ_BUFFER) as fh:
        size = os.fstat(fh.fileno()).st_size
        offset = 0
        while offset < size:
            problem = None
            header = fh.read(_HEADER.size)
            if len(header) < _HEADER.size:
                problem = f"is truncated (the file ends {size - offset} bytes into its header)"
            else:
                length, length_crc = _HEADER.unpack(header)
                end = offset + _HEADER.size + length + _FOOTER.size
                if masked_crc32c(header[:8]) != length_crc:
                    problem = "has a bad length CRC32C (file corrupt)"
                elif end > size:
                    problem = f"is truncated (it needs {end - offset} bytes, {size - offset} left)"
            if problem is not None:
                if not skip_corrupt:
                    raise DataError(f"{path}: record at byte {offset} {problem}; {_FIX}")
                stats.corrupt += 1
                return
            payload = fh.read(length)
            (payload_crc,) = _FOOTER.unpack(fh.read(_FOOTER.size))
            if masked_crc32c(payload) == payload_crc:
                stats.records += 1
                yield offset, payload
            elif skip_corrupt:
                stats.corrupt += 1
            else:
                raise DataError(
                    f"{path}: record at byte {offset} has a bad payload CRC32C "
                    f"(file corrupt or truncated); {_FIX}"
                )
            offset = end


def frame_record(payload: bytes) -> bytes:
    """``payload`` framed as one TFRecord record (header, payload, footer)."""
    header = struct.pack("<Q", len(payload))
    return b"".join(
        (
            header,
            _FOOTER.pack(masked_crc32c(header)),
            payload,
            _FOOTER.pack(masked_crc32c(payload)),
        )
    )


def write_records(path: str | Path, payloads: Iterable[bytes]) -> int:
    """Write ``payloads`` as a TFRecord file at ``path``, atomically; returns the record count.

    The records go to a temporary file beside ``path`` that is fsynced and renamed over it
    (`webly._fs.replaced_file`), so ``path`` is either absent/unchanged or complete.
    """
    count = 0
    with replaced_file(path, "wb") as fh:
        for payload in payloads:
            fh.write(frame_record(payload))
            count += 1
    return count


# --------------------------------------------------------------------------- protobuf decoding


def parse_example(payload: bytes) -> dict[str, FeatureValue]:
    """Decode a serialized ``tf.train.Example`` into ``{name: FeatureValue}``.

    Raises `DataError` if ``payload`` is not a valid Example encoding.
    """
    try:
        features: dict[str, FeatureValue] = {}
        for tag, start, end in _fields(payload, 0, len(payload)):
            if tag == _TAG1_LEN:
                _parse_map(payload, start, end, features, _parse_feature)
        return features
    except (_Malformed, IndexError, UnicodeDecodeError) as err:
        raise _malformed_error("Example", err) from None


def parse_sequence_example(
    payload: bytes,
) -> tuple[dict[str, FeatureValue], dict[str, FrameValue]]:
    """Decode a serialized ``tf.train.SequenceExample`` into ``(context, feature_lists)``.

    ``context`` maps names to `FeatureValue`; ``feature_lists`` maps names to `FrameValue`:
    ``(n_frames, dim)`` uint8 for byte-string frames such as YouTube-8M's ``rgb`` and ``audio``.
    Raises `DataError` if ``payload`` is not a valid SequenceExample encoding.
    """
    try:
        context: dict[str, FeatureValue] = {}
        lists: dict[str, FrameValue] = {}
        for tag, start, end in _fields(payload, 0, len(payload)):
            if tag == _TAG1_LEN:
                _parse_map(payload, start, end, context, _parse_feature)
            elif tag == _TAG2_LEN:
                _parse_map(payload, start, end, lists, _parse_feature_list)
        return context, lists
    except (_Malformed, IndexError, UnicodeDecodeError) as err:
        raise _malformed_error("SequenceExample", err) from None


def _malformed_error(kind: str, err: Exception) -> DataError:
    if isinstance(err, UnicodeDecodeError):
        detail = "a feature name is not UTF-8"
    else:
        detail = str(err) if isinstance(err, _Malformed) else "a field runs past the end"
    return DataError(
        f"payload is not a valid tf.train.{kind} ({detail}); the file is corrupt or holds "
        f"another message type"
    )


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode the varint at ``buf[pos]``: ``(value mod 2**64, position after it)``."""
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    value, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & _U64, pos + 1
        shift += 7
        if shift > 63:
            raise _Malformed(f"varint at byte {pos} is longer than 10 bytes")


def _fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Walk the fields of the message in ``buf[pos:end]``: yields ``(tag, start, stop)``.

    For length-delimited fields ``buf[start:stop]`` is the payload; for varints ``start`` is the
    value; for fixed32/64 ``start`` is the value's offset. Groups (deprecated) are skipped.
    """
    while pos < end:
        tag, pos = _varint(buf, pos)
        wire = tag & 7
        if wire == _LEN:
            length, pos = _varint(buf, pos)
            stop = pos + length
            if stop > end:
                raise _Malformed(f"field {tag >> 3} at byte {pos} is longer than its message")
            yield tag, pos, stop
            pos = stop
        elif wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield tag, value, pos
        elif wire in (_I32, _I64):
            width = 4 if wire == _I32 else 8
            yield tag, pos, pos + width
            pos += width
        elif wire == _SGROUP:
            pos = _skip_group(buf, pos, end, tag >> 3)
        else:
            raise _Malformed(f"wire type {wire} at byte {pos} is invalid here")
    if pos != end:
        raise _Malformed(f"the last field runs past byte {end}")


def _skip_group(buf: bytes, pos: int, end: int, field: int) -> int:
    """Position after the end-group tag that closes the group of ``field`` opened before ``pos``."""
    while pos < end:
        tag, pos = _varint(buf, pos)
        wire = tag & 7
        if wire == _EGROUP and tag >> 3 == field:
            return pos
        if wire == _LEN:
            length, pos = _varint(buf, pos)
            pos += length
        elif wire == _VARINT:
            pos = _varint(buf, pos)[1]
        elif wire in (_I32, _I64):
            pos += 4 if wire == _I32 else 8
        elif wire == _SGROUP:
            pos = _skip_group(buf, pos, end, tag >> 3)
        else:
            raise _Malformed(f"wire type {wire} at byte {pos} is invalid here")
    raise _Malformed(f"group {field} is not closed")


def _parse_map(
    buf: bytes,
    start: int,
    end: int,
    out: dict[str, _V],
    parse_value: Callable[[bytes, Sequence[tuple[int, int]]], _V],
) -> None:
    """Decode the map entries (field 1) of ``buf[start:end]`` into ``out``; the last key wins.

    ``parse_value(buf, segments)`` decodes a value given its ``[(start, stop)]`` segments: a
    value sent more than once in one entry is the merge of its encodings.
    """
    for tag, entry_start, entry_end in _fields(buf, start, end):
        if tag != _TAG1_LEN:
            continue
        if (
            entry_start < entry_end and buf[entry_start] == _TAG1_LEN
        ):  # fast path: the usual {key, value} encoding
            key_len, key_start = _varint(buf, entry_start + 1)
            key_end = key_start + key_len
            value = _sole_field(buf, key_end, entry_end)
            if value is not None and value[0] == _TAG2_LEN:
                out[buf[key_start:key_end].decode("utf-8")] = parse_value(buf, [value[1:]])
                continue
        key = b""
        segments: list[tuple[int, int]] = []
        for entry_tag, a, b in _fields(buf, entry_start, entry_end):
            if entry_tag == _TAG1_LEN:
                key = buf[a:b]
            elif entry_tag == _TAG2_LEN:
                segments.append((a, b))
        out[key.decode("utf-8")] = parse_value(buf, segments)


def _parse_feature(buf: bytes, segments: Sequence[tuple[int, int]]) -> FeatureValue:
    """Decode one ``Feature`` from its segments (oneof: the last kind seen wins)."""
    if len(segments) == 1:  # fast path: one numeric list, one packed field
        outer = _sole_field(buf, *segments[0])
        inner = _sole_field(buf, outer[1], outer[2]) if outer is not None else None
        if outer is not None and inner is not None and inner[0] == _TAG1_LEN:
            if outer[0] == _TAG2_LEN and not (inner[2] - inner[1]) % 4:
                return np.frombuffer(buf, "<f4", (inner[2] - inner[1]) // 4, inner[1]).astype(
                    np.float32
                )
            if outer[0] == _TAG3_LEN:
                return _packed_varints(buf, inner[1], inner[2]).view(np.int64)
    kind = 0
    parts: list[tuple[int, int]] = []
    for start, end in segments:
        for tag, a, b in _fields(buf, start, end):
            if tag not in (_TAG1_LEN, _TAG2_LEN, _TAG3_LEN):
                continue
            if tag >> 3 != kind:
                kind, parts = tag >> 3, []
            parts.append((a, b))
    if kind == _FLOAT:
        return _float_list(buf, parts)
    if kind == _INT64:
        return _int64_list(buf, parts)
    return [
        buf[a:b]
        for start, end in parts
        for tag, a, b in _fields(buf, start, end)
        if tag == _TAG1_LEN
    ]


def _sole_field(buf: bytes, start: int, end: int) -> tuple[int, int, int] | None:
    """``(tag, payload start, payload end)`` if ``buf[start:end]`` is exactly one
    length-delimited field with a one-byte tag, else None."""
    if start >= end or buf[start] & 0x87 != _LEN:
        return None
    length, pos = _varint(buf, start + 1)
    return (buf[start], pos, pos + length) if pos + length == end else None


def _float_list(buf: bytes, parts: Sequence[tuple[int, int]]) -> np.ndarray:
    """``FloatList.value`` of the given message parts, packed or not: ``(n,)`` float32."""
    chunks: list[np.ndarray] = []
    singles: list[float] = []
    for start, end in parts:
        for tag, a, b in _fields(buf, start, end):
            if tag == _TAG1_I32:
                singles.append(struct.unpack_from("<f", buf, a)[0])
            elif tag == _TAG1_LEN:
                if (b - a) % 4:
                    raise _Malformed(f"packed floats at byte {a} are not a multiple of 4 bytes")
                if singles:
                    chunks.append(np.array(singles, dtype=np.float32))
                    singles = []
                chunks.append(np.frombuffer(buf, "<f4", (b - a) // 4, a))
    if singles:
        chunks.append(np.array(singles, dtype=np.float32))
    return np.concatenate(chunks or [np.zeros(0, np.float32)], dtype=np.float32)


def _int64_list(buf: bytes, parts: Sequence[tuple[int, int]]) -> np.ndarray:
    """``Int64List.value`` of the given message parts, packed or not: ``(n,)`` int64."""
    chunks: list[np.ndarray] = []
    singles: list[int] = []
    for start, end in parts:
        for tag, a, b in _fields(buf, start, end):
            if tag == _TAG1_VARINT:
                singles.append(a)
            elif tag == _TAG1_LEN:
                chunks.append(np.array(singles, dtype=np.uint64))
                chunks.append(_packed_varints(buf, a, b))
                singles = []
    chunks.append(np.array(singles, dtype=np.uint64))
    return np.concatenate(chunks).view(np.int64)


def _packed_varints(buf: bytes, start: int, end: int) -> np.ndarray:
    """Decode the packed varints in ``buf[start:end]``: ``(n,)`` uint64 (two's complement)."""
    if end - start <= 32:  # a few labels: a Python loop beats numpy's call overhead
        values = []
        pos = start
        while pos < end:
            value, pos = _varint(buf, pos)
            values.append(value)
        if pos != end:
            raise _Malformed(f"packed varints at byte {start} run past their field")
        return np.array(values, dtype=np.uint64)
    raw = np.frombuffer(buf, np.uint8, end - start, start)
    last = raw < 0x80  # the final byte of each varint
    if not last[-1]:
        raise _Malformed(f"packed varints at byte {start} run past their field")
    first = np.flatnonzero(np.concatenate(([True], last[:-1])))
    index = np.arange(raw.size) - np.repeat(first, np.diff(np.append(first, raw.size)))
    if index.max() > 9:
        raise _Malformed(f"a varint in the packed list at byte {start} is longer than 10 bytes")
    shifted = (raw & 0x7F).astype(np.uint64) << (index * 7).astype(np.uint64)
    return np.bitwise_or.reduceat(shifted, first)


def _parse_feature_list(buf: bytes, segments: Sequence[tuple[int, int]]) -> FrameValue:
    """Decode one ``FeatureList``: ``(n_frames, dim)`` uint8 for equal byte frames, else a list."""
    if len(segments) == 1:
        frames = _uniform_byte_frames(buf, *segments[0])
        if frames is not None:
            return frames
    values = [
        _parse_feature(buf, [(a, b)])
        for start, end in segments
        for tag, a, b in _fields(buf, start, end)
        if tag == _TAG1_LEN
    ]
    if values and all(isinstance(v, list) and len(v) == 1 for v in values):
        sizes = {len(v[0]) for v in values}
        if len(sizes) == 1:
            joined = b"".join(v[0] for v in values)
            return np.frombuffer(joined, np.uint8).reshape(len(values), sizes.pop()).copy()
    return values


def _uniform_byte_frames(buf: bytes, start: int, end: int) -> np.ndarray | None:
    """Fast path: a FeatureList whose frames are all ``Feature{bytes_list{value: <dim bytes>}}``
    encoded alike lies at a fixed stride; return its ``(n_frames, dim)`` uint8, else None.

    The first frame's header (three tags and lengths) fixes the stride; one vectorised compare
    checks that every frame starts with the same header bytes.
    """
    try:
        if end - start < 6 or buf[start] != _TAG1_LEN:
            return None
        feature_len, feature_start = _varint(buf, start + 1)
        if buf[feature_start] != _TAG1_LEN:
            return None
        list_len, list_start = _varint(buf, feature_start + 1)
        if buf[list_start] != _TAG1_LEN:
            return None
        dim, data = _varint(buf, list_start + 1)
    except IndexError:  # a header cut short: leave the verdict to the general decoder
        return None
    frame_end = data + dim
    if feature_start + feature_len != frame_end or list_start + list_len != frame_end:
        return None  # the Feature or BytesList holds more than one byte string
    stride, head = frame_end - start, data - start
    if (end - start) % stride:
        return None
    rows = np.frombuffer(buf, np.uint8, end - start, start).reshape(-1, stride)
    if not (rows[:, :head] == rows[0, :head]).all():
        return None
    return rows[:, head:]


# --------------------------------------------------------------------------- protobuf encoding

FeatureInput: TypeAlias = "Sequence[bytes] | np.ndarray"
"""A Feature to encode: a sequence of byte strings (bytes_list), a float array (float_list,
stored as float32) or an integer array (int64_list)."""


def encode_example(features: Mapping[str, FeatureInput]) -> bytes:
    """Serialize ``{name: FeatureInput}`` as a ``tf.train.Example``."""
    return _len_field(1, _encode_features(features))


def encode_sequence_example(
    context: Mapping[str, FeatureInput],
    feature_lists: Mapping[str, np.ndarray | Sequence[FeatureInput]],
) -> bytes:
    """Serialize a ``tf.train.SequenceExample``.

    ``feature_lists[name]`` is either ``(n_frames, dim)`` uint8 (each frame one byte string, as
    YouTube-8M frame features) or a sequence of per-frame `FeatureInput` s.
    """
    entries = [
        _len_field(1, _len_field(1, name.encode("utf-8")) + _len_field(2, _encode_frames(frames)))
        for name, frames in feature_lists.items()
    ]
    return _len_field(1, _encode_features(context)) + _len_field(2, b"".join(entries))


def _encode_frames(frames: np.ndarray | Sequence[FeatureInput]) -> bytes:
    """A ``FeatureList`` payload; uint8 matrices are encoded with one vectorised copy."""
    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 2:
        n_frames, dim = frames.shape
        value_head = bytes([_TAG1_LEN]) + _varint_bytes(dim)
        list_head = bytes([_TAG1_LEN]) + _varint_bytes(len(value_head) + dim)
        feature_head = bytes([_TAG1_LEN]) + _varint_bytes(len(list_head) + len(value_head) + dim)
        head = feature_head + list_head + value_head
        rows = np.empty((n_frames, len(head) + dim), np.uint8)
        rows[:, : len(head)] = np.frombuffer(head, np.uint8)
        rows[:, len(head) :] = frames
        return rows.tobytes()
    return b"".join(_len_field(1, _encode_feature(f)) for f in frames)


def _encode_features(features: Mapping[str, FeatureInput]) -> bytes:
    return b"".join(
        _len_field(1, _len_field(1, name.encode("utf-8")) + _len_field(2, _encode_feature(v)))
        for name, v in features.items()
    )


def _encode_feature(value: FeatureInput) -> bytes:
    """A ``Feature`` payload: bytes_list, float_list (packed) or int64_list (packed)."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return _len_field(_FLOAT, _len_field(1, value.astype("<f4").tobytes()))
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        packed = b"".join(_varint_bytes(int(v) & _U64) for v in value.ravel())
        return _len_field(_INT64, _len_field(1, packed))
    if isinstance(value, np.ndarray | str | bytes) or not all(isinstance(v, bytes) for v in value):
        raise TypeError(
            f"a feature value must be a list of bytes or a float/int numpy array, "
            f"got {type(value).__name__}; wrap byte strings in a list"
        )
    return _len_field(_BYTES, b"".join(_len_field(1, v) for v in value))


def _len_field(field: int, payload: bytes) -> bytes:
    """``payload`` as a length-delimited field."""
    return _varint_bytes(field << 3 | _LEN) + _varint_bytes(len(payload)) + payload


def _varint_bytes(value: int) -> bytes:
    """``value`` (0 <= value < 2**64) as a protobuf varint."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
