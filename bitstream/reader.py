"""The reader: header, step iteration, seeking through the index and keyframes, verification."""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from . import container as ct
from . import limits, timeline
from .coders import coder_by_name
from .errors import CorruptError, OtokError, TruncatedError, UnsupportedError, UsageError
from .header import Header
from .prior import Prior

KEPT_ANCILLARY_BYTES = 1 << 16  # larger ancillary payloads before the first step are skipped, not kept


class OtokWarning(UserWarning):
    """Issued when iteration stops early at a truncated or damaged chunk (message: where and why)."""


@dataclass(frozen=True)
class Trailer:
    frames: int
    steps: int
    index_offset: int


@dataclass(frozen=True)
class VerifyReport:
    """What `OtokReader.verify()` checked: every chunk's CRC, every step decoded, index and trailer."""

    steps: int
    frames: int
    chunks: int
    bytes: int
    indexed: bool


class OtokReader:
    """Read an `.otok` file from a path or a readable binary file object (a pipe works for one forward pass).

    reader.header             # Header
    reader.format_version     # "1.2": the version its preamble gives
    for step in reader: ...   # (h, w) int64 grids, or (C, h, w) float16 latents, from the current position
    reader.seek(frame)        # -> the step holding `frame`; the next iteration starts there
    reader.frames, reader.steps
    reader.damage             # None, or where and why the last iteration stopped early
    reader.verify()           # VerifyReport, or raises OtokError

    `prior`: the ctx prior table when the file references one without embedding it, or several (e.g. a
    model's current table and those of its earlier releases): the one whose hash the header names is used.
    """

    def __init__(self, src: str | os.PathLike | BinaryIO, *, prior: Prior | Iterable[Prior] | None = None) -> None:
        self._own = isinstance(src, (str, os.PathLike))
        self._f: BinaryIO = open(src, "rb") if self._own else src  # type: ignore[assignment]
        try:
            self._open(prior)
        except BaseException:
            self.close()
            raise

    def _open(self, prior: Prior | Iterable[Prior] | None) -> None:
        self._seekable = _seekable(self._f)
        self._base = self._f.tell() if self._seekable else 0
        self._size = self._f.seek(0, os.SEEK_END) - self._base if self._seekable else None
        if self._seekable:
            self._f.seek(self._base)
        self.header, self._chunks, self.format_version = _read_head(self._f, self._size)
        self._setup_error: OtokError | None = None
        self._pending, self._embedded_prior = self._read_setup_chunks()
        self.use_priors(prior)
        self._data_start = self._pending.offset if self._pending else self._chunks.offset
        self._tail_hint: int | None = None  # a trailer's frame count, where the trailer does not hold together
        self._frms_hint: int | None = None  # the count of a `frms` chunk met among the steps
        self._trailer, self._index = self._load_tail() if self._seekable else (None, None)
        self._position = 0
        self._steps_read = 0
        self._started = False
        self.damage: str | None = None

    def _read_setup_chunks(self) -> tuple[ct.Chunk | None, Prior | None]:
        """Chunks between HEAD and the first STEP/indx/TAIL: PRIO, and ancillary chunks, whose payloads are
        kept in `self.ancillary` (type -> payload, the first of each type up to KEPT_ANCILLARY_BYTES; e.g.
        `encd`, SPEC §2.3)."""
        prior = None
        self.ancillary: dict[bytes, bytes] = {}
        while True:
            try:
                chunk = self._chunks.next()
            except (CorruptError, UnsupportedError) as e:  # reported when iteration reaches it
                self._setup_error = e
                return None, prior
            if chunk is None or chunk.ctype in (ct.STEP, ct.INDX, ct.TAIL):
                return chunk, prior
            if chunk.ctype == ct.PRIO:
                prior = Prior.from_bytes(chunk.payload)
            elif not ct.is_critical(chunk.ctype):
                if len(chunk.payload) <= KEPT_ANCILLARY_BYTES:
                    self.ancillary.setdefault(chunk.ctype, bytes(chunk.payload))
            else:
                raise _critical_error(chunk)

    def use_priors(self, prior: Prior | Iterable[Prior] | None) -> None:
        """Offer prior tables after opening (the model that can be found only from the header has them); as
        `prior=` of the constructor. A missing prior only matters for decoding steps."""
        self._prior_error: UsageError | None = None
        try:
            self.prior = self._pick_prior(self._embedded_prior, prior)
        except UsageError as exc:
            self.prior, self._prior_error = None, exc

    @property
    def sample_aspect(self) -> tuple[int, int] | None:
        """A pixel's width over its height, (numerator, denominator), from the `sasp` chunk (SPEC §2.3); None
        where there is none (square pixels) or its payload does not parse."""
        payload = self.ancillary.get(ct.SASP)
        if payload is None or len(payload) != ct.SASP_PAYLOAD.size:
            return None
        num, den = ct.SASP_PAYLOAD.unpack(payload)
        return (num, den) if num and den else None

    @property
    def seekable(self) -> bool:
        """False for a pipe: one forward pass; the frame count is known once the trailer has been read."""
        return self._seekable

    def _coder(self):
        if self._prior_error is not None:
            raise self._prior_error
        return coder_by_name(self.header.coder)(self.header, self.prior)

    def _pick_prior(self, embedded: Prior | None, given: Prior | Iterable[Prior] | None) -> Prior | None:
        if self.header.coder != "ctx":
            return None
        want = self.header.coder_params.prior_sha256
        if want == bytes(32):
            return None
        given = [] if given is None else [given] if isinstance(given, Prior) else list(given)
        for p in (embedded, *given):
            if p is not None and p.sha256 == want:
                if p.codebook_size != self.header.codebook_size:  # a forged header: its hash names such a table
                    raise CorruptError(f"the prior table the header names is for a codebook of {p.codebook_size}, "
                                       f"not {self.header.codebook_size}")
                return p
        if embedded is not None:
            raise CorruptError("the embedded prior table does not match the SHA-256 in the header")
        if self._setup_error is not None:
            raise self._setup_error
        raise UsageError(f"this file references the prior table {want.hex()} without embedding it: pass prior=")

    # -- trailer and index ----------------------------------------------------------------------------
    def _load_tail(self) -> tuple[Trailer | None, list[ct.StepInfo] | None]:
        """Trailer and index when both are present and consistent; (None, None) otherwise."""
        try:
            trailer = self._read_trailer()
            return trailer, self._read_index(trailer)
        except OtokError:
            self._tail_hint = self._trailer_frames_hint()
            return None, None

    def _trailer_frames_hint(self) -> int | None:
        """The frame count of a TAIL chunk that ends the file but does not hold together (its index lost or
        forged): used only to drop the last step's padding (`frames`), never to raise the count."""
        size = self._size or 0
        try:
            chunk = self._chunk_at(size - ct.TAIL_SIZE) if size >= self._data_start + ct.TAIL_SIZE else None
        except OtokError:
            return None
        if chunk is None or chunk.ctype != ct.TAIL or len(chunk.payload) != ct.TAIL_PAYLOAD.size:
            return None
        return ct.TAIL_PAYLOAD.unpack(chunk.payload)[0]

    def _read_trailer(self) -> Trailer:
        size = self._size or 0
        if size < self._data_start + ct.TAIL_SIZE:
            raise TruncatedError("no trailer")
        chunk = self._chunk_at(size - ct.TAIL_SIZE)
        if chunk.ctype != ct.TAIL or len(chunk.payload) != ct.TAIL_PAYLOAD.size:
            raise TruncatedError("the file does not end with a trailer")
        trailer = Trailer(*ct.TAIL_PAYLOAD.unpack(chunk.payload))
        gop, t = self.header.gop, self.header.temporal
        if not (self._data_start <= trailer.index_offset <= size - ct.TAIL_SIZE - ct.CHUNK_OVERHEAD - 4):
            raise CorruptError(f"trailer index offset {trailer.index_offset} lies outside the file")
        if not (timeline.frames_in_steps(trailer.steps - 1, gop, t) < trailer.frames
                <= timeline.frames_in_steps(trailer.steps, gop, t)) and (trailer.steps or trailer.frames):
            raise CorruptError(f"trailer frame count {trailer.frames} does not fit {trailer.steps} steps")
        return trailer

    def _read_index(self, trailer: Trailer) -> list[ct.StepInfo]:
        chunk = self._chunk_at(trailer.index_offset)
        if chunk.ctype != ct.INDX or chunk.end != (self._size or 0) - ct.TAIL_SIZE:
            raise CorruptError("the trailer does not point at an index right before it")
        entries = ct.parse_index(chunk)
        _check_entries(entries, self.header, self._data_start, trailer.index_offset)
        if sum(e.n_steps for e in entries) != trailer.steps:
            raise CorruptError(f"index covers {sum(e.n_steps for e in entries)} steps, trailer says {trailer.steps}")
        self._check_chunk_heads(entries)
        return entries

    def _check_chunk_heads(self, entries: list[ct.StepInfo]) -> None:
        """Each index entry points at a STEP chunk whose own fixed fields say the same: an index, even a
        self-consistent forged one, counts only steps that chunks claim. (A chunk's length and CRC are
        checked when it is read: damage inside a chunk leaves the index standing.) One short read per entry."""
        head = 8 + ct.STEP_HEAD.size
        for entry in entries:
            self._f.seek(self._base + entry.offset)
            raw = self._f.read(head)
            if len(raw) != head or raw[4:8] != ct.STEP:
                raise CorruptError(f"the index points at byte {entry.offset}, where no STEP chunk starts")
            first, n, flags, _ = ct.STEP_HEAD.unpack_from(raw, 8)
            if (first, n, bool(flags & ct.KEYFRAME)) != (entry.first_step, entry.n_steps, entry.keyframe):
                raise CorruptError(f"the index entry for byte {entry.offset} disagrees with the chunk there")

    def _streamed_trailer(self, chunk: ct.Chunk, steps: int) -> Trailer | None:
        """The trailer met at the end of a pipe, when its counts fit the steps read (its index cannot be
        checked on a pipe, and is not needed: the steps came in order)."""
        if len(chunk.payload) != ct.TAIL_PAYLOAD.size:
            return None
        trailer = Trailer(*ct.TAIL_PAYLOAD.unpack(chunk.payload))
        gop, t = self.header.gop, self.header.temporal
        fits = trailer.steps == steps and (
            timeline.frames_in_steps(steps - 1, gop, t) < trailer.frames <= timeline.frames_in_steps(steps, gop, t))
        if not fits:
            self._tail_hint = trailer.frames  # `frames` takes it only where it fits the steps
        return trailer if fits else None

    def _chunk_at(self, offset: int) -> ct.Chunk:
        self._f.seek(self._base + offset)
        chunk = ct.ChunkReader(self._f, offset, self._size).next()
        if chunk is None:
            raise TruncatedError(f"no chunk at byte {offset}")
        return chunk

    def _scan(self) -> list[ct.StepInfo]:
        """Walk the chunks (CRC-checked, not decoded) to list the STEP chunks of the intact prefix. An
        iteration in progress carries on where it was."""
        entries: list[ct.StepInfo] = []
        saved = (self._chunks, self._pending, getattr(self, "_complete_read", False), self._f.tell())
        try:
            for chunk in self._chunks_from(self._data_start):
                if chunk.ctype == ct.TAIL:
                    break
                entries.append(ct.parse_step(chunk)[0])
                _check_entries(entries[-1:], self.header, self._data_start, None,
                               sum(e.n_steps for e in entries[:-1]))
        except OtokError:
            pass
        finally:
            self._chunks, self._pending, self._complete_read = saved[:3]
            self._f.seek(saved[3])
        return entries

    @property
    def index(self) -> list[ct.StepInfo]:
        """STEP chunks: from the file's index when valid, else from a scan of its intact prefix."""
        if self._index is None:
            self._need_seekable("list chunks")
            self._index = self._scan()
        return self._index

    @property
    def steps(self) -> int:
        """Step count: from the trailer, else the steps of the intact chunks (a pipe: those read so far)."""
        if self._trailer:
            return self._trailer.steps
        return self._steps_read if not self._seekable else sum(e.n_steps for e in self.index)

    @property
    def frames(self) -> int:
        """Frame count: from the trailer; else (`frames_trusted` False) every frame the intact steps cover,
        less the last step's padding when a trailer that does not hold together, or a `frms` chunk after
        the steps, gives a count that fits those steps. Never more than the intact steps can hold."""
        if self._trailer:
            return self._trailer.frames
        gop, t, steps = self.header.gop, self.header.temporal, self.steps
        most = timeline.frames_in_steps(steps, gop, t)
        for hint in (self._tail_hint, self._frms_hint):
            if steps and hint is not None and timeline.frames_in_steps(steps - 1, gop, t) < hint <= most:
                return hint
        return most

    @property
    def frames_trusted(self) -> bool:
        """False when the frame count is not recorded by a valid trailer and index (`frames` is inferred)."""
        return self._trailer is not None

    @property
    def coded_bytes(self) -> int:
        """Bytes of coder data in the STEP chunks of `index`: each chunk's payload less its fixed step
        fields, so the container's own bytes (preamble, header, setup and ancillary chunks, chunk framing,
        index, trailer) are left out. What the coder spent on the tokens; the rest is the same for any
        content of the same model and coder (about 270 bytes with `ctx` and a referenced prior)."""
        self._need_seekable("measure chunks")
        size, here, total = self._size or 0, self._f.tell(), 0
        try:
            for entry in self.index:
                self._f.seek(self._base + entry.offset)
                head = self._f.read(8)
                length, ctype = struct.unpack("<I4s", head) if len(head) == 8 else (-1, b"")
                if ctype != ct.STEP or not ct.STEP_HEAD.size <= length <= size - entry.offset - ct.CHUNK_OVERHEAD:
                    raise CorruptError(f"the index points at byte {entry.offset}, where no STEP chunk fits the file")
                total += length - ct.STEP_HEAD.size
        finally:
            self._f.seek(here)
        return total

    @property
    def complete(self) -> bool:
        """True when the file has a valid trailer and index."""
        return self._trailer is not None

    # -- iteration ------------------------------------------------------------------------------------
    def seek(self, frame: int) -> int:
        """Position at the step that holds `frame` (0-based); returns that step's index."""
        self._need_seekable("seek")
        if not 0 <= frame < self.frames:
            raise UsageError(f"frame {frame} is outside the video's {self.frames} frames")
        self._position = timeline.step_of_frame(frame, self.header.gop, self.header.temporal)
        return self._position

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield steps from the current position: (h, w) int64 or (C, h, w) float16 each."""
        start = self._position
        for step, values in self._decoded(start):
            self._position = step + 1
            yield values
            del values  # (a view of its chunk: not held while the next chunk decodes)

    def _decoded(self, start: int) -> Iterator[tuple[int, np.ndarray]]:
        self.damage, self._damage_type = None, None
        coder = self._coder()
        done = 0
        try:
            for info, data in self._step_chunks(start):
                values = coder.decode(data, info.first_step, info.n_steps)
                del data
                if not self.header.is_latent:
                    values = values.astype(np.int64, copy=False)
                for i in range(max(0, start - info.first_step), info.n_steps):
                    yield info.first_step + i, values[i]
                done = info.first_step + info.n_steps
                del values  # one chunk's values held at a time: these go before the next chunk decodes
        except OtokError as e:
            self.damage = f"{e}; stopped after step {done - 1}" if done else f"{e}; no step could be read"
            self._damage_type = type(e)
            warnings.warn(self.damage, OtokWarning, stacklevel=3)

    def _step_chunks(self, start: int) -> Iterator[tuple[ct.StepInfo, bytes]]:
        """STEP chunks from the keyframe chunk at or before step `start`, checked as they come."""
        offset, expect = self._data_start, 0
        if start > 0:
            keys = [e for e in self.index if e.keyframe and e.first_step <= start]
            if not keys:
                raise CorruptError(f"no keyframe chunk at or before step {start}")
            offset, expect = keys[-1].offset, keys[-1].first_step
        for chunk in self._chunks_from(offset):
            if chunk.ctype == ct.TAIL:
                if not self._seekable:
                    self._trailer = self._streamed_trailer(chunk, expect)
                return
            info, data = ct.parse_step(chunk)
            _check_entries([info], self.header, self._data_start, None, expect)
            expect += info.n_steps
            self._steps_read = max(self._steps_read, expect)
            yield info, data
        if not self._complete_read:
            raise TruncatedError(f"file ends at byte {self._chunks.offset} without a trailer")

    def _chunks_from(self, offset: int) -> Iterator[ct.Chunk]:
        """STEP (and TAIL) chunks from byte `offset`; skips the index and ancillary chunks."""
        self._complete_read = False
        if self._seekable:
            self._f.seek(self._base + offset)
            self._chunks = ct.ChunkReader(self._f, offset, self._size)
            self._pending = None
        elif self._started:
            raise UsageError("a non-seekable input can be iterated only once")
        self._started = True
        while True:
            if self._setup_error is not None and not self._seekable:
                raise self._setup_error
            chunk, self._pending = self._pending or self._chunks.next(), None
            if chunk is None:
                return
            if chunk.ctype in (ct.STEP, ct.TAIL):
                if chunk.ctype == ct.TAIL:
                    self._complete_read = True
                yield chunk
            elif chunk.ctype == ct.FRMS and len(chunk.payload) == ct.FRMS_PAYLOAD.size:
                self._frms_hint = ct.FRMS_PAYLOAD.unpack(chunk.payload)[0]
            elif ct.is_critical(chunk.ctype) and chunk.ctype != ct.PRIO:
                raise _critical_error(chunk)

    # -- verification ---------------------------------------------------------------------------------
    def verify(self) -> VerifyReport:
        """Read the whole file: every CRC, every step decoded, index and trailer consistent. Raises OtokError."""
        self._need_seekable("verify")
        coder = self._coder()
        entries, trailer, index_entries, chunks = [], None, None, 0
        for chunk in self._chunks_from_all():
            chunks += 1
            if trailer is not None:
                raise CorruptError(f"chunk {chunk.ctype!r} at byte {chunk.offset} follows the trailer")
            if chunk.ctype == ct.STEP:
                info, data = ct.parse_step(chunk)
                _check_entries([info], self.header, self._data_start, None, sum(e.n_steps for e in entries))
                coder.decode(data, info.first_step, info.n_steps)
                entries.append(info)
            elif chunk.ctype == ct.INDX:
                index_entries = (chunk.offset, ct.parse_index(chunk))
            elif chunk.ctype == ct.TAIL:
                trailer = chunk
        if trailer is None:
            raise TruncatedError(f"file ends at byte {self._size} without a trailer")
        tail = self._read_trailer()
        if index_entries is None or index_entries[0] != tail.index_offset:
            raise CorruptError("the trailer does not point at the index")
        if self._read_index(tail) != entries:
            raise CorruptError("the index does not match the chunks in the file")
        return VerifyReport(tail.steps, tail.frames, chunks, self._size or 0, True)

    def _chunks_from_all(self) -> Iterator[ct.Chunk]:
        self._f.seek(self._base + self._data_start)
        reader = ct.ChunkReader(self._f, self._data_start, self._size)
        while (chunk := reader.next()) is not None:
            if ct.is_critical(chunk.ctype) and chunk.ctype not in ct.KNOWN_CRITICAL - {ct.HEAD}:
                raise _critical_error(chunk)
            yield chunk

    # -- misc -----------------------------------------------------------------------------------------
    def _need_seekable(self, what: str) -> None:
        if not self._seekable:
            raise UsageError(f"cannot {what} on a non-seekable input")

    def close(self) -> None:
        if self._own:
            self._f.close()

    def __enter__(self) -> OtokReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _critical_error(chunk: ct.Chunk) -> OtokError:
    """A critical chunk where it cannot be read: a second header is damage, an unknown type a newer format."""
    if chunk.ctype in ct.KNOWN_CRITICAL:
        return CorruptError(f"a second {chunk.ctype.decode()} chunk at byte {chunk.offset}: the file is damaged")
    return UnsupportedError(f"unknown critical chunk {chunk.ctype!r} at byte {chunk.offset}: "
                            "the file needs a newer otok")


def _check_entries(entries: list[ct.StepInfo], header: Header, data_start: int, end: int | None,
                   first: int = 0) -> None:
    """Steps contiguous from `first`, keyframe flags on segment starts, no chunk across a segment boundary,
    values per chunk under the cap, offsets increasing inside [data_start, end)."""
    per_step = int(np.prod(header.step_shape))
    last_offset = data_start - 1
    for e in entries:
        if e.first_step != first:
            raise CorruptError(f"chunk at byte {e.offset} starts at step {e.first_step}, expected {first}")
        if e.n_steps * per_step > limits.MAX_VALUES_PER_CHUNK:
            raise CorruptError(f"chunk at byte {e.offset} holds {e.n_steps} steps, over the cap")
        if e.keyframe != timeline.is_segment_start(e.first_step, header.gop):
            raise CorruptError(f"chunk at byte {e.offset}: keyframe flag does not match step {e.first_step}")
        last = e.first_step + e.n_steps - 1
        if header.gop and last // header.gop != e.first_step // header.gop:
            raise CorruptError(f"chunk at byte {e.offset} crosses a segment boundary")
        if end is not None and not last_offset < e.offset < end:
            raise CorruptError(f"index entry offset {e.offset} is out of order or outside the data")
        last_offset, first = e.offset, last + 1


def _read_head(f: BinaryIO, size: int | None) -> tuple[Header, ct.ChunkReader, str]:
    """Preamble and HEAD chunk; returns the header, a chunk reader positioned after it and the format
    version ("1.2")."""
    minor = ct.read_preamble(f)
    chunks = ct.ChunkReader(f, len(ct.PREAMBLE), size)
    first = chunks.next()
    if first is None or first.ctype != ct.HEAD:
        raise (TruncatedError("file truncated after the preamble: no header") if first is None
               else CorruptError(f"the first chunk is {first.ctype!r}, not the header"))
    return Header.unpack(first.payload), chunks, f"{ct.VERSION_MAJOR}.{minor}"


def read_header(path: str | os.PathLike) -> Header:
    """Only the header of an `.otok` file: enough to find the model (and its prior table) before reading."""
    with open(path, "rb") as f:
        return _read_head(f, os.fstat(f.fileno()).st_size)[0]


def _seekable(f: BinaryIO) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def read_tokens(path: str | os.PathLike | BinaryIO, *, prior: Prior | Iterable[Prior] | None = None,
                allow_truncated: bool = False) -> np.ndarray:
    """All steps of a file: int64 (S, h, w) tokens, or float16 (S, C, h, w) latents.

    A truncated or damaged file raises TruncatedError/CorruptError, unless `allow_truncated`: then the
    intact prefix is returned and an OtokWarning says where it stopped.

    Memory (SPEC §7.2): the output, one chunk's decoded values and a few MiB of scratch; a count the file's
    bytes cannot back is never allocated ahead.
    """
    with OtokReader(path, prior=prior) as reader:
        dtype = np.float16 if reader.header.is_latent else np.int64
        shape = reader.header.step_shape
        # The output is sized from the steps the file's chunks claim (its trailer; without one, a scan of the
        # intact chunks, which decodes nothing), but only as far as the file's bytes can back it: a forged
        # count (11 M steps in 46 KB) must not allocate; steps past it are gathered as they decode.
        step_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        backed = (limits.PREALLOCATE_PER_BYTE * (reader._size or 0) + limits.PREALLOCATE_MIN) // step_bytes
        out = np.empty((min(reader.steps, backed) if reader.seekable else 0,) + shape, dtype=dtype)
        extra = []  # steps beyond the preallocated count (views of their chunks' arrays)
        n = 0
        with warnings.catch_warnings(record=not allow_truncated):
            for n, step in enumerate(reader, 1):
                if n <= len(out):
                    out[n - 1] = step
                else:
                    extra.append(step)
                del step  # (its chunk is let go before the next one decodes)
        if reader.damage and not allow_truncated:
            error = reader._damage_type if issubclass(reader._damage_type, TruncatedError) else CorruptError
            raise error(reader.damage)
        if not reader.damage and reader.complete and n != reader.steps:
            message = f"the trailer and index give {reader.steps} steps, but the file holds {n}"
            if not allow_truncated:
                raise CorruptError(message)
            warnings.warn(message, OtokWarning, stacklevel=2)
        if not extra:
            return out[:n]
        whole = np.empty((n,) + shape, dtype=dtype)  # one copy: the gathered steps go straight into place
        whole[:len(out)] = out
        for i, step in enumerate(extra, len(out)):
            whole[i] = step
        return whole
