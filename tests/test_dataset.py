"""`otok dataset` and `otok.open_dataset`: a row's tokens are those of `otok encode` + `read_tokens`; bad
files are listed and the rest land; a rerun resumes; a killed run leaves only whole shards; the rows are
dealt out across DataLoader workers and ranks; bad command lines are one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.dataset
import pyarrow.parquet
import pytest
import torch

import otok
from codec_helpers import tiny
from otok.codec import save
from otok.tools import encode
from otok.tools.cli import main
from otok.tools.video_io import VideoReader, VideoWriter
from test_cli import write_clip

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {kind: save(tiny(kind), folder / f"tiny-{kind}.safetensors") for kind in ("vq", "kl")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Two videos, one in a subfolder and lossless (its frames can be cut exactly), and a photo."""
    folder = tmp_path_factory.mktemp("corpus")
    write_clip(folder / "a.mp4", frames=10, width=64, height=48)
    (folder / "sub").mkdir()
    write_clip(folder / "sub" / "b.mkv", frames=9, width=40, height=32, fps=Fraction(24), codec="ffv1")
    write_clip(folder / "photo.png", frames=1, width=30, height=20)
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def rows(folder: Path) -> list[dict]:
    """Every row of the shards, read with pyarrow alone, in (path, start) order."""
    table = pyarrow.dataset.dataset(folder / "data").to_table()
    return sorted(table.to_pylist(), key=lambda r: (r["path"], r["start"]))


def encoded_tokens(capsys, tmp_path: Path, src: Path, *options) -> np.ndarray:
    coded = tmp_path / "reference.otok"
    status, _, err = run(capsys, "encode", src, coded, "--quiet", *options)
    assert status == 0, err
    return otok.read_tokens(coded)


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_rows_hold_the_tokens_of_otok_encode(tmp_path, capsys, models, corpus, kind):
    options = ["--model", models[kind], "--max-side", 48, "--gop", 2, *(["--rdo", 0.05] if kind == "vq" else [])]
    status, out, err = run(capsys, "dataset", corpus, "--out", tmp_path / "shards", "--quiet", *options)
    assert status == 0, err
    got = rows(tmp_path / "shards")
    assert [r["path"] for r in got] == [str(corpus / "a.mp4"), str(corpus / "photo.png"), str(corpus / "sub" / "b.mkv")]
    sha256 = tiny(kind).weights_sha256()
    for row in got:
        tokens = encoded_tokens(capsys, tmp_path, Path(row["path"]), *options)
        values = np.asarray(row["tokens" if kind == "vq" else "latents"])
        assert row["shape"] == list(tokens.shape) and np.array_equal(values.reshape(tokens.shape), tokens)
        with VideoReader(row["path"], max_side=48) as reader:
            assert (row["width"], row["height"], row["fps"]) == (reader.info.width, reader.info.height, float(reader.info.fps))
            assert row["frames"] == sum(1 for _ in reader)
        assert (row["start"], row["model"], row["weights_sha256"], row["otok"]) == (0, "otok-tiny", sha256, None)
    schema = pyarrow.dataset.dataset(tmp_path / "shards" / "data").schema
    assert str(schema.field("tokens" if kind == "vq" else "latents").type) == ("list<element: int32>" if kind == "vq"
                                                                               else "list<element: halffloat>")


def test_clip_frames_cut_a_video_into_rows_with_their_otok_files(tmp_path, capsys, models, corpus):
    src = corpus / "sub" / "b.mkv"
    out = tmp_path / "shards"
    assert run(capsys, "dataset", src, "--out", out, "--model", models["vq"], "--clip-frames", 4, "--also-otok")[0] == 0
    got = rows(out)
    assert [(r["start"], r["frames"]) for r in got] == [(0, 4), (4, 4), (8, 1)]
    with VideoReader(src) as reader:
        frames = list(reader)
    middle = tmp_path / "middle.mkv"  # frames 4..7 of the lossless clip, as a file of their own
    writer = VideoWriter(middle, 40, 32, Fraction(24), codec="ffv1")
    for frame in frames[4:8]:
        writer.write(frame)
    writer.close()
    tokens = encoded_tokens(capsys, tmp_path, middle, "--model", models["vq"])
    assert np.array_equal(np.asarray(got[1]["tokens"]).reshape(got[1]["shape"]), tokens)
    for row in got:
        kept = otok.read_tokens(out / row["otok"])
        assert np.array_equal(kept.ravel(), row["tokens"]), row["otok"]


def test_bad_files_are_listed_and_the_rest_land(tmp_path, capsys, models, corpus, monkeypatch):
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    listed = tmp_path / "list.txt"
    listed.write_text(f"# the list's relative paths start at its folder\nbad.mp4\nmissing.mp4\n{corpus / 'a.mp4'}\n")
    encode_frames = encode.encode_frames

    def crash_on_the_photo(frames, info, dst, tok, **options):  # as a bug deep inside a library might
        if options["name"].endswith("photo.png"):
            raise RuntimeError("out of memory\n(a second line)")
        return encode_frames(frames, info, dst, tok, **options)

    monkeypatch.setattr(encode, "encode_frames", crash_on_the_photo)
    out = tmp_path / "shards"
    status, _, err = run(capsys, "dataset", listed, corpus / "sub", corpus / "photo.png", "--out", out,
                         "--model", models["vq"])
    assert status == 1
    assert err.count("\n") == 1 and "warning: files failed: 3 of 5" in err and "Traceback" not in err
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failures == [
        {"path": str(tmp_path / "bad.mp4"), "error": failures[0]["error"]},
        {"path": str(tmp_path / "missing.mp4"), "error": f"{tmp_path / 'missing.mp4'}: no such file"},
        {"path": str(corpus / "photo.png"), "error": "RuntimeError: out of memory"},
    ]
    assert "not a video or image that PyAV can read" in failures[0]["error"]
    assert [r["path"] for r in rows(out)] == [str(corpus / "a.mp4"), str(corpus / "sub" / "b.mkv")]

    status, _, err = run(capsys, "dataset", tmp_path / "bad.mp4", "--out", tmp_path / "none", "--model", models["vq"])
    assert status == 2 and err.startswith("otok: error: files failed: 1 of 1")


def shard_files(out: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "data").glob("*.parquet")}


def test_a_rerun_resumes_and_refuses_other_options(tmp_path, capsys, models, corpus):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_clip(videos / "one.mp4", frames=5, width=32, height=32)
    out = tmp_path / "shards"
    command = ["dataset", videos, "--out", out, "--model", models["vq"], "--shard-rows", 1]
    assert run(capsys, *command)[0] == 0
    before = shard_files(out)
    status, printed, _ = run(capsys, *command)
    assert status == 0 and "0 clips of 0 files in 0 new shards" in printed and shard_files(out) == before

    write_clip(videos / "two.mp4", frames=5, width=32, height=32)
    status, printed, _ = run(capsys, *command)
    assert status == 0 and "1 clip of 1 file in 1 new shard" in printed and "1 file there already" in printed
    assert {k: v for k, v in shard_files(out).items() if k in before} == before
    assert [r["path"] for r in rows(out)] == [str(videos / "one.mp4"), str(videos / "two.mp4")]

    status, _, err = run(capsys, *command, "--rdo", 0)
    assert status == 2 and err.count("\n") == 1
    assert "rdo 0.01 (now 0.0)" in err and "--overwrite to start it again" in err
    assert run(capsys, *command, "--rdo", 0, "--overwrite")[0] == 0
    assert len(rows(out)) == 2 and json.loads((out / "dataset.json").read_text())["rdo"] == 0


KILLED_WHILE_WRITING = """
import os, signal, sys
from otok.tools.dataset import build
from otok.tools.cli import main
write_table, calls = build.pq.write_table, []

def write_half_then_die(table, where, **options):
    calls.append(where)
    write_table(table, where, **options)
    if len(calls) == 2:  # the second shard: half its bytes, then a kill (no cleanup runs)
        data = open(where, "rb").read()
        open(where, "wb").write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

build.pq.write_table = write_half_then_die
main(sys.argv[1:])
"""


def test_a_killed_run_leaves_only_whole_shards_and_resumes(tmp_path, capsys, models, corpus):
    out = tmp_path / "shards"
    command = ["dataset", corpus, "--out", out, "--model", models["vq"], "--shard-rows", 1, "--quiet"]
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, *map(str, command)], capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()
    assert [p.name for p in (out / "data").iterdir() if p.name.endswith(".partial")]  # the kill came mid-write
    assert list(shard_files(out)) == ["shard-000000.parquet"]
    assert [r["path"] for r in rows(out)] == [str(corpus / "a.mp4")]  # pyarrow takes the folder as it is
    assert [m["path"] for _, m in otok.open_dataset(out)] == [str(corpus / "a.mp4")]
    first = shard_files(out)
    assert run(capsys, *command)[0] == 0
    assert [p.name for p in (out / "data").iterdir() if not p.name.endswith(".parquet")] == []
    assert {k: v for k, v in shard_files(out).items() if k in first} == first
    assert [r["path"] for r in rows(out)] == [str(corpus / p) for p in ("a.mp4", "photo.png", "sub/b.mkv")]


def test_open_dataset_deals_each_row_once_across_workers_and_ranks(tmp_path, capsys, models, corpus, monkeypatch):
    monkeypatch.setattr("otok.tools.dataset.build.ROW_GROUP_ROWS", 4)  # the unit dealt out: 6 of them here
    out = tmp_path / "shards"
    assert run(capsys, "dataset", corpus, "--out", out, "--model", models["vq"], "--clip-frames", 1,
               "--shard-rows", 4)[0] == 0
    expected = {(r["path"], r["start"]): r for r in rows(out)}
    assert len(expected) == 20
    shards = [pyarrow.parquet.ParquetFile(out / "data" / name) for name in sorted(shard_files(out))]
    assert [(s.metadata.num_rows, s.num_row_groups) for s in shards] == [(10, 3), (10, 3)]  # a's 10, then 1 + 9
    seen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        loader = torch.utils.data.DataLoader(otok.open_dataset(out), batch_size=None, num_workers=2)
        with torch.random.fork_rng(devices=[]):  # the loader draws its workers' seeds: later tests see the same RNG
            got = [(meta["path"], meta["start"], tokens) for tokens, meta in loader]
        assert got, f"rank {rank} got no rows"
        seen += got
    assert sorted((p, s) for p, s, _ in seen) == sorted(expected)
    for path, start, tokens in seen:
        row = expected[path, start]
        assert tokens.dtype == torch.int64 and list(tokens.shape) == row["shape"]
        assert tokens.flatten().tolist() == row["tokens"]


def test_the_readme_reads_shards_back_as_written(tmp_path, capsys, models, corpus, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^(otok dataset \S+ --out shards/)", readme, flags=re.M).group(1).split()
    monkeypatch.chdir(tmp_path)
    (tmp_path / command[2]).symlink_to(corpus)
    assert run(capsys, *command[1:], "--model", models["vq"])[0] == 0
    code = re.findall(r"```py\n(.*?)```", readme, flags=re.S)
    assert len(code) == 1
    exec(compile(code[0], "README.md reading shards back", "exec"), {})  # noqa: S102 - our own documentation
    assert "photo.png" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--clip-frames", "0"], "--clip-frames must be positive"),
    (["--workers", "2"], "--workers is for --engine ray"),
    (["--ray-address", "auto"], "--ray-address is for --engine ray"),
    (["--engine", "ray", "--device", "cuda"], "--device is for --engine local"),
    (["--gpus-per-worker", "-1", "--engine", "ray"], "--gpus-per-worker must be 0 or more"),
    (["--model", "kl", "--rdo", "0.1"], "--rdo applies to token models"),
    (["--engine", "spark"], "invalid choice"),
])
def test_bad_command_lines_are_one_line(tmp_path, capsys, models, corpus, argv, message):
    argv = [models["kl"] if a == "kl" else a for a in argv]
    status, _, err = run(capsys, "dataset", corpus, "--out", tmp_path / "shards", *argv)
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "shards").exists()


def test_sources_that_are_not_there_are_one_line(tmp_path, capsys, corpus):
    (tmp_path / "empty").mkdir()
    for source, message in ((tmp_path / "nothing", "nothing: no such file or folder"),
                            (tmp_path / "empty", "no videos or images in")):
        status, _, err = run(capsys, "dataset", source, "--out", tmp_path / "shards")
        assert status == 2 and err.count("\n") == 1 and message in err, err


def test_engine_ray_without_ray_says_what_to_install(tmp_path, capsys, models, corpus, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    monkeypatch.delitem(sys.modules, "otok.tools.dataset.ray_engine", raising=False)
    status, _, err = run(capsys, "dataset", corpus, "--out", tmp_path / "shards", "--model", models["vq"],
                         "--engine", "ray")
    assert status == 2 and "--engine ray needs Ray Data: pip install 'ray[data]' (in a checkout of otok: pip install -e '.[ray]')" in err
    assert not (tmp_path / "shards").exists()
