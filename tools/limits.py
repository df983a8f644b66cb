"""What a frame may cost before anything is allocated for it: the pixel limit and the memory check."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

from otok.bitstream import OtokError

from .errors import ArgumentError, MediaError


MAX_FRAME_PIXELS = 1 << 26  # 8192 x 8192 padded pixels a frame: 8K UHD (33 Mpx) fits, twice over


def check_frame_size(width: int, height: int, what: str, error: type[OtokError] = MediaError) -> None:
    """Refuse frames over MAX_FRAME_PIXELS before anything is allocated for them (one line)."""
    if width * height > MAX_FRAME_PIXELS:
        message = f"{what} has frames of {width}x{height}, over otok's limit of {MAX_FRAME_PIXELS:,} pixels (8192x8192)"
        if error is ArgumentError:
            raise ArgumentError("max_side", message + "; scale them down, e.g. max_side=4096")
        raise error(message)


# Peak memory of coding one frame on the CPU with otok-s: a start-up base plus a cost a pixel, rounded up
# from the measurement in docs/BENCHMARKS.md ("large frames").
BYTES_PER_PIXEL = 900
BASE_BYTES = 1 << 29


def check_memory(width: int, height: int, device: object, what: str, error: type[OtokError] = MediaError) -> None:
    """Refuse frames whose coding on the CPU would need more memory than this process can have (the free
    memory, a cgroup's or `ulimit -v`'s limit), in one line naming both, before anything is allocated."""
    if getattr(device, "type", str(device)) != "cpu":
        return
    need, have = BASE_BYTES + BYTES_PER_PIXEL * width * height, available_memory()
    if have is None or need <= have:
        return
    message = (f"{what} has frames of {width}x{height} once padded, which need about {need / 1e9:.1f} GB to code, "
               f"more than the {have / 1e9:.1f} GB this process can have")
    if error is ArgumentError:
        side = max(1, int(max(width, height) * math.sqrt(max(have - BASE_BYTES, 0) / (need - BASE_BYTES))))
        raise ArgumentError("max_side", f"{message}; scale them down, e.g. max_side={side}")
    raise error(message)


def available_memory() -> int | None:
    """Bytes this process may still allocate: the least of MemAvailable, a cgroup v2 limit's headroom and
    RLIMIT_AS's headroom; None when none of them can be read."""
    import resource

    limits: list[int] = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        meminfo = Path("/proc/meminfo").read_text()
        limits.append(int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cap != "max":
            limits.append(int(cap) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        with contextlib.suppress(OSError, ValueError, IndexError):
            vm = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
            limits.append(soft - vm)
    return max(min(limits), 0) if limits else None


