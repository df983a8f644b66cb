"""The measures of what a person sees (`otok.tools.evaluation.metrics`, docs/METRICS.md), on constructed clips whose
answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from otok.tools.evaluation.metrics import (
    FrameLayout, VideoQuality, bicubic8, judder_ratio, mean_quality, psnr, seam_ratio, segment_pulse_db,
    side_by_side, video_quality,
)


def textured_clip(frames: int = 17, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A gradient moving a few pixels a frame, with mild noise: motion in every frame pair, no seams."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    clip = np.stack([np.stack([(2 * xx + 3 * t) % 256, (3 * yy + t) % 256, (xx + yy + 2 * t) % 256], -1)
                     for t in range(frames)])
    return np.clip(clip + rng.integers(-3, 4, clip.shape), 0, 255).astype(np.uint8)


def smooth_image(height: int = 64, width: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width] / 16.0
    img = 128 + 60 * np.stack([np.sin(xx), np.cos(yy), np.sin(xx + yy)], -1)
    return img.round().astype(np.uint8)


def test_identical_clips_score_as_the_source():
    clip = textured_clip()
    q = video_quality(clip, clip)
    assert q["seam_ratio"] == pytest.approx(1.0) and q["judder_ratio"] == pytest.approx(1.0)
    assert q["channel_bias"] == {"r": 0.0, "g": 0.0, "b": 0.0}
    assert q["psnr_min"] == float("inf") and q["channel_psnr"]["g"] == float("inf")


def test_block_offsets_make_seams():
    clip = textured_clip()
    rng = np.random.default_rng(1)
    t, h, w, _ = clip.shape
    offsets = rng.integers(-20, 21, (t, h // 8, w // 8, 1)).repeat(8, 1).repeat(8, 2)
    blocky = np.clip(clip.astype(int) + offsets, 0, 255).astype(np.uint8)
    assert seam_ratio(clip, blocky) > 3
    # The same offsets on a grid shifted by 4 pixels are not at the decoder's seams: they count against it.
    shifted = np.clip(clip.astype(int) + np.roll(offsets, 4, axis=(1, 2)), 0, 255).astype(np.uint8)
    assert seam_ratio(clip, shifted) < 0.8
    # Noise without structure adds no seams.
    noisy = np.clip(clip.astype(int) + rng.integers(-10, 11, clip.shape), 0, 255).astype(np.uint8)
    assert seam_ratio(clip, noisy) == pytest.approx(1.0, abs=0.05)


def test_seam_ratio_follows_the_patch_size_and_needs_a_seam():
    clip = textured_clip(frames=1)
    offsets = np.random.default_rng(2).integers(-20, 21, (48 // 16, 64 // 16, 1)).repeat(16, 0).repeat(16, 1)
    blocky = np.clip(clip[0].astype(int) + offsets, 0, 255).astype(np.uint8)
    assert seam_ratio(clip[0], blocky, patch=16) > 3
    assert seam_ratio(clip[0, :8, :8], blocky[:8, :8]) is None


def test_frames_frozen_within_tubes_judder():
    clip = textured_clip(frames=17)
    layout = FrameLayout(tubelet=4, gop=5)
    frozen = clip.copy()
    for t in range(17):
        frozen[t] = clip[max(s for s in range(t + 1) if layout.starts_step(s))]  # the tube's first frame
    assert judder_ratio(clip, frozen) > 10
    # The decoded clip is compared with the source: a source that itself holds still within tubes is 1.
    assert judder_ratio(frozen, frozen) == pytest.approx(1.0)


def test_the_time_layout_is_the_files():
    layout = FrameLayout(tubelet=4, gop=5)
    assert [t for t in range(40) if layout.is_image(t)] == [0, 17, 34]
    assert [t for t in range(22) if layout.starts_step(t)] == [0, 1, 5, 9, 13, 17, 18]
    one_segment = FrameLayout(tubelet=4, gop=0)  # a header's gop 0: the whole video is one segment
    assert [t for t in range(40) if one_segment.is_image(t)] == [0]


def test_judder_needs_two_tubes():
    clip = textured_clip(frames=9)
    assert judder_ratio(clip[:1], clip[:1]) is None  # an image
    assert judder_ratio(clip[:5], clip[:5]) is None  # one tube
    assert judder_ratio(clip[:6], clip[:6]) == pytest.approx(1.0)  # a second tube starts at frame 5


def test_segment_pulse_is_image_steps_minus_video_steps():
    clip = textured_clip(frames=21)
    rng = np.random.default_rng(3)
    decoded = clip.copy()
    layout = FrameLayout(4, 5)
    for t in range(21):
        noise = rng.integers(-2, 3, clip.shape[1:]) if layout.is_image(t) else rng.integers(-16, 17, clip.shape[1:])
        decoded[t] = np.clip(clip[t].astype(int) + noise, 0, 255)
    q = video_quality(clip, decoded)
    image = np.mean([psnr(clip[t], decoded[t]) for t in (0, 17)])
    video = np.mean([psnr(clip[t], decoded[t]) for t in range(21) if t not in (0, 17)])
    assert q["segment_pulse_db"] == pytest.approx(image - video) and q["segment_pulse_db"] > 10
    assert segment_pulse_db(clip[:1], decoded[:1]) is None


def test_a_colour_cast_shows_per_channel():
    clip = textured_clip(frames=3) // 2 + 64  # away from 0 and 255, so the offset is not clipped
    cast = (clip.astype(int) + [6, 0, -4]).astype(np.uint8)
    q = video_quality(clip, cast)
    assert q["channel_bias"] == pytest.approx({"r": 6.0, "g": 0.0, "b": -4.0})
    assert q["channel_psnr"]["r"] == pytest.approx(10 * np.log10(255**2 / 36))
    assert q["channel_psnr"]["g"] == float("inf")
    # A grey shift (all channels alike) leaves the chroma exact; a colour cast does not.
    grey = video_quality(clip, (clip.astype(int) + 5).astype(np.uint8))["chroma_psnr"]
    assert grey["cb"] > 60 and grey["cr"] > 60
    assert q["chroma_psnr"]["cb"] < 50 and q["chroma_psnr"]["cr"] < 50


def test_bicubic_floor():
    smooth = smooth_image()
    assert bicubic8(smooth).shape == smooth.shape
    assert video_quality(smooth, smooth)["psnr_bicubic8"] > 30
    noise = np.random.default_rng(4).integers(0, 256, smooth.shape).astype(np.uint8)
    assert video_quality(noise, noise)["psnr_bicubic8"] < 15
    tiny = smooth[:5, :7]  # smaller than 8 pixels: scaled to 1x1 and back
    assert np.isfinite(video_quality(tiny, tiny)["psnr_bicubic8"])


def test_streaming_equals_whole_clip_and_means():
    clip = textured_clip(frames=10)
    decoded = np.clip(clip.astype(int) + 3, 0, 255).astype(np.uint8)
    q = VideoQuality()
    for a, b in zip(clip, decoded):
        q.add(a, b)
    assert q.result() == video_quality(clip, decoded)
    one, image = q.result(), video_quality(clip[0], decoded[0])
    mean = mean_quality([one, image])
    assert mean["judder_ratio"] == one["judder_ratio"]  # the image has none
    assert mean["psnr_min"] == min(one["psnr_min"], image["psnr_min"])
    assert mean["channel_bias"]["r"] == pytest.approx((one["channel_bias"]["r"] + image["channel_bias"]["r"]) / 2)


def test_side_by_side():
    a = smooth_image(16, 24)
    b = (a.astype(int) + 10).clip(0, 255).astype(np.uint8)
    image = side_by_side(a, b)
    assert image.shape == (16, 72, 3) and image.dtype == np.uint8
    assert (image[:, :24] == a).all() and (image[:, 24:48] == b).all()
    assert (image[:, 48:] == 40).all()  # |error| 10, x4
