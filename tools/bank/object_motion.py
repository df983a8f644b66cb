"""Synthetic object motion: textured cut-outs moving, scaling and rotating on their own over a moving background.

Optical-flow data sets (FlyingChairs, FlyingThings3D) teach motion with objects pasted over backgrounds; this
does the same for the tokenizer, so that its clips show occlusion, disocclusion and motion of several pixels
inside a 4-frame tube, not only a camera's rigid drift.

A clip is a camera move over a background photo (the paths of `otok.tools.bank.camera_motion`) and a few objects
drawn back to front. An object is a random shape (a polygon, an ellipse or a smooth blob) cut from a patch of
a photo; it moves on its own path (a constant velocity plus a constant acceleration), spins at its own rate
and grows or shrinks exponentially. Objects enter and leave the frame. Each frame is rendered at
RENDER_SCALE times the output size: the background with `cv2.warpAffine` (bicubic), each object's
premultiplied texture and its alpha with `cv2.warpAffine` (bicubic; alpha drawn anti-aliased from a
supersampled mask), then the frame is area-downscaled to the output size. Every choice comes from the
generator passed in, so a clip is a function of its seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from otok.tools.bank.camera_motion import RENDER_SCALE, render_frames

SHAPES = ("polygon", "ellipse", "blob")
OBJECTS = (2, 5)  # objects per clip, inclusive
DIAMETER = (0.2, 0.7)  # an object's diameter at its first frame, as a fraction of the output height
SPEED = (0.75, 6.0)  # output pixels per frame at the middle of the clip
SPIN_DEG = 3.0  # at most this many degrees per frame, either way
GROWTH = 1.5  # an object's size changes by at most this factor (or its inverse) over the clip
MASK_SUPERSAMPLE = 4  # masks are drawn at this multiple of their size, then area-reduced: smooth edges


@dataclass(frozen=True)
class Cutout:
    """One object: its texture and alpha (side x side), and its motion in render pixels and frames."""

    texture: np.ndarray  # float32 (S, S, 3), RGB 0..255
    alpha: np.ndarray  # float32 (S, S), 0..1
    centre: tuple[float, float]  # at the middle frame
    velocity: tuple[float, float]  # per frame, at the middle frame
    acceleration: tuple[float, float]  # per frame squared
    angle: float  # degrees, at the middle frame
    spin: float  # degrees per frame
    size: float  # render pixels that the S texture pixels span at the middle frame
    growth: float  # log of the size change per frame
    shape: str
    photo: int  # index of the photo it was cut from

    def pose(self, t: float) -> tuple[float, float, float, float]:
        """(x, y, angle in degrees, size in render pixels) at `t` frames from the middle frame."""
        x = self.centre[0] + self.velocity[0] * t + 0.5 * self.acceleration[0] * t * t
        y = self.centre[1] + self.velocity[1] * t + 0.5 * self.acceleration[1] * t * t
        return x, y, self.angle + self.spin * t, self.size * math.exp(self.growth * t)


def shape_mask(side: int, shape: str, rng: np.random.Generator) -> np.ndarray:
    """An anti-aliased mask of `shape` inside the circle inscribed in a side x side square (so that turning
    it never cuts it) -> float32 (side, side) in 0..1."""
    import cv2

    big = side * MASK_SUPERSAMPLE
    centre, radius = big / 2, 0.47 * big
    canvas = np.zeros((big, big), np.uint8)
    if shape == "ellipse":
        axes = (round(radius), round(radius * rng.uniform(0.35, 1.0)))
        cv2.ellipse(canvas, (round(centre), round(centre)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1,
                    cv2.LINE_AA)
    else:
        if shape == "polygon":  # star-shaped: 3 to 9 corners around the centre, jittered in angle and radius
            corners = int(rng.integers(3, 10))
            angles = (np.arange(corners) + rng.uniform(-0.35, 0.35, corners)) * 2 * math.pi / corners
            radii = radius * rng.uniform(0.55, 1.0, corners)
        else:  # blob: a radius that varies smoothly around the centre (a few low harmonics)
            angles = np.linspace(0, 2 * math.pi, 96, endpoint=False)
            wave = sum(rng.uniform(0, 0.22) * np.cos(k * angles + rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4, 5))
            radii = radius * (1 + wave) / (1 + 0.22 * 4)
        points = np.stack([centre + radii * np.cos(angles), centre + radii * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [np.round(points * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def random_cutout(photos: list[np.ndarray], frames: int, render_w: int, render_h: int,
                  rng: np.random.Generator) -> Cutout:
    """An object cut from one of `photos` (uint8 (H, W, 3) each) with a random shape, path, spin and growth."""
    import cv2

    which = int(rng.integers(len(photos)))
    photo = photos[which]
    half = (frames - 1) / 2
    growth = math.log(rng.uniform(1 / GROWTH, GROWTH)) / max(frames - 1, 1)
    size = render_h * rng.uniform(*DIAMETER) * math.exp(growth * half)  # the first frame's size was drawn
    largest = size * math.exp(abs(growth) * half)
    side = max(8, math.ceil(largest))  # texture pixels: never enlarged on the way into the render
    # A patch of the photo, from `side` pixels up to 3 times that (reduced by area), inside the photo.
    short = min(photo.shape[:2])
    patch = int(rng.integers(min(side, short), max(min(side, short), min(3 * side, short)) + 1))
    y0 = int(rng.integers(photo.shape[0] - patch + 1))
    x0 = int(rng.integers(photo.shape[1] - patch + 1))
    crop = photo[y0 : y0 + patch, x0 : x0 + patch]
    texture = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if patch > side else cv2.INTER_CUBIC)
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    alpha = shape_mask(side, shape, rng)
    speed = RENDER_SCALE * rng.uniform(*SPEED)
    heading = rng.uniform(0, 2 * math.pi)
    velocity = (speed * math.cos(heading), speed * math.sin(heading))
    # The velocity changes by at most half the speed over the clip, in any direction: curved, braking, speeding.
    turn = rng.uniform(0, 2 * math.pi)
    accel = rng.uniform(0, 0.5) * speed / max(frames - 1, 1)
    # The middle frame shows the object inside the picture; before and after it may be outside.
    centre = (rng.uniform(0.1, 0.9) * render_w, rng.uniform(0.1, 0.9) * render_h)
    return Cutout(texture.astype(np.float32), alpha, centre, velocity,
                  (accel * math.cos(turn), accel * math.sin(turn)), float(rng.uniform(0, 360)),
                  float(rng.uniform(-SPIN_DEG, SPIN_DEG)), size, growth, shape, which)


def cutout_matrix(cutout: Cutout, t: float) -> np.ndarray:
    """The 2x3 affine map from the cut-out's texture pixels to render pixels at `t` frames from the middle."""
    x, y, angle, size = cutout.pose(t)
    side = cutout.alpha.shape[0]
    s = size / side
    c, n = math.cos(math.radians(angle)) * s, math.sin(math.radians(angle)) * s
    o = (side - 1) / 2
    return np.array([[c, -n, x - c * o + n * o], [n, c, y - n * o - c * o]], dtype=np.float64)


@dataclass(frozen=True)
class ClipPlan:
    """Everything random about a clip, drawn before any frame is rendered."""

    frames: int
    out_w: int
    out_h: int
    cutouts: tuple[Cutout, ...]  # back to front
    background_seed: int  # seeds the camera path over the background photo


def plan_clip(photos: list[np.ndarray], frames: int, out_w: int, out_h: int, rng: np.random.Generator) -> ClipPlan:
    """The objects of a clip cut from `photos`, and the seed of its background's camera path."""
    render_w, render_h = out_w * RENDER_SCALE, out_h * RENDER_SCALE
    count = int(rng.integers(OBJECTS[0], OBJECTS[1] + 1))
    cutouts = tuple(random_cutout(photos, frames, render_w, render_h, rng) for _ in range(count))
    return ClipPlan(frames, out_w, out_h, cutouts, int(rng.integers(2**63)))


def render_plan(plan: ClipPlan, background: np.ndarray, layers: bool = True) -> Iterator[np.ndarray]:
    """The frames of `plan` over `background` (uint8 (H, W, 3)); layers=False leaves the objects out (the
    same background frames) -> uint8 (out_h, out_w, 3) each."""
    import cv2

    render_w, render_h = plan.out_w * RENDER_SCALE, plan.out_h * RENDER_SCALE
    half = (plan.frames - 1) / 2
    premultiplied = [c.texture * c.alpha[..., None] for c in plan.cutouts]
    backdrop = render_frames(background, plan.frames, render_w, render_h, np.random.default_rng(plan.background_seed))
    for i, frame in enumerate(backdrop):
        out = frame.astype(np.float32)
        for cutout, colour in zip(plan.cutouts if layers else (), premultiplied):
            m = cutout_matrix(cutout, i - half)
            a = cv2.warpAffine(cutout.alpha, m, (render_w, render_h), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            rgb = cv2.warpAffine(colour, m, (render_w, render_h), flags=cv2.INTER_CUBIC,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            np.clip(a, 0, 1, out=a)
            out *= 1 - a[..., None]
            out += np.clip(rgb, 0, 255)
        small = cv2.resize(out, (plan.out_w, plan.out_h), interpolation=cv2.INTER_AREA)
        yield np.clip(np.rint(small), 0, 255).astype(np.uint8)


def render_clip(background: np.ndarray, photos: list[np.ndarray], frames: int, out_w: int, out_h: int,
                rng: np.random.Generator) -> Iterator[np.ndarray]:
    """`frames` frames of objects cut from `photos` moving over a camera move across `background`
    -> uint8 (out_h, out_w, 3) each."""
    return render_plan(plan_clip(photos, frames, out_w, out_h, rng), background)


def object_centres(plan: ClipPlan) -> np.ndarray:
    """Each object's centre in output pixels, frame by frame -> float64 (frames, objects, 2)."""
    half = (plan.frames - 1) / 2
    return np.array([[c.pose(i - half)[:2] for c in plan.cutouts] for i in range(plan.frames)]) / RENDER_SCALE
