"""The README is a user's guide that works as written: its Python runs, its commands exist, it stays short."""

from __future__ import annotations

import re
import shlex
from fractions import Fraction
from pathlib import Path

import pytest

from otok.tools.cli import build_parser

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
SAMPLE = ROOT / "tools" / "samples" / "bigbuckbunny_2s.mp4"
SETUP = [
    "python3 -m venv .venv && . .venv/bin/activate && pip install -q torch==2.13.0 && pip install -q -e . && "
    "otok encode tools/samples/bigbuckbunny_2s.mp4 /tmp/bbb.otok && otok decode /tmp/bbb.otok /tmp/bbb.mp4 && "
    "otok eval tools/samples/bigbuckbunny_2s.mp4",
    "python3 -m venv .venv && . .venv/bin/activate && pip install -q torch==2.13.0 && pip install -q -e '.[test]' && "
    "python -m pytest -q",
]


def text() -> str:
    return README.read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text(), flags=re.S)


def test_readme_is_a_short_guide_in_a_users_order():
    assert len(README.read_bytes()) <= 8000
    headings = re.findall(r"^## (.+)$", text(), flags=re.M)
    assert headings == ["Set up", "The command line", "Python", "Models", "Training on your own videos", "Read more"]
    picture = re.search(r"!\[[^]]*\]\(([^)]+\.png)\)", text())
    assert picture and (ROOT / picture.group(1)).stat().st_size < 200_000
    assert text().index(picture.group(0)) < text().index("## Set up")


def test_readme_keeps_the_two_setup_commands():
    assert [b.strip() for b in blocks("bash")[:2]] == SETUP


def test_readme_quality_is_the_model_cards():
    card = (ROOT / "codec" / "weights" / "otok-s.md").read_text()
    mean = re.search(r"\*\*mean \(7 files\)\*\* \| \*\*([\d.]+)\*\*", card).group(1)
    assert f"| {mean} dB" in text()
    assert "No TensorRT engine has been built where the tests run" in " ".join(text().split())


def test_readme_commands_parse():
    """Every `otok ...` line of the README's shell blocks is accepted by the CLI's parser."""
    parser = build_parser()
    lines = [line.split("#")[0].strip() for block in blocks("bash")[2:] for line in block.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("otok ")]
    assert len(commands) >= 8
    for argv in commands:
        parser.parse_args(argv)  # raises on an unknown command or flag


def test_readme_python_runs_as_written(tmp_path):
    """Both Python blocks, in order, in a folder holding a short `clip.mp4`, with the shipped models: in a fresh
    interpreter, as a user runs them (not in the one that ran the other tests)."""
    import json
    import subprocess
    import sys

    from otok.tools.video_io import VideoReader, VideoWriter

    with VideoReader(SAMPLE, max_frames=9) as reader:
        writer = VideoWriter(tmp_path / "clip.mp4", reader.info.width, reader.info.height, Fraction(24))
        for frame in reader:
            writer.write(frame)
        writer.close()
    python = blocks("python")
    assert len(python) == 2
    shapes = "print(json.dumps([list(tokens.shape), list(latents.shape), [f.shape[2] for f in frames]]))"
    script = "\n\n".join([*python, "import json", shapes])
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "back.mp4").is_file()
    tokens, latents, frames = json.loads(done.stdout.strip().splitlines()[-1])
    assert tokens == [1, 5, 24, 32] and latents == [1, 5, 8, 24, 32] and frames == [1, 4, 4, 4, 4]


@pytest.mark.parametrize("name", ["docs/BENCHMARKS.md", "CHANGELOG.md", "train/README.md", "bitstream/SPEC.md"])
def test_readme_points_to_files_that_exist(name):
    assert name in text() or Path(name).name in text()
    assert (ROOT / name).is_file()


def test_readme_training_recipe_runs_as_written(tmp_path, monkeypatch):
    """The "Training on your own videos" commands, run in order from the repository's layout, small: a bank
    of two short videos and a photo, the GPU job on the CPU for one step, prior, encode, decode, tokens."""
    import numpy as np

    from test_cli import write_clip

    from otok.tools.bank import make_dataset
    from otok.tools.release import make_prior
    from otok.tools.cli import main as otok_main
    from otok.train import gpu_job

    section = text()[text().index("## Training on your own videos"):text().index("## Read more")]
    (recipe,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines = [line.split("#")[0].strip() for line in recipe.replace("\\\n", " ").splitlines()]
    small = {"make_dataset.py": ["--video-size", "64x48", "--preset", "ultrafast"],
             "gpu_job.py": ["--device", "cpu", "--steps", "1", "--res", "32", "--image-res", "32", "--tokens", "256",
                            "--clip-frames", "9", "--skip-checks", "--work", str(tmp_path / "work")],
             "make_prior.py": ["--frames", "5", "--max-side", "64"]}
    for folder in ("my_videos", "my_photos"):
        (tmp_path / folder).mkdir()
    (tmp_path / "clip.mp4").symlink_to(SAMPLE)
    (tmp_path / "my_videos" / "clip.mp4").symlink_to(SAMPLE)
    write_clip(tmp_path / "my_videos" / "again.mp4", 20, 64, 48)  # two videos: one is held out
    (tmp_path / "my_photos" / "still.png").symlink_to(ROOT / "docs" / "bigbuckbunny_compare.png")
    (tmp_path / "codec").symlink_to(ROOT / "codec")
    monkeypatch.chdir(tmp_path)
    programs = {"tools/bank/make_dataset.py": make_dataset.main, "train/gpu_job.py": gpu_job.main,
                "tools/release/make_prior.py": make_prior.main}
    ran = []
    for line in filter(None, lines):
        argv = shlex.split(line)
        if argv[0] == "python":
            program, args = programs[argv[1]], argv[2:] + small[Path(argv[1]).name]
        else:
            program, args = otok_main, argv[1:] + (["--frames", "5", "--max-side", "64"] if argv[1] == "encode" else [])
        assert program(args) == 0, line
        ran.append(argv[1])
    assert ran == ["tools/bank/make_dataset.py", "train/gpu_job.py", "tools/release/make_prior.py", "encode", "decode", "tokens"]
    assert (tmp_path / "runs" / "mine" / "otok-s.prior").is_file()
    assert np.load(tmp_path / "tokens.npy").shape[0] == 2
