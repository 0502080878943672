"""The spool's frame format: a request's records as one unit, whole or not at all."""

from __future__ import annotations

import struct
import zlib

import pytest

from relay.config import EventType
from relay.records import Record
from relay.spool import frames


def records(index: int, body: bytes = b'{"object":"whatsapp_business_account"}') -> list[Record]:
    shared = [("ce_time", b"2026-11-25T21:05:05.131009Z"), ("relay-request-id", b"r%d" % index)]
    return [
        Record(EventType.MESSAGE, "whatsapp.message", b"1:%d" % index, body,
               [("ce_id", b"a-message"), *shared]),
        Record(EventType.STATUS, "whatsapp.status", b"", body, [("ce_id", b"a-status"), *shared]),
    ]  # fmt: skip


def log(count: int, first_seq: int = 7) -> tuple[bytes, list[int]]:
    data, ends = b"", []
    for i in range(count):
        data += frames.encode(first_seq + i, 1764104705.5 + i, records(i))
        ends.append(len(data))
    return data, ends


def test_a_frame_round_trips_and_stores_a_shared_body_once() -> None:
    body = b"x" * 5000
    data = frames.encode(42, 1764104705.25, records(3, body))
    assert len(data) < 2 * len(body)  # both records carry the body; the frame holds it once
    decoded = frames.decode(data, 42, complete=True)
    assert decoded.problem is None
    [(frame, end)] = decoded.frames
    assert end == len(data) == decoded.consumed
    assert frame == frames.Frame(42, 1764104705.25, records(3, body))
    assert frame.records[0].value is frame.records[1].value


def test_a_cut_anywhere_yields_the_whole_frames_before_it_and_nothing_half() -> None:
    data, ends = log(3)
    for cut in range(len(data) + 1):
        whole = [end for end in ends if end <= cut]
        complete = frames.decode(data[:cut], 7, complete=True)
        assert [end for _, end in complete.frames] == whole
        assert complete.consumed == (whole[-1] if whole else 0)
        # At the end of what was written, a partial frame is torn; within a read, it is only
        # the read's end.
        assert (complete.problem is None) == (cut in (0, *ends))
        partial = frames.decode(data[:cut], 7, complete=False)
        assert partial.problem is None
        assert partial.consumed == complete.consumed


@pytest.mark.parametrize("where", ["length", "crc", "body"])
def test_a_damaged_frame_stops_the_read_there(where: str) -> None:
    data, ends = log(3)
    damaged = bytearray(data)
    offset = {"length": ends[0], "crc": ends[0] + 5, "body": ends[0] + 40}[where]
    damaged[offset] ^= 0x01
    decoded = frames.decode(bytes(damaged), 7, complete=True)
    assert [end for _, end in decoded.frames] == ends[:1]
    assert decoded.problem is not None


def test_a_frame_out_of_sequence_is_refused() -> None:
    data, ends = log(2)
    decoded = frames.decode(data, 8, complete=True)
    assert decoded.frames == []
    assert decoded.problem == "frame 7 where 8 was expected"
    skipped = frames.decode(data[: ends[0]] + frames.encode(9, 0.0, records(9)), 7, complete=True)
    assert len(skipped.frames) == 1
    assert skipped.problem == "frame 9 where 8 was expected"


def test_an_implausible_length_is_damage_not_a_reason_to_allocate() -> None:
    garbage = struct.pack(">II", frames.MAX_BODY_BYTES + 1, 0) + b"\0" * 32
    assert frames.decode(garbage, 0, complete=False).problem == (
        f"implausible frame length {frames.MAX_BODY_BYTES + 1}"
    )


def test_a_frame_with_a_valid_checksum_but_a_bad_layout_is_refused() -> None:
    body = struct.pack(">Qd", 0, 0.0) + struct.pack(">H", 1)  # one value, then nothing
    crc = zlib.crc32(body, zlib.crc32(struct.pack(">I", len(body))))
    decoded = frames.decode(struct.pack(">II", len(body), crc) + body, 0, complete=True)
    assert decoded.frames == []
    assert decoded.problem is not None
    assert decoded.problem.startswith("malformed frame")
