"""Synthetic object motion (`otok.tools.bank.object_motion`): clips are functions of their seed, shapes and ranges
are as documented, edges are anti-aliased, and the objects move on their own over the moving background
(occluding and uncovering it, several pixels inside a 4-frame tube)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from otok.tools.bank import object_motion as om

OUT_W, OUT_H = 96, 54


def _photo(width, height, seed):
    """A smooth colourful random photo."""
    import cv2

    small = np.random.default_rng(seed).integers(0, 256, (max(2, height // 24), max(2, width // 24), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def photos():
    return [_photo(400, 300, 1), _photo(300, 300, 2), _photo(500, 280, 3)]


@pytest.fixture(scope="module")
def background():
    return _photo(1200, 800, 4)


def test_a_clip_is_a_function_of_its_seed(photos, background):
    def clip(seed):
        return np.stack(list(om.render_clip(background, photos, 9, OUT_W, OUT_H, np.random.default_rng(seed))))

    a = clip(5)
    assert a.shape == (9, OUT_H, OUT_W, 3) and a.dtype == np.uint8
    assert np.array_equal(a, clip(5))
    assert not np.array_equal(a, clip(6))


def test_objects_are_drawn_within_their_ranges(photos):
    frames = 33
    for seed in range(40):
        plan = om.plan_clip(photos, frames, OUT_W, OUT_H, np.random.default_rng(seed))
        assert om.OBJECTS[0] <= len(plan.cutouts) <= om.OBJECTS[1]
        for c in plan.cutouts:
            side = c.alpha.shape[0]
            assert c.texture.shape == (side, side, 3) and c.alpha.dtype == c.texture.dtype == np.float32
            assert c.shape in om.SHAPES and 0 <= c.photo < len(photos)
            speed = math.hypot(*c.velocity) / om.RENDER_SCALE
            assert om.SPEED[0] - 1e-9 <= speed <= om.SPEED[1] + 1e-9
            assert abs(c.spin) <= om.SPIN_DEG
            sizes = [c.pose(t)[3] for t in (-(frames - 1) / 2, (frames - 1) / 2)]
            assert max(sizes) <= side + 1e-6  # a texture is never enlarged on the way into the render
            assert max(sizes) / min(sizes) <= om.GROWTH + 1e-6
            first = c.pose(-(frames - 1) / 2)[3] / (OUT_H * om.RENDER_SCALE)
            assert om.DIAMETER[0] - 1e-9 <= first <= om.DIAMETER[1] + 1e-9


def test_masks_have_smooth_edges_and_fit_their_circle():
    import cv2

    yy, xx = np.mgrid[0:64, 0:64]
    outside = np.hypot(xx - 31.5, yy - 31.5) > 32
    for i, shape in enumerate(om.SHAPES * 3):
        alpha = om.shape_mask(64, shape, np.random.default_rng(i))
        assert alpha.shape == (64, 64) and alpha.min() >= 0 and alpha.max() <= 1
        assert (alpha == 1).sum() > 64 and np.all(alpha[outside] == 0)
        edge = (alpha > 0.02) & (alpha < 0.98)
        contours, _ = cv2.findContours(np.uint8(alpha > 0.5), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        perimeter = sum(cv2.arcLength(c, True) for c in contours)
        assert 0.5 * perimeter < edge.sum() < 3 * perimeter  # an anti-aliased rim a pixel or two wide, no blur


def _shift(a, b):
    import cv2

    grey = [np.float32(x.mean(-1)) for x in (a, b)]
    (dx, dy), _ = cv2.phaseCorrelate(grey[0], grey[1])
    return dx, dy


def test_objects_move_on_their_own_over_the_moving_background(photos, background):
    frames, checked = 17, 0
    for seed in range(12):
        plan = om.plan_clip(photos, frames, OUT_W, OUT_H, np.random.default_rng(seed))
        bare = np.stack(list(om.render_plan(plan, background, layers=False))).astype(np.float64)
        # Over one 4-frame tube the background moves with the camera (a pan, a zoom, a turn: the shift that
        # best explains it), and every object's centre moves by a couple of pixels or more off that.
        drift = np.array(_shift(bare[6], bare[10]))
        centres = om.object_centres(plan)
        steps = centres[10] - centres[6]
        assert np.linalg.norm(steps - drift, axis=1).min() > 2
        # One object alone: the pixels it covers move as its centre says, hiding and uncovering background.
        alone = replace(plan, cutouts=plan.cutouts[:1])
        clip = np.stack(list(om.render_plan(alone, background))).astype(np.float64)
        covered = np.abs(clip - bare).max(-1) > 8  # (T, H, W)
        a, b = covered[6], covered[10]
        if not a.any() or not b.any() or any(m[[0, -1]].any() or m[:, [0, -1]].any() for m in (a, b)):
            continue  # partly outside the frame: its visible part does not follow its centre
        yy, xx = np.mgrid[0:OUT_H, 0:OUT_W]
        centroid = [np.array([(xx * m).sum(), (yy * m).sum()]) / m.sum() for m in (a, b)]
        assert np.linalg.norm(centroid[1] - centroid[0] - steps[0]) < 1.5
        assert (a & ~b).any() and (~a & b).any()  # disocclusion and occlusion
        checked += 1
    assert checked >= 4
