"""otok.bitstream: the `.otok` container and its entropy coders (normative spec: SPEC.md).

Works on integer token grids (numpy) and float16 KL latents; imports only the standard library, numpy,
zstandard and numba (the ctx coder's kernels), so a language-model pipeline can read tokens without PyTorch.
"""

from __future__ import annotations

from .container import VERSION_MAJOR, VERSION_MINOR
from .coders.base import LevelParams, NoParams
from .coders.ctx import CtxParams
from .errors import (
    CorruptError,
    LimitError,
    NotOtokError,
    OtokError,
    TruncatedError,
    UnsupportedError,
    UsageError,
)
from .header import Header
from .prior import Prior
from .reader import OtokReader, OtokWarning, VerifyReport, read_header, read_tokens
from .writer import OtokWriter

CODERS = ("raw", "zstd", "ctx", "f16z")

__all__ = [
    "CODERS", "CorruptError", "CtxParams", "Header", "LevelParams", "LimitError", "NoParams", "NotOtokError",
    "OtokError", "OtokReader", "OtokWarning", "OtokWriter", "Prior", "TruncatedError", "UnsupportedError",
    "UsageError", "VERSION_MAJOR", "VERSION_MINOR", "VerifyReport", "read_header", "read_tokens",
]
