"""The time layout (DESIGN.md, "Time layout"; SPEC.md): which frames each token step covers.

The one module for it: the `.otok` format defines the layout, and the codec reads this file too
(`otok.codec.timeline` loads it without the rest of the bitstream package). Pure Python, no imports.

A segment is `gop` steps: its first step is an image step of 1 frame, each later step a tube of `t`
frames, so a segment covers 1 + t * (gop - 1) frames. `gop == ONE_SEGMENT` (0, as in a file's header)
makes the whole video one segment. A short last group is padded by repeating its last frame; the true
frame count travels separately. Every function takes (position, gop, t) in that order.
"""

from __future__ import annotations

ONE_SEGMENT = 0  # a gop of 0: the whole video is one segment


def is_segment_start(step: int, gop: int) -> bool:
    """True when `step` is the first (image) step of a segment."""
    return step == 0 if gop == ONE_SEGMENT else step % gop == 0


def frames_in_step(step: int, gop: int, t: int) -> int:
    """Frames that `step` covers: 1 at a segment start, else `t`."""
    return 1 if is_segment_start(step, gop) else t


def step_start_frame(step: int, gop: int, t: int) -> int:
    """Index of the first frame covered by `step` (frames in the padded timeline)."""
    if gop == ONE_SEGMENT:
        return 0 if step == 0 else 1 + t * (step - 1)
    seg, k = divmod(step, gop)
    return seg * (1 + t * (gop - 1)) + (0 if k == 0 else 1 + t * (k - 1))


def frames_in_steps(steps: int, gop: int, t: int) -> int:
    """Frames covered by the first `steps` steps, padding included: what a decoder produces."""
    return 0 if steps <= 0 else step_start_frame(steps, gop, t)


def step_of_frame(frame: int, gop: int, t: int) -> int:
    """The step whose frames include `frame` (frame >= 0)."""
    if gop == ONE_SEGMENT:
        return 0 if frame == 0 else 1 + (frame - 1) // t
    per_seg = 1 + t * (gop - 1)
    seg, f = divmod(frame, per_seg)
    return seg * gop + (0 if f == 0 else 1 + (f - 1) // t)


def num_steps(frames: int, gop: int, t: int) -> int:
    """Steps needed for `frames` frames: T = 1 + t * k frames give 1 + k steps within one segment."""
    if frames < 0:
        raise ValueError(f"frame count must be >= 0, got {frames}")
    return 0 if frames == 0 else step_of_frame(frames - 1, gop, t) + 1
