"""Issue 20: inputs an attacker or a careless user gives (tiny frames, forged containers, clashing
outputs). Every test builds its own bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from codec_helpers import tiny
from otok.codec import save
from otok.tools.cli import main
from otok.tools.video_io import VideoReader, VideoWriter


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save(tiny(), tmp_path_factory.mktemp("model") / "tiny.safetensors")


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def write_frames(path: Path, width: int, height: int, frames: int, codec: str | None = "h264") -> Path:
    writer = VideoWriter(path, width, height, Fraction(25), codec=None if path.suffix == ".png" else codec)
    for t in range(frames):
        writer.write(np.full((height, width, 3), 20 + 30 * t, np.uint8))
    writer.close()
    return path


# ----- tiny frames: any size of at least one pixel round-trips -----------------------------------------
@pytest.mark.parametrize("width,height", [(1, 1), (2, 2), (7, 3), (16, 4), (1, 300)])
def test_tiny_frames_round_trip(tmp_path, capsys, model_path, width, height):
    for src, frames, back in ((tmp_path / "in.png", 1, tmp_path / "back.png"),
                              (tmp_path / "in.mkv", 6, tmp_path / "back.mkv")):
        write_frames(src, width, height, frames)
        coded = tmp_path / "c.otok"
        status, _, err = run(capsys, "encode", src, coded, "--model", model_path, "-q")
        assert status == 0, err
        status, _, err = run(capsys, "decode", coded, back, "--model", model_path, "-q")
        assert status == 0, err
        decoded = list(VideoReader(back))
        assert len(decoded) == frames and decoded[0].shape == (height, width, 3)


def test_max_side_of_one_pixel(tmp_path, capsys, model_path):
    src = write_frames(tmp_path / "in.mkv", 40, 24, 5)
    status, _, err = run(capsys, "encode", src, tmp_path / "c.otok", "--model", model_path, "--max-side", "1", "-q")
    assert status == 0, err
    status, _, err = run(capsys, "decode", tmp_path / "c.otok", tmp_path / "b.mkv", "--model", model_path, "-q")
    assert status == 0, err
    frames = list(VideoReader(tmp_path / "b.mkv"))
    assert len(frames) == 5 and frames[0].shape == (1, 1, 3)
