"""The time layout: which frames each token step covers.

A segment (gop steps) starts with an image step of 1 frame, followed by video steps of `tubelet` frames.
A short last group is padded by repeating its last frame; the true frame count travels separately.
"""

from __future__ import annotations


def frames_in_step(step_in_segment: int, tubelet: int) -> int:
    return 1 if step_in_segment == 0 else tubelet


def num_steps(frames: int, tubelet: int, gop: int) -> int:
    """Token steps needed for `frames` frames: T = 1 + 4k gives 1 + k steps within one segment."""
    if frames < 0:
        raise ValueError(f"frame count must be >= 0, got {frames}")
    per_segment = 1 + tubelet * (gop - 1)
    full, rest = divmod(frames, per_segment)
    tail = 0 if rest == 0 else 1 + -(-(rest - 1) // tubelet)
    return full * gop + tail


def padded_frames(steps: int, tubelet: int, gop: int) -> int:
    """Frames the decoder produces for `steps` steps, padding included."""
    full, rest = divmod(steps, gop)
    return full * (1 + tubelet * (gop - 1)) + (0 if rest == 0 else 1 + tubelet * (rest - 1))
