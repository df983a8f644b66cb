"""The model's prior table for the `ctx` coder: initial counts of the mode contexts and of each literal
sub-symbol (for K <= 2**14, the codebook frequencies), and (version 3) the code order and group counts of
the grouped literal model. Build one from sample token grids, ship it with the model as a small file,
embed it in `.otok` files (PRIO chunk). Its identity is `sha256`, which the header records (SPEC.md,
"Prior table")."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Iterable

import numpy as np

from .coders import ctx_model as cm
from .coders.ctx_kernels import step_modes
from .coders.zstd import compress, decompress
from .errors import CorruptError, LimitError, UnsupportedError, UsageError
from . import limits

MAGIC = b"OTKPRIOR"
VERSION = 3  # 3 adds the code order and group counts; 2 still reads; 1 held the retired coder id 2's counts
_HEAD = struct.Struct("<8sHHII")  # magic, version, num_mode_ctx, codebook_size, table_bytes
MAX_COUNT = 1 << 30


class Prior:
    """Integer initial counts for the `ctx` coder.

    mode_counts: uint32 (250, 4), counts of modes T / U / L / literal per mode context.
    part_counts: one uint32 array (alphabet_i,) per literal sub-symbol (see `ctx_model.part_layout`).
    order: uint32 (K,), the rank of each token in the grouped literal model (a permutation of 0..K-1;
        `code_order` puts similar codes next to each other).
    group_counts: uint32 (3G + 1, G), counts of the group of a literal's rank per group context
        (`ctx_model.group_layout`).
    A table made without order and group_counts is a version-2 table (identity order, zero group counts),
    serialized as such; with either, version 3.
    """

    def __init__(self, codebook_size: int, mode_counts: np.ndarray, part_counts: Iterable[np.ndarray],
                 order: np.ndarray | None = None, group_counts: np.ndarray | None = None) -> None:
        layout = cm.part_layout(codebook_size)
        groups = cm.group_layout(codebook_size)
        self.codebook_size = codebook_size
        self.version = 2 if order is None and group_counts is None else VERSION
        self.mode_counts = np.asarray(mode_counts, dtype=np.uint32).reshape(cm.NUM_MODE_CTX, cm.NUM_MODES)
        self.part_counts = tuple(np.asarray(c, dtype=np.uint32) for c in part_counts)
        if tuple(len(c) for c in self.part_counts) != layout.alphabets:
            raise UsageError(f"prior tables must have lengths {layout.alphabets} for a codebook of {codebook_size}")
        self._order = None if order is None else _checked_order(order, codebook_size).astype(np.uint32)
        shape = (groups.contexts, groups.groups)
        self.group_counts = (np.zeros(shape, dtype=np.uint32) if group_counts is None
                             else np.asarray(group_counts, dtype=np.uint32))
        if self.group_counts.shape != shape:
            raise UsageError(f"prior group counts must have shape {shape} for a codebook of {codebook_size}")
        if any(int(t.max(initial=0)) > MAX_COUNT for t in (self.mode_counts, *self.part_counts, self.group_counts)):
            raise UsageError(f"prior counts must be at most {MAX_COUNT}")
        self._tokens_by_rank: np.ndarray | None = None

    @property
    def has_order(self) -> bool:
        """Whether the table carries a code order (version 3); without one the order is the identity."""
        return self._order is not None

    @property
    def order(self) -> np.ndarray:
        """uint32 (K,): the rank of each token (the identity for a version-2 table, made on request)."""
        return np.arange(self.codebook_size, dtype=np.uint32) if self._order is None else self._order

    @property
    def tokens_by_rank(self) -> np.ndarray:
        """int64 (K,): the token of each rank (the inverse of `order`)."""
        if self._tokens_by_rank is None:
            inverse = np.empty(self.codebook_size, dtype=np.int64)
            inverse[self.order] = np.arange(self.codebook_size)
            self._tokens_by_rank = inverse
        return self._tokens_by_rank

    @classmethod
    def uniform(cls, codebook_size: int) -> Prior:
        """All-zero counts: the coder starts from uniform (every count 1)."""
        layout = cm.part_layout(codebook_size)
        return cls(codebook_size, np.zeros((cm.NUM_MODE_CTX, cm.NUM_MODES)), [np.zeros(a) for a in layout.alphabets])

    @classmethod
    def from_tokens(
        cls, segments: Iterable[np.ndarray], codebook_size: int, *, order: np.ndarray | None = None,
        mode_weight: int = 1024, literal_weight: int = 1024, group_weight: int = 256,
    ) -> Prior:
        """Count modes and literals the way the coder sees them -> a version-3 table.

        segments: int arrays (S, h, w), each starting at a segment start (its step 0 has no reference).
        order: the rank of each token for the grouped literal model (`code_order` of the codebook), None
        for the identity. Each mode row (context) is scaled to sum at most `mode_weight`, each literal
        table to at most `literal_weight`, each group-count row to at most `group_weight` (the weight of
        the prior against what the coder then observes).
        """
        layout = cm.part_layout(codebook_size)
        groups = cm.group_layout(codebook_size)
        order = np.arange(codebook_size, dtype=np.int64) if order is None else _checked_order(order, codebook_size)
        modes = np.zeros((cm.NUM_MODE_CTX, cm.NUM_MODES), dtype=np.int64)
        parts = [np.zeros(a, dtype=np.int64) for a in layout.alphabets]
        group_counts = np.zeros(groups.contexts * groups.groups, dtype=np.int64)
        for seg in segments:
            seg = np.asarray(seg, dtype=np.int64)
            seg = seg.reshape((-1,) + seg.shape[-2:])
            if not len(seg):
                continue
            seg_modes = step_modes(seg, None)
            modes += cm.mode_observations(cm.mode_contexts(seg_modes, None), seg_modes)
            literals = seg[seg_modes == cm.MODE_LIT]
            for table, values in zip(parts, cm.split_parts(literals, layout)):
                table += np.bincount(values, minlength=len(table))
            for s in range(len(seg)):
                at = seg_modes[s] == cm.MODE_LIT
                if s:
                    ctx = cm.group_contexts(order[seg[s - 1][at]], int(at.sum()), groups, s == 1)
                else:
                    ctx = cm.key_step_contexts(order[seg[0]], at, groups)[0]
                key = ctx * groups.groups + (order[seg[s][at]] >> groups.lo_bits)
                group_counts += np.bincount(key, minlength=len(group_counts))
        return cls(codebook_size, _scale(modes, mode_weight), [_scale(t, literal_weight) for t in parts],
                   order=order, group_counts=_scale(group_counts.reshape(groups.contexts, -1), group_weight))

    def tables_bytes(self) -> bytes:
        tables = (self.mode_counts, *self.part_counts) + ((self.order, self.group_counts) if self.version >= 3 else ())
        return b"".join(t.astype("<u4").tobytes() for t in tables)

    @property
    def sha256(self) -> bytes:
        """SHA-256 of the canonical form: the 20 header bytes followed by the uncompressed tables."""
        tables = self.tables_bytes()
        return hashlib.sha256(self._head(len(tables)) + tables).digest()

    def _head(self, table_bytes: int) -> bytes:
        return _HEAD.pack(MAGIC, self.version, cm.NUM_MODE_CTX, self.codebook_size, table_bytes)

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
                                   "rebuild it with tools/release/make_prior.py")
        if version not in (2, VERSION):
            raise UnsupportedError(f"prior table version {version} is not supported (this otok reads versions 2 "
                                   f"and {VERSION})")
        if nctx != cm.NUM_MODE_CTX:
            raise CorruptError(f"prior table has {nctx} mode contexts, not {cm.NUM_MODE_CTX}")
        if not 2 <= k <= limits.MAX_CODEBOOK:
            raise LimitError(f"prior codebook size {k} outside 2..{limits.MAX_CODEBOOK}")
        sizes = [cm.NUM_MODES * nctx, *cm.part_layout(k).alphabets]
        if version >= 3:
            groups = cm.group_layout(k)
            sizes += [k, groups.contexts * groups.groups]
        if table_bytes != 4 * sum(sizes):
            raise CorruptError("prior table size does not match its codebook size")
        raw = np.frombuffer(decompress(data[_HEAD.size:-4], table_bytes), dtype="<u4")
        tables = np.split(raw, np.cumsum(sizes)[:-1])
        mode, parts = tables[0], tables[1:len(sizes) - 2 if version >= 3 else None]
        extra = {"order": tables[-2], "group_counts": tables[-1].reshape(groups.contexts, -1)} if version >= 3 else {}
        try:
            return cls(k, mode, parts, **extra)
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
        return f"Prior(codebook_size={self.codebook_size}, version={self.version}, sha256={self.sha256.hex()[:16]}...)"


def code_order(codes: np.ndarray) -> np.ndarray:
    """Ranks (int64 (K,), a permutation) that put similar codes next to each other, for the grouped
    literal model: split the codes in two halves along their principal axis, recursively, and number the
    leaves left to right. So every group of ranks (their top bits) is a compact cluster of the code
    space, and a token's group says much about its neighbours' groups. codes: float (K, d) code vectors
    (e.g. a VQ's l2-normalized codebook). The result is stored in the prior, so its float arithmetic
    never has to agree across machines."""
    codes = np.asarray(codes, dtype=np.float64)
    tokens_by_rank = np.empty(len(codes), dtype=np.int64)
    stack = [(np.arange(len(codes)), 0)]
    while stack:
        idx, start = stack.pop()
        if len(idx) <= 2:  # a pair keeps the order of its projection on the parent's axis
            tokens_by_rank[start:start + len(idx)] = idx
            continue
        centred = codes[idx] - codes[idx].mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        ordered = idx[np.argsort(centred @ axis, kind="stable")]
        half = len(ordered) // 2
        stack += [(ordered[half:], start + half), (ordered[:half], start)]
    ranks = np.empty(len(codes), dtype=np.int64)
    ranks[tokens_by_rank] = np.arange(len(codes))
    return ranks


def _checked_order(order: np.ndarray, codebook_size: int) -> np.ndarray:
    """order as int64 (K,), or UsageError unless it is a permutation of 0..K-1."""
    order = np.asarray(order, dtype=np.int64)
    if (order.shape != (codebook_size,) or order.min(initial=0) < 0 or order.max(initial=0) >= codebook_size
            or not (np.bincount(order, minlength=codebook_size) == 1).all()):
        raise UsageError(f"the prior's code order must be a permutation of 0..{codebook_size - 1}")
    return order


def _scale(counts: np.ndarray, weight: int) -> np.ndarray:
    """Scale each row (last axis) so it sums to at most `weight`: floor(c * weight / sum) when sum > weight."""
    counts = counts.astype(np.int64)
    total = counts.sum(axis=-1, keepdims=True)
    big = total > weight
    scaled = counts * weight // np.maximum(total, 1)
    return np.where(big, scaled, counts)
