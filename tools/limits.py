"""What a frame may cost before anything is allocated for it: the pixel limit and the memory check."""

from __future__ import annotations

import math

from otok.bitstream import OtokError
from otok.codec.tiling import available_memory, step_bytes

from .errors import ArgumentError, MediaError


MAX_FRAME_PIXELS = 1 << 26  # 8192 x 8192 padded pixels a frame: 8K UHD (33 Mpx) fits, twice over


def check_frame_size(width: int, height: int, what: str, error: type[OtokError] = MediaError) -> None:
    """Refuse frames over MAX_FRAME_PIXELS before anything is allocated for them (one line)."""
    if width * height > MAX_FRAME_PIXELS:
        message = f"{what} has frames of {width}x{height}, over otok's limit of {MAX_FRAME_PIXELS:,} pixels (8192x8192)"
        if error is ArgumentError:
            raise ArgumentError("max_side", message + "; scale them down, e.g. max_side=4096")
        raise error(message)


BASE_BYTES = 1 << 29  # the process with a model loaded, before any frame (otok-s on the CPU, rounded up)


def check_memory(tok, width: int, height: int, what: str, error: type[OtokError] = MediaError,
                 tile: int | None = None, video: bool = True) -> None:
    """Refuse frames whose coding on the CPU would need more memory than this process can have (the free
    memory, a cgroup's or `ulimit -v`'s limit) even at the `tile` setting (None: auto, so even in the
    smallest tiles: `otok.codec.tiling.step_bytes`), in one line naming both, before anything is allocated."""
    if getattr(tok.device, "type", str(tok.device)) != "cpu":
        return
    engine = getattr(tok, "engine_dir", None) is not None
    least = 0 if engine and not tile else 1 if tile is None else tile  # engines are untiled unless told
    need, have = BASE_BYTES + step_bytes(tok.config, height, width, least, video=video), available_memory()
    if have is None or need <= have:
        return
    message = (f"{what} has frames of {width}x{height} once padded, which need about {need / 1e9:.1f} GB to code"
               + (" even in the smallest tiles" if least == 1 else f" at tile {least}" if least else " untiled")
               + f", more than the {have / 1e9:.1f} GB this process can have")
    if error is ArgumentError:
        side = max(1, int(max(width, height) * math.sqrt(max(have - BASE_BYTES, 0) / (need - BASE_BYTES))))
        raise ArgumentError("max_side", f"{message}; scale them down, e.g. max_side={side}")
    raise error(message)
