"""Segment files: their names, their header, reading frames back, and recovery at start-up
(docs/design.md §9.2). Everything here blocks: the spool calls it from a thread.

A segment is `<base seq, 20 digits>.seg`: a header naming the format and the base sequence
number, then frames numbered from the base on. Files are written by one writer, only ever
appended to, never reused: a drained segment is deleted whole.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import NamedTuple

from relay.spool.frames import HEAD_BYTES, Frame, decode

log = logging.getLogger("relay.spool")

MAGIC = b"WARSPOOL"
VERSION = 1
_HEADER = struct.Struct(">8sIQ")
HEADER_BYTES = _HEADER.size
SUFFIX = ".seg"
# What one read takes at most (a larger frame is read whole all the same).
READ_BYTES = 1024 * 1024


def path_of(directory: Path, base: int) -> Path:
    return directory / f"{base:020d}{SUFFIX}"


def header(base: int) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, base)


def listed(directory: Path) -> list[tuple[int, Path]]:
    """The segment files in `directory`, oldest first; other files are not the spool's."""
    found = []
    for path in directory.iterdir():
        stem = path.name.removesuffix(SUFFIX)
        if path.name.endswith(SUFFIX) and len(stem) == 20 and stem.isdigit():
            found.append((int(stem), path))
    return sorted(found)


class Chunk(NamedTuple):
    frames: list[tuple[Frame, int]]  # each frame with the file offset just past it
    end: int  # the offset to read on from
    problem: str | None  # the first bad frame's fault; nothing after it is to be trusted


def read_chunk(path: Path, offset: int, limit: int, next_seq: int) -> Chunk:
    """The whole frames from `offset` on, up to `limit` (the end of what is known to be
    written): about READ_BYTES of them, at least one unless there is none or it is bad."""
    with path.open("rb", buffering=0) as file:
        fd = file.fileno()
        data = os.pread(fd, min(limit - offset, READ_BYTES), offset)
        complete = offset + len(data) >= limit or len(data) < min(limit - offset, READ_BYTES)
        decoded = decode(data, next_seq, complete=complete)
        if not decoded.frames and decoded.problem is None and len(data) >= HEAD_BYTES:
            # The first frame is larger than one read: read it whole.
            length = int.from_bytes(data[:4], "big")
            data = os.pread(fd, min(limit - offset, HEAD_BYTES + length), offset)
            decoded = decode(data, next_seq, complete=True)
    frames = [(frame, offset + end) for frame, end in decoded.frames]
    return Chunk(frames, offset + decoded.consumed, decoded.problem)


class ForeignSegment(Exception):
    """A file named like a segment that this version cannot read."""


class Scanned(NamedTuple):
    """A segment as recovery found it."""

    base: int
    path: Path
    size: int  # bytes of header and intact frames
    frames: int
    first_spooled_at: float | None
    problem: str | None  # why the rest of the file was dropped


def scan(path: Path, base: int) -> Scanned:
    """Read a whole segment, frame by frame, up to its end or its first bad frame."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        # Created, but its header was never made durable: no frame in it got a 200.
        return Scanned(base, path, 0, 0, None, None)
    magic, version, named = _HEADER.unpack(head)
    if magic != MAGIC or version != VERSION or named != base:
        # Never delete what may be another version's records (a downgrade): refuse instead.
        raise ForeignSegment(
            f"{path} is not a spool segment of format {VERSION} (magic {magic!r}, version "
            f"{version}, base {named}): move it out of the spool directory"
        )
    offset, frames, first, problem = HEADER_BYTES, 0, None, None
    while offset < size and problem is None:
        chunk = read_chunk(path, offset, size, base + frames)
        if chunk.frames and first is None:
            first = chunk.frames[0][0].spooled_at
        frames += len(chunk.frames)
        offset, problem = chunk.end, chunk.problem
    return Scanned(base, path, offset, frames, first, problem)


class Recovered(NamedTuple):
    segments: list[Scanned]  # those holding frames, oldest first
    corrupt: int  # bad frames found (each ends what is read of its segment)
    next_seq: int


def recover(directory: Path) -> Recovered:
    """Every segment checked from its first frame to its last; a segment's bad frame and what
    follows it are cut off (they never got a 200 when they are a torn tail; otherwise they
    cannot be trusted), and segments left without frames are deleted. Later segments are kept:
    a write that failed closed its segment, so each one holds frames acknowledged on their own."""
    directory.mkdir(parents=True, exist_ok=True)
    kept: list[Scanned] = []
    corrupt = 0
    next_seq = 0
    for base, path in listed(directory):
        found = scan(path, base)
        if found.problem is not None:
            corrupt += 1
            dropped = path.stat().st_size - found.size
            log.error(
                "spool segment damaged: the rest of it is dropped",
                extra={"segment": path.name, "offset": found.size, "bytes_dropped": dropped,
                       "problem": found.problem, "frames_kept": found.frames},
            )  # fmt: skip
        if found.frames == 0:
            path.unlink()
            continue
        if found.problem is not None:
            _truncate(path, found.size)
        kept.append(found)
        next_seq = max(next_seq, base + found.frames)
    if kept:
        sync_directory(directory)
    return Recovered(kept, corrupt, next_seq)


def _truncate(path: Path, size: int) -> None:
    """Cut a damaged segment where its intact frames end, durably, so the damage is counted
    once and a later start reads only what recovery kept."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_directory(directory: Path) -> None:
    """Make the directory's entries durable (a new segment's name, a deletion): fsync of a
    file does not cover its name in the directory."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
