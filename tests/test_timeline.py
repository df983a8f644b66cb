"""The one time-layout module (`otok.bitstream.timeline`, also `otok.codec.timeline`): every function agrees
with a frame-by-frame walk of the layout, and gop 0 is one segment everywhere, streams included."""

from __future__ import annotations

import torch

from codec_helpers import tiny
from otok.bitstream import timeline
from otok.codec import timeline as codec_timeline
from otok.codec.streaming import StreamEncoder


def walk(frames: int, gop: int, t: int) -> list[int]:
    """The step of each frame, by laying steps one after another."""
    steps, step = [], 0
    while len(steps) < frames:
        steps += [step] * (1 if (step == 0 if gop == 0 else step % gop == 0) else t)
        step += 1
    return steps[:frames]


def test_layout_functions_agree_with_a_walk():
    for gop in (0, 1, 2, 5):
        for t in (1, 4):
            layout = walk(200, gop, t)
            for frame, step in enumerate(layout):
                assert timeline.step_of_frame(frame, gop, t) == step
                assert timeline.num_steps(frame + 1, gop, t) == step + 1
            for step in range(layout[-1]):
                assert timeline.step_start_frame(step, gop, t) == layout.index(step)
                assert timeline.frames_in_step(step, gop, t) == layout.count(step)
                assert timeline.frames_in_steps(step + 1, gop, t) == layout.index(step + 1)
            assert timeline.num_steps(0, gop, t) == 0


def test_codec_reads_the_same_module():
    assert codec_timeline.ONE_SEGMENT == timeline.ONE_SEGMENT == 0
    for name in ("is_segment_start", "frames_in_step", "frames_in_steps", "step_start_frame", "step_of_frame",
                 "num_steps"):
        assert getattr(codec_timeline, name).__code__.co_code == getattr(timeline, name).__code__.co_code
    assert codec_timeline.num_steps is not None and codec_timeline.num_steps(17, 5, 4) == 5


def test_stream_encoder_needs_the_frame_size():
    import pytest

    with pytest.raises(TypeError, match="height=H, width=W"):
        tiny().stream_encoder(1)
    with pytest.raises(TypeError, match="height=H, width=W"):
        tiny().stream_decoder(batch=1, height=32)


def test_whole_clip_with_gop_0_is_one_segment():
    tok = tiny()
    video = torch.rand(1, 3, 29, 32, 32) * 2 - 1
    assert torch.equal(tok.encode(video, gop=0), tok.encode(video, gop=100))


def test_stream_with_gop_0_is_one_segment():
    tok = tiny()
    video = torch.rand(1, 3, 29, 32, 32) * 2 - 1
    one = StreamEncoder(tok, 1, 32, 32, gop=timeline.ONE_SEGMENT)
    long = StreamEncoder(tok, 1, 32, 32, gop=100)
    with torch.inference_mode():
        assert all(torch.equal(a, b) for a, b in zip(one.push(video) + one.flush(), long.push(video) + long.flush()))
