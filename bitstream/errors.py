"""The one exception family of `otok.bitstream`.

Every failure caused by a file (damaged, truncated, forged, too new) or by a caller passing data that
does not fit the header raises a subclass of `OtokError`, with a message a person can act on.
"""

from __future__ import annotations


class OtokError(Exception):
    """Base class of every error raised by `otok.bitstream`."""


class NotOtokError(OtokError):
    """The input does not start with the `.otok` magic bytes."""


class UnsupportedError(OtokError):
    """A newer format version, an unknown critical chunk or an unknown coder: needs a newer reader."""


class CorruptError(OtokError):
    """The file is damaged: a CRC mismatch, an inconsistent field or undecodable chunk data."""


class TruncatedError(CorruptError):
    """The file ends before its trailer. `message` says where; `steps` counts the intact steps."""

    def __init__(self, message: str, steps: int = 0) -> None:
        super().__init__(message)
        self.steps = steps


class LimitError(CorruptError):
    """A length or count in the file exceeds a reader cap or the bytes that remain."""


class UsageError(OtokError, ValueError):
    """A caller error: a grid of the wrong shape or range, a write after close, a missing prior."""
