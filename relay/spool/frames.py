"""One request's records as one frame of a segment file (docs/design.md §9.2).

    frame   := length:u32 crc:u32 body            crc = CRC-32 of length and body
    body    := seq:u64 spooled_at:f64 nvalues:u16 value{nvalues} nrecords:u16 record{nrecords}
    value   := length:u32 bytes
    record  := event_type:str8 topic:str16 key:bytes16 value_index:u16 nheaders:u16 header*
    header  := name:str16 value:bytes32

Big-endian; `strN` / `bytesN` are a length of N bits, then that many bytes. Every record of a
request carries the same body, so values are stored once and records point at them. A frame is
all of a request's records or none: it is only used when its CRC matches and its sequence
number is the one expected, and a frame that runs past what is known to be written is torn.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from relay.config import EventType
from relay.records import Record

_HEAD = struct.Struct(">II")
_LENGTH = struct.Struct(">I")
_BODY_HEAD = struct.Struct(">Qd")
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

HEAD_BYTES = _HEAD.size
# No request comes near this (a 64 MiB body limit, a few records); a length above it is damage.
MAX_BODY_BYTES = 256 * 1024 * 1024
_EVENT_TYPES = {t.value: t for t in EventType}


class Frame(NamedTuple):
    seq: int
    spooled_at: float  # Unix time the request was spooled
    records: list[Record]


class FrameError(Exception):
    """Bytes that are not a whole, intact frame."""


def encode(seq: int, spooled_at: float, records: list[Record]) -> bytes:
    parts: list[bytes] = [_BODY_HEAD.pack(seq, spooled_at)]
    values: list[bytes] = []
    indexes: list[int] = []
    for record in records:
        # Records of one request share one body object; compare identity first.
        index = next(
            (i for i, value in enumerate(values) if value is record.value or value == record.value),
            len(values),
        )
        if index == len(values):
            values.append(record.value)
        indexes.append(index)
    parts.append(_U16.pack(len(values)))
    for value in values:
        parts += (_U32.pack(len(value)), value)
    parts.append(_U16.pack(len(records)))
    for record, index in zip(records, indexes, strict=True):
        event_type = record.event_type.value.encode()
        topic = record.topic.encode()
        parts += (
            _U8.pack(len(event_type)),
            event_type,
            _U16.pack(len(topic)),
            topic,
            _U16.pack(len(record.key)),
            record.key,
            _U16.pack(index),
            _U16.pack(len(record.headers)),
        )
        for name, header_value in record.headers:
            encoded = name.encode()
            parts += (_U16.pack(len(encoded)), encoded, _U32.pack(len(header_value)), header_value)
    body = b"".join(parts)
    crc = zlib.crc32(body, zlib.crc32(_LENGTH.pack(len(body))))
    return _HEAD.pack(len(body), crc) + body


class Decoded(NamedTuple):
    frames: list[tuple[Frame, int]]  # each frame with the offset just past it in `data`
    consumed: int  # bytes of `data` those frames take
    problem: str | None  # why decoding stopped before the end of `data`, if it did


def decode(data: bytes, next_seq: int, *, complete: bool) -> Decoded:
    """The whole frames at the start of `data`, numbered from `next_seq` on.

    `complete`: `data` ends where the written part of the segment ends, so a frame cut short
    by its end is torn (a problem); otherwise it is only cut by the read and `consumed` says
    where to read on from.
    """
    frames: list[tuple[Frame, int]] = []
    view = memoryview(data)
    offset = 0
    end = len(data)
    while offset < end:
        if end - offset < HEAD_BYTES:
            return Decoded(frames, offset, "torn frame header" if complete else None)
        length, crc = _HEAD.unpack_from(view, offset)
        if length > MAX_BODY_BYTES:
            return Decoded(frames, offset, f"implausible frame length {length}")
        stop = offset + HEAD_BYTES + length
        if stop > end:
            return Decoded(frames, offset, "torn frame" if complete else None)
        body = view[offset + HEAD_BYTES : stop]
        if zlib.crc32(body, zlib.crc32(view[offset : offset + 4])) != crc:
            return Decoded(frames, offset, "frame checksum mismatch")
        try:
            frame = _decode_body(body)
        except (FrameError, struct.error, UnicodeDecodeError, IndexError) as exc:
            return Decoded(frames, offset, f"malformed frame: {exc}")
        if frame.seq != next_seq:
            return Decoded(frames, offset, f"frame {frame.seq} where {next_seq} was expected")
        frames.append((frame, stop))
        next_seq += 1
        offset = stop
    return Decoded(frames, offset, None)


def _decode_body(body: memoryview) -> Frame:
    seq, spooled_at = _BODY_HEAD.unpack_from(body, 0)
    at = _BODY_HEAD.size

    def take(size: int) -> bytes:
        nonlocal at
        if at + size > len(body):
            raise FrameError("field past the end of the frame")
        chunk = bytes(body[at : at + size])
        at += size
        return chunk

    def number(unit: struct.Struct) -> int:
        value: int = unit.unpack(take(unit.size))[0]
        return value

    values = [take(number(_U32)) for _ in range(number(_U16))]
    records = []
    for _ in range(number(_U16)):
        name = take(number(_U8)).decode()
        event_type = _EVENT_TYPES.get(name)
        if event_type is None:
            raise FrameError(f"unknown event type {name!r}")
        topic = take(number(_U16)).decode()
        key = take(number(_U16))
        value = values[number(_U16)]
        headers = [(take(number(_U16)).decode(), take(number(_U32))) for _ in range(number(_U16))]
        records.append(Record(event_type, topic, key, value, headers))
    if at != len(body):
        raise FrameError("bytes after the last record")
    return Frame(seq, spooled_at, records)
