"""The streaming writer: header first, a STEP chunk whenever one completes, index and trailer at close.
It never seeks, so the destination may be a pipe."""

from __future__ import annotations

import dataclasses
import os
from typing import BinaryIO

import numpy as np

from . import container as ct
from . import limits, timeline
from .coders import coder_by_name
from .errors import UsageError
from .header import Header
from .prior import Prior


class OtokWriter:
    """Write one video's token grids (or KL latents) to `dest`, a path or a writable binary file object.

    writer = OtokWriter("clip.otok", header, prior=prior)
    writer.write(grid)        # (h, w) one step; (n, h, w) n steps; (1, n, h, w) a batch of one video
    writer.close(frames=T)    # T: true frame count (default: every frame the steps cover)

    Latents take (C, h, w), (n, C, h, w) or (1, n, C, h, w). `prior` (ctx coder only) is embedded in the
    file unless `embed_prior=False`; the header records its SHA-256 either way. A chunk holds the steps of
    one segment, at most `steps_per_chunk` of them (default: the segment length, up to 64).
    """

    def __init__(
        self, dest: str | os.PathLike | BinaryIO, header: Header, *, prior: Prior | None = None,
        embed_prior: bool = True, steps_per_chunk: int | None = None,
    ) -> None:
        header = _attach_prior(header, prior)
        self.header = header
        self._coder = coder_by_name(header.coder)(header, prior)
        per_step = int(np.prod(header.step_shape))
        cap = min(limits.MAX_STEPS_PER_CHUNK, max(1, limits.MAX_VALUES_PER_CHUNK // per_step))
        default = header.gop if 0 < header.gop <= 64 else 16
        self.steps_per_chunk = min(cap, steps_per_chunk or default)
        if steps_per_chunk is not None and steps_per_chunk < 1:
            raise UsageError("steps_per_chunk must be at least 1")
        self._own = isinstance(dest, (str, os.PathLike))
        self._f: BinaryIO = open(dest, "wb") if self._own else dest  # type: ignore[assignment]
        self._pos = 0
        self._pending: list[np.ndarray] = []
        self._index: list[ct.StepInfo] = []
        self.steps = 0
        self.closed = False
        # the lowest format version that defines the file's coder (1.0 files stay byte-identical)
        self._put(ct.preamble(self._coder.format_minor) + ct.chunk_bytes(ct.HEAD, header.pack()))
        if prior is not None and embed_prior:
            self._put(ct.chunk_bytes(ct.PRIO, prior.to_bytes()))

    def write(self, steps: np.ndarray) -> None:
        """Append one or more steps (shapes above); chunks go out as soon as they are complete."""
        if self.closed:
            raise UsageError("write() on a closed OtokWriter")
        for step in self._as_steps(np.asarray(steps)):
            self._pending.append(step)
            next_step = self.steps + len(self._pending)
            if len(self._pending) == self.steps_per_chunk or timeline.is_segment_start(next_step, self.header.gop):
                self._flush()

    def write_ancillary(self, ctype: bytes, payload: bytes) -> None:
        """Insert an ancillary chunk (type: 4 ASCII letters, the first lower-case), e.g. metadata. Readers
        that do not know the type skip it. It goes out after the steps written so far."""
        if self.closed:
            raise UsageError("write_ancillary() on a closed OtokWriter")
        if len(ctype) != 4 or not ctype.isalpha() or ct.is_critical(ctype) or ctype == ct.INDX:
            raise UsageError(f"{ctype!r} is not an ancillary chunk type (4 letters, the first lower-case)")
        self._flush()
        self._put(ct.chunk_bytes(ctype, bytes(payload)))

    def close(self, frames: int | None = None) -> None:
        """Write the last chunk, the index and the trailer; close the file if the writer opened it.

        frames: the true frame count, within the frames covered by the last step (the last group may be
        padded). Default: all frames covered by the steps written.
        """
        if self.closed:
            return
        self._flush()
        gop, t = self.header.gop, self.header.temporal
        covered = timeline.frames_in_steps(self.steps, gop, t)
        frames = covered if frames is None else int(frames)
        if not timeline.frames_in_steps(self.steps - 1, gop, t) < frames <= covered and (self.steps or frames):
            raise UsageError(f"frames={frames} does not fit {self.steps} steps (which cover up to {covered} frames)")
        if frames < covered:  # the count once more where losing the trailer does not lose it (SPEC §2.3)
            self._put(ct.chunk_bytes(ct.FRMS, ct.FRMS_PAYLOAD.pack(frames)))
        index_offset = self._pos
        self._put(ct.chunk_bytes(ct.INDX, ct.pack_index(self._index)))
        self._put(ct.chunk_bytes(ct.TAIL, ct.TAIL_PAYLOAD.pack(frames, self.steps, index_offset)))
        self._finish()

    def abort(self) -> None:
        """Stop without index and trailer: what was written reads as a truncated file."""
        if not self.closed:
            try:
                self._flush()
            finally:
                self._finish()

    def __enter__(self) -> OtokWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.abort()
        except Exception:  # the exception in flight is the one to report; the file reads as truncated
            pass

    # -- internals ------------------------------------------------------------------------------------
    def _as_steps(self, x: np.ndarray) -> np.ndarray:
        shape = self.header.step_shape
        if x.shape == shape:
            x = x[None]
        elif x.ndim == len(shape) + 2 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
            raise UsageError(f"expected steps of shape {shape} (or (n, *shape), (1, n, *shape)), got {x.shape}")
        if self.header.is_latent:
            if not np.issubdtype(x.dtype, np.floating):
                raise UsageError(f"latents must be floating point, got {x.dtype}")
            return x.astype(np.float16)
        if not np.issubdtype(x.dtype, np.integer):
            raise UsageError(f"tokens must be integers, got {x.dtype}")
        if x.size and (int(x.min()) < 0 or int(x.max()) >= self.header.codebook_size):
            raise UsageError(f"tokens must lie in 0..{self.header.codebook_size - 1}, got {int(x.min())}..{int(x.max())}")
        return x.astype(np.int64, copy=False)

    def _flush(self) -> None:
        """Code the pending steps as a chunk."""
        if not self._pending:
            return
        steps, first = np.stack(self._pending), self.steps
        self._put_step(first, len(steps), self._coder.encode(steps, first))
        self.steps += len(steps)
        self._pending = []

    def _put_step(self, first: int, n: int, payload: bytes) -> None:
        info = ct.StepInfo(first, n, timeline.is_segment_start(first, self.header.gop), self._pos)
        self._index.append(info)
        self._put(ct.chunk_bytes(ct.STEP, info.pack() + payload))

    def _put(self, data: bytes) -> None:
        self._f.write(data)
        self._pos += len(data)

    def _finish(self) -> None:
        self.closed = True
        self._f.flush()
        if self._own:
            self._f.close()


def _attach_prior(header: Header, prior: Prior | None) -> Header:
    """Record the prior's SHA-256 in the ctx parameters; refuse a prior the coder cannot use."""
    if prior is None:
        return header
    if header.coder != "ctx":
        raise UsageError(f"a prior table only applies to the ctx coder, not {header.coder!r}")
    if prior.codebook_size != header.codebook_size:
        raise UsageError(f"prior is for a codebook of {prior.codebook_size}, header says {header.codebook_size}")
    return header.with_params(dataclasses.replace(header.coder_params, prior_sha256=prior.sha256))
