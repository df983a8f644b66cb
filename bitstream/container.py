"""Byte layout of the container: preamble, chunks `length | type | payload | CRC-32`, and the payloads of
the STEP, indx and TAIL chunks (SPEC.md). Reading never trusts a length before checking it."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from . import limits
from .errors import CorruptError, LimitError, NotOtokError, TruncatedError, UnsupportedError

MAGIC = b"\x89OTK\r\n\x1a\n"
VERSION_MAJOR = 1
VERSION_MINOR = 2  # the newest minor version this reader knows; a writer puts the lowest that fits its file
PREAMBLE = MAGIC + struct.pack("<HH", VERSION_MAJOR, VERSION_MINOR)


def preamble(minor: int) -> bytes:
    """The 12 preamble bytes of a file of format version 1.`minor`."""
    return MAGIC + struct.pack("<HH", VERSION_MAJOR, minor)


HEAD, PRIO, STEP, INDX, TAIL = b"HEAD", b"PRIO", b"STEP", b"indx", b"TAIL"
ENCD = b"encd"  # ancillary: encoder settings, UTF-8 JSON (SPEC §2.3, informative)
FRMS = b"frms"  # ancillary: the frame count, u64, after the last STEP when its last step is padded (SPEC §2.3)
FRMS_PAYLOAD = struct.Struct("<Q")
SASP = b"sasp"  # ancillary: the sample aspect ratio, u32 numerator and denominator (SPEC §2.3)
SASP_PAYLOAD = struct.Struct("<II")
KNOWN_CRITICAL = {HEAD, PRIO, STEP, TAIL}

_CHUNK_HEAD = struct.Struct("<I4s")
_CRC = struct.Struct("<I")
CHUNK_OVERHEAD = _CHUNK_HEAD.size + _CRC.size  # 12 bytes

STEP_HEAD = struct.Struct("<IHBB")  # first_step, n_steps, flags, reserved
KEYFRAME = 1
INDEX_ENTRY = struct.Struct("<IHBBQ")  # first_step, n_steps, flags, reserved, chunk offset
TAIL_PAYLOAD = struct.Struct("<QQQ")  # frames, steps, index offset
TAIL_SIZE = CHUNK_OVERHEAD + TAIL_PAYLOAD.size  # 36 bytes


def is_critical(ctype: bytes) -> bool:
    """Critical chunk types start with an upper-case letter (bit 5 of the first byte clear)."""
    return not ctype[0] & 0x20


def chunk_bytes(ctype: bytes, payload: bytes) -> bytes:
    """A whole chunk: u32 payload length, 4-byte type, payload, CRC-32 of type + payload."""
    crc = zlib.crc32(payload, zlib.crc32(ctype))
    return _CHUNK_HEAD.pack(len(payload), ctype) + payload + _CRC.pack(crc)


@dataclass(frozen=True)
class Chunk:
    offset: int  # file offset of the chunk's length field
    ctype: bytes
    payload: bytes

    @property
    def end(self) -> int:
        return self.offset + CHUNK_OVERHEAD + len(self.payload)


@dataclass(frozen=True)
class StepInfo:
    """The fixed fields of a STEP chunk (or of its index entry)."""

    first_step: int
    n_steps: int
    keyframe: bool
    offset: int = 0

    def pack(self) -> bytes:
        return STEP_HEAD.pack(self.first_step, self.n_steps, KEYFRAME if self.keyframe else 0, 0)

    def pack_entry(self) -> bytes:
        return INDEX_ENTRY.pack(self.first_step, self.n_steps, KEYFRAME if self.keyframe else 0, 0, self.offset)


def parse_step(chunk: Chunk) -> tuple[StepInfo, bytes]:
    """STEP payload -> (fields, coder data)."""
    if len(chunk.payload) < STEP_HEAD.size:
        raise CorruptError(f"STEP chunk at byte {chunk.offset} is shorter than its {STEP_HEAD.size} fixed bytes")
    first, n, flags, _ = STEP_HEAD.unpack_from(chunk.payload)
    if not 1 <= n <= limits.MAX_STEPS_PER_CHUNK:
        raise LimitError(f"STEP chunk at byte {chunk.offset} claims {n} steps (allowed 1..{limits.MAX_STEPS_PER_CHUNK})")
    return StepInfo(first, n, bool(flags & KEYFRAME), chunk.offset), chunk.payload[STEP_HEAD.size:]


def parse_index(chunk: Chunk) -> list[StepInfo]:
    """indx payload: u32 count, then `count` 16-byte entries."""
    p = chunk.payload
    if len(p) < 4:
        raise CorruptError("index chunk too short")
    (count,) = struct.unpack_from("<I", p)
    if count > limits.MAX_INDEX_ENTRIES or len(p) != 4 + count * INDEX_ENTRY.size:
        raise CorruptError(f"index chunk holds {len(p)} bytes, which does not fit its {count} entries")
    return [StepInfo(f, n, bool(fl & KEYFRAME), off) for f, n, fl, _, off in INDEX_ENTRY.iter_unpack(p[4:])]


def pack_index(entries: list[StepInfo]) -> bytes:
    return struct.pack("<I", len(entries)) + b"".join(e.pack_entry() for e in entries)


def read_preamble(f: BinaryIO) -> int:
    """Check magic and version (12 bytes) -> the minor version."""
    data = _read_exact(f, len(PREAMBLE))
    if not MAGIC.startswith(data[:len(MAGIC)]):
        raise NotOtokError("not an .otok file (the magic bytes do not match)")
    if len(data) < len(PREAMBLE):
        raise TruncatedError(f"file truncated at byte {len(data)}, inside the 12-byte preamble")
    major, minor = struct.unpack_from("<HH", data, len(MAGIC))
    if major != VERSION_MAJOR:
        raise UnsupportedError(f".otok format version {major}.{minor} is not supported (this reader reads {VERSION_MAJOR}.x)")
    return minor


class ChunkReader:
    """Reads chunks one after another from `f`, starting at byte `offset`.

    `size` is the file size when known (seekable input): lengths are then checked against the bytes that
    remain before anything is read. On a pipe, payloads are read in blocks, so memory follows the bytes
    actually present. `next()` returns None at a clean end of input.
    """

    def __init__(self, f: BinaryIO, offset: int, size: int | None) -> None:
        self.f, self.offset, self.size = f, offset, size

    def next(self) -> Chunk | None:
        start = self.offset
        head = _read_exact(self.f, _CHUNK_HEAD.size)
        if not head:
            return None
        if len(head) < _CHUNK_HEAD.size:
            raise self._truncated(start, len(head))
        length, ctype = _CHUNK_HEAD.unpack(head)
        if not all(65 <= (b & ~0x20) <= 90 for b in ctype):
            raise CorruptError(f"bytes at offset {start} are not a chunk (type {ctype!r} is not 4 ASCII letters)")
        if length > limits.MAX_CHUNK_PAYLOAD:
            raise LimitError(f"chunk {ctype.decode()} at byte {start} claims {length} bytes, over the cap of "
                             f"{limits.MAX_CHUNK_PAYLOAD}")
        if self.size is not None and start + CHUNK_OVERHEAD + length > self.size:
            raise self._truncated(start, self.size - start, ctype, length)
        body = _read_exact(self.f, length + _CRC.size)
        if len(body) < length + _CRC.size:
            raise self._truncated(start, _CHUNK_HEAD.size + len(body), ctype, length)
        payload = body[:length]
        if zlib.crc32(payload, zlib.crc32(ctype)) != _CRC.unpack_from(body, length)[0]:
            raise CorruptError(f"chunk {ctype.decode()} at byte {start} is damaged (CRC-32 mismatch)")
        self.offset = start + CHUNK_OVERHEAD + length
        return Chunk(start, ctype, payload)

    @staticmethod
    def _truncated(start: int, got: int, ctype: bytes = b"", length: int = 0) -> TruncatedError:
        what = f"inside chunk {ctype.decode()} ({CHUNK_OVERHEAD + length} bytes)" if ctype else "inside a chunk header"
        return TruncatedError(f"file truncated at byte {start + got}, {what} that starts at byte {start}")


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """Read up to n bytes, in blocks of at most READ_BLOCK, stopping early only at end of input."""
    parts, left = [], n
    while left > 0:
        block = f.read(min(left, limits.READ_BLOCK))
        if not block:
            break
        parts.append(block)
        left -= len(block)
    return b"".join(parts)
