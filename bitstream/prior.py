"""The model's prior table for the `ctx` coder: initial counts of the mode contexts and of each literal
sub-symbol (for K <= 2**14, the codebook frequencies). Build one from sample token grids, ship it with the
model as a small file, embed it in `.otok` files (PRIO chunk). Its identity is `sha256`, which the header
records (SPEC.md, "Prior table")."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Iterable

import numpy as np

from .coders import ctx_model as cm
from .coders.zstd import compress, decompress
from .errors import CorruptError, LimitError, UnsupportedError, UsageError
from . import limits

MAGIC = b"OTKPRIOR"
VERSION = 2  # version 1 held the flag counts of the pre-release ctx coder (coder id 2)
_HEAD = struct.Struct("<8sHHII")  # magic, version, num_mode_ctx, codebook_size, table_bytes
MAX_COUNT = 1 << 30


class Prior:
    """Integer initial counts for the `ctx` coder.

    mode_counts: uint32 (250, 4), counts of modes T / U / L / literal per mode context.
    part_counts: one uint32 array (alphabet_i,) per literal sub-symbol (see `ctx_model.part_layout`).
    """

    def __init__(self, codebook_size: int, mode_counts: np.ndarray, part_counts: Iterable[np.ndarray]) -> None:
        layout = cm.part_layout(codebook_size)
        self.codebook_size = codebook_size
        self.mode_counts = np.asarray(mode_counts, dtype=np.uint32).reshape(cm.NUM_MODE_CTX, cm.NUM_MODES)
        self.part_counts = tuple(np.asarray(c, dtype=np.uint32) for c in part_counts)
        if tuple(len(c) for c in self.part_counts) != layout.alphabets:
            raise UsageError(f"prior tables must have lengths {layout.alphabets} for a codebook of {codebook_size}")
        if any(int(t.max(initial=0)) > MAX_COUNT for t in (self.mode_counts, *self.part_counts)):
            raise UsageError(f"prior counts must be at most {MAX_COUNT}")

    @classmethod
    def uniform(cls, codebook_size: int) -> Prior:
        """All-zero counts: the coder starts from uniform (every count 1)."""
        layout = cm.part_layout(codebook_size)
        return cls(codebook_size, np.zeros((cm.NUM_MODE_CTX, cm.NUM_MODES)), [np.zeros(a) for a in layout.alphabets])

    @classmethod
    def from_tokens(
        cls, segments: Iterable[np.ndarray], codebook_size: int, *, mode_weight: int = 1024,
        literal_weight: int = 1024,
    ) -> Prior:
        """Count modes and literals the way the coder sees them.

        segments: int arrays (S, h, w), each starting at a segment start (its step 0 has no reference).
        Each mode row (context) is scaled to sum at most `mode_weight`, each literal table to at most
        `literal_weight` (the weight of the prior against what the coder then observes).
        """
        layout = cm.part_layout(codebook_size)
        modes = np.zeros((cm.NUM_MODE_CTX, cm.NUM_MODES), dtype=np.int64)
        parts = [np.zeros(a, dtype=np.int64) for a in layout.alphabets]
        for seg in segments:
            seg = np.asarray(seg, dtype=np.int64)
            seg = seg.reshape((-1,) + seg.shape[-2:])
            if not len(seg):
                continue
            seg_modes = cm.step_modes(seg, None)
            modes += cm.mode_observations(cm.mode_contexts(seg_modes, None), seg_modes)
            literals = seg[seg_modes == cm.MODE_LIT]
            for table, values in zip(parts, cm.split_parts(literals, layout)):
                table += np.bincount(values, minlength=len(table))
        return cls(codebook_size, _scale(modes, mode_weight), [_scale(t, literal_weight) for t in parts])

    def tables_bytes(self) -> bytes:
        return b"".join(t.astype("<u4").tobytes() for t in (self.mode_counts, *self.part_counts))

    @property
    def sha256(self) -> bytes:
        """SHA-256 of the canonical form: the 20 header bytes followed by the uncompressed tables."""
        tables = self.tables_bytes()
        return hashlib.sha256(self._head(len(tables)) + tables).digest()

    def _head(self, table_bytes: int) -> bytes:
        return _HEAD.pack(MAGIC, VERSION, cm.NUM_MODE_CTX, self.codebook_size, table_bytes)

    def to_bytes(self) -> bytes:
        """Serialized form: header, zstd frame of the tables, CRC-32 of everything before it."""
        tables = self.tables_bytes()
        body = self._head(len(tables)) + compress(tables, 19)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> Prior:
        """Parse `to_bytes` output; raises CorruptError / LimitError on bad input."""
        if len(data) < _HEAD.size + 4 or data[:8] != MAGIC:
            raise CorruptError("not an otok prior table (bad magic or too short)")
        if struct.unpack_from("<I", data, len(data) - 4)[0] != zlib.crc32(data[:-4]):
            raise CorruptError("prior table is damaged (CRC-32 mismatch)")
        _, version, nctx, k, table_bytes = _HEAD.unpack_from(data)
        if version == 1:
            raise UnsupportedError("prior table version 1 belongs to the pre-release ctx coder (coder id 2); "
                                   "rebuild it with tools/make_prior.py")
        if version != VERSION:
            raise UnsupportedError(f"prior table version {version} is not supported (this otok reads version {VERSION})")
        if nctx != cm.NUM_MODE_CTX:
            raise CorruptError(f"prior table has {nctx} mode contexts, not {cm.NUM_MODE_CTX}")
        if not 2 <= k <= limits.MAX_CODEBOOK:
            raise LimitError(f"prior codebook size {k} outside 2..{limits.MAX_CODEBOOK}")
        alphabets = cm.part_layout(k).alphabets
        if table_bytes != 4 * (cm.NUM_MODES * nctx + sum(alphabets)):
            raise CorruptError("prior table size does not match its codebook size")
        raw = np.frombuffer(decompress(data[_HEAD.size:-4], table_bytes), dtype="<u4")
        cuts = np.cumsum([cm.NUM_MODES * nctx, *alphabets])[:-1]
        mode, *parts = np.split(raw, cuts)
        try:
            return cls(k, mode, parts)
        except UsageError as e:
            raise CorruptError(f"invalid prior table: {e}") from None

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Prior:
        with open(path, "rb") as f:
            return cls.from_bytes(f.read(limits.MAX_CHUNK_PAYLOAD))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Prior) and self.sha256 == other.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return f"Prior(codebook_size={self.codebook_size}, sha256={self.sha256.hex()[:16]}...)"


def _scale(counts: np.ndarray, weight: int) -> np.ndarray:
    """Scale each row (last axis) so it sums to at most `weight`: floor(c * weight / sum) when sum > weight."""
    counts = counts.astype(np.int64)
    total = counts.sum(axis=-1, keepdims=True)
    big = total > weight
    scaled = counts * weight // np.maximum(total, 1)
    return np.where(big, scaled, counts)
