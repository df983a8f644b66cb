"""Map steps to frames (DESIGN.md, "Time layout"): a segment is `gop` steps, its first step covers 1 frame
and each later step `t` frames. `gop == 0` means one segment for the whole video."""

from __future__ import annotations


def is_segment_start(step: int, gop: int) -> bool:
    """True when `step` is the first (image) step of a segment."""
    return step == 0 if gop == 0 else step % gop == 0


def step_start_frame(step: int, gop: int, t: int) -> int:
    """Index of the first frame covered by `step` (frames in the padded timeline)."""
    if gop == 0:
        return 0 if step == 0 else 1 + t * (step - 1)
    seg, k = divmod(step, gop)
    return seg * (1 + t * (gop - 1)) + (0 if k == 0 else 1 + t * (k - 1))


def frames_in_steps(steps: int, gop: int, t: int) -> int:
    """Number of (padded) frames covered by the first `steps` steps."""
    return 0 if steps <= 0 else step_start_frame(steps, gop, t)


def step_of_frame(frame: int, gop: int, t: int) -> int:
    """The step whose frames include `frame` (frame >= 0)."""
    if gop == 0:
        return 0 if frame == 0 else 1 + (frame - 1) // t
    per_seg = 1 + t * (gop - 1)
    seg, f = divmod(frame, per_seg)
    return seg * gop + (0 if f == 0 else 1 + (f - 1) // t)
