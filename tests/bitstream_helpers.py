"""Helpers shared by the bitstream tests."""

from __future__ import annotations

import io


class Pipe(io.RawIOBase):
    """A non-seekable byte source."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        chunk = self.data.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)

