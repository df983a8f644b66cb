"""Synthetic camera motion over a still photo: smooth pans, zooms and small rotations with sub-pixel steps.

A clip is a path of camera windows over the photo (centre, width, angle), eased from a start pose to an end
pose. Each frame is rendered with cv2.warpAffine (bicubic) at twice the output size from the photo, itself
first reduced with area averaging only as far as that render size allows, then area-downscaled to the output
size, so frames are sharp and free of aliasing whatever the photo's resolution.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

RENDER_SCALE = 2  # frames are rendered at this multiple of the output size, then area-downscaled
MAX_ANGLE_DEG = 3.0
MOTIONS = ("pan", "zoom", "rotate", "pan+zoom", "pan+rotate", "zoom+rotate")


@dataclass(frozen=True)
class Pose:
    """A camera window over the photo: centre (x, y) and width in photo pixels, angle in degrees."""

    x: float
    y: float
    width: float
    angle: float


def _eased(t: float, smooth: bool) -> float:
    return 0.5 - 0.5 * math.cos(math.pi * t) if smooth else t


def _interpolate(a: Pose, b: Pose, t: float) -> Pose:
    return Pose(a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t, a.width + (b.width - a.width) * t,
                a.angle + (b.angle - a.angle) * t)


def random_path(photo_w: int, photo_h: int, out_w: int, out_h: int, rng: np.random.Generator) -> tuple[Pose, Pose, str]:
    """A start and end pose whose windows (aspect out_w:out_h, any angle up to MAX_ANGLE_DEG) stay inside the
    photo -> (start, end, motion name)."""
    motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
    aspect = out_h / out_w
    widest = min(photo_w, photo_h / aspect) * 0.92  # the largest window that fits, with room to rotate
    width0 = widest * rng.uniform(0.55, 0.8)
    width1 = width0 * (rng.uniform(0.72, 0.9) if "zoom" in motion else 1.0)
    if "zoom" in motion and rng.random() < 0.5:
        width0, width1 = width1, width0  # zoom out as often as in
    angle0 = rng.uniform(-1.0, 1.0) if "rotate" in motion else 0.0
    angle1 = angle0 + (rng.uniform(1.0, 2.0) * rng.choice([-1, 1]) if "rotate" in motion else 0.0)
    angle1 = float(np.clip(angle1, -MAX_ANGLE_DEG, MAX_ANGLE_DEG))
    # Half extents of the widest window's bounding box at the largest angle: any centre within bounds fits.
    w, h = max(width0, width1), max(width0, width1) * aspect
    rad = math.radians(MAX_ANGLE_DEG)
    half_x = 0.5 * (w * math.cos(rad) + h * math.sin(rad))
    half_y = 0.5 * (w * math.sin(rad) + h * math.cos(rad))
    lo_x, hi_x = half_x, max(half_x, photo_w - half_x)
    lo_y, hi_y = half_y, max(half_y, photo_h - half_y)
    x0, y0 = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
    if "pan" in motion:
        reach = 0.35 * w  # at most about a third of the frame over the clip
        x1 = float(np.clip(x0 + rng.uniform(-reach, reach), lo_x, hi_x))
        y1 = float(np.clip(y0 + rng.uniform(-reach, reach) * 0.5, lo_y, hi_y))
    else:
        x1, y1 = x0, y0
    return Pose(x0, y0, width0, angle0), Pose(x1, y1, width1, angle1), motion


def _window_matrix(pose: Pose, render_w: int, render_h: int) -> np.ndarray:
    """The 2x3 affine map from render pixels to photo pixels (for WARP_INVERSE_MAP)."""
    s = pose.width / render_w
    c, n = math.cos(math.radians(pose.angle)) * s, math.sin(math.radians(pose.angle)) * s
    ox, oy = (render_w - 1) / 2, (render_h - 1) / 2
    return np.array([[c, -n, pose.x - c * ox + n * oy], [n, c, pose.y - n * ox - c * oy]], dtype=np.float64)


def render_clip(photo: np.ndarray, frames: int, out_w: int, out_h: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """`frames` frames of a random camera move over `photo` (uint8 (H, W, 3)) -> uint8 (out_h, out_w, 3) each."""
    import cv2

    for big in render_frames(photo, frames, out_w * RENDER_SCALE, out_h * RENDER_SCALE, rng):
        yield cv2.resize(big, (out_w, out_h), interpolation=cv2.INTER_AREA)


def render_frames(photo: np.ndarray, frames: int, render_w: int, render_h: int,
                  rng: np.random.Generator) -> Iterator[np.ndarray]:
    """`frames` frames of a random camera move over `photo`, at the render size (before the area downscale)
    -> uint8 (render_h, render_w, 3) each."""
    import cv2

    start, end, _ = random_path(photo.shape[1], photo.shape[0], render_w, render_h, rng)
    # Reduce the photo once so that the narrowest window still maps at least 1:1 onto the render size.
    reduce = min(1.0, render_w / min(start.width, end.width))
    if reduce < 1.0:
        size = (max(1, round(photo.shape[1] * reduce)), max(1, round(photo.shape[0] * reduce)))
        photo = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
        scale = lambda p: Pose(p.x * reduce, p.y * reduce, p.width * reduce, p.angle)  # noqa: E731
        start, end = scale(start), scale(end)
    smooth = bool(rng.random() < 0.7)
    for i in range(frames):
        pose = _interpolate(start, end, _eased(i / max(frames - 1, 1), smooth))
        yield cv2.warpAffine(photo, _window_matrix(pose, render_w, render_h), (render_w, render_h),
                             flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
