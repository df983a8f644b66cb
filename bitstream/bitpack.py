"""Fixed-width bit packing of unsigned integers (SPEC.md, "Bit packing").

Each value is written with `bits` bits, most significant bit first; values follow each other with no
padding; the last byte is padded with zero bits.
"""

from __future__ import annotations

import numpy as np


def bits_for(codebook_size: int) -> int:
    """Bits per index for a codebook of `codebook_size` (>= 2) entries: ceil(log2 K)."""
    return max(1, (codebook_size - 1).bit_length())


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by `count` values of `bits` bits."""
    return (count * bits + 7) // 8


def pack(values: np.ndarray, bits: int) -> bytes:
    """values: any shape of integers in [0, 2**bits), bits in 1..32 -> packed bytes."""
    flat = np.ascontiguousarray(values, dtype=">u4").reshape(-1)
    if bits in (8, 16, 32):
        return flat.astype(f">u{bits // 8}").tobytes()
    planes = np.unpackbits(flat.view(np.uint8).reshape(-1, 4), axis=1)[:, 32 - bits:]  # (N, bits)
    return np.packbits(planes).tobytes()


def unpack(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack`: -> uint32 array of shape (count,). `data` must hold packed_size(count, bits) bytes."""
    if bits in (8, 16, 32):
        return np.frombuffer(data, dtype=f">u{bits // 8}", count=count).astype(np.uint32)
    planes = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * bits).reshape(count, bits)
    full = np.zeros((count, 32), dtype=np.uint8)
    full[:, 32 - bits:] = planes
    return np.packbits(full, axis=1).view(">u4").reshape(count).astype(np.uint32)
