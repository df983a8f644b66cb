"""Fixed-width bit packing of unsigned integers (SPEC.md, "Bit packing").

Each value is written with `bits` bits, most significant bit first; values follow each other with no
padding; the last byte is padded with zero bits.

Both directions work in blocks of BLOCK values (a multiple of 8, so a block packs to whole bytes): the
scratch of a block is about 40 bytes per value, so it stays at a few MiB whatever the count (done whole,
unpacking 2**26 values of 14 bits built 3 GB of scratch for a 0.5 GB result: issue 29 A.4).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

BLOCK = 1 << 16  # values per block
ALIGNED_BLOCK = 1 << 20  # values per block of 8, 16 or 32 bits (a copy each, no bit planes: 4 MiB at most)


def bits_for(codebook_size: int) -> int:
    """Bits per index for a codebook of `codebook_size` (>= 2) entries: ceil(log2 K)."""
    return max(1, (codebook_size - 1).bit_length())


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by `count` values of `bits` bits."""
    return (count * bits + 7) // 8


def pack(values: np.ndarray, bits: int) -> bytes:
    """values: any shape of integers in [0, 2**bits), bits in 1..32 -> packed bytes."""
    flat = np.asarray(values).reshape(-1)
    if bits in (8, 16, 32):
        return flat.astype(f">u{bits // 8}").tobytes()
    return b"".join(_pack_block(flat[i:i + BLOCK], bits) for i in range(0, len(flat), BLOCK))


def _pack_block(values: np.ndarray, bits: int) -> bytes:
    flat = np.ascontiguousarray(values, dtype=">u4")
    planes = np.unpackbits(flat.view(np.uint8).reshape(-1, 4), axis=1)[:, 32 - bits:]  # (n, bits)
    return np.packbits(planes).tobytes()


def unpack(data: bytes, bits: int, count: int, dtype: type = np.uint32) -> np.ndarray:
    """Inverse of `pack`: -> array of `dtype`, shape (count,). `data` must hold packed_size(count, bits) bytes."""
    view = memoryview(data).cast("B")
    at = [0]

    def read(n: int) -> bytes:
        at[0] += n
        return view[at[0] - n:at[0]]

    return unpack_from(read, bits, count, dtype)


def unpack_from(read: Callable[[int], bytes], bits: int, count: int, dtype: type = np.int64) -> np.ndarray:
    """Unpack `count` values whose packed bytes come from `read(n)` (exactly n bytes a call, in order; e.g. a
    decompressor's output) -> array of `dtype`, shape (count,). Holds one block's bytes at a time."""
    out = np.empty(count, dtype=dtype)
    if bits in (8, 16, 32):
        width = bits // 8
        for i in range(0, count, ALIGNED_BLOCK):
            n = min(ALIGNED_BLOCK, count - i)
            out[i:i + n] = np.frombuffer(read(n * width), dtype=f">u{width}")
        return out
    full = np.zeros((min(BLOCK, count), 32), dtype=np.uint8)  # (n, 32): the top 32 - bits stay zero
    for i in range(0, count, BLOCK):
        n = min(BLOCK, count - i)
        block = np.frombuffer(read(packed_size(n, bits)), dtype=np.uint8)
        full[:n, 32 - bits:] = np.unpackbits(block, count=n * bits).reshape(n, bits)
        out[i:i + n] = np.packbits(full[:n], axis=1).view(">u4").reshape(n)
    return out
