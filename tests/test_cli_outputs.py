"""What the CLI does with a user's files and terminal (issue 29 D and E): nothing a user has is replaced by
another kind of file, odd names are written and shown escaped, a failed or cut-off run leaves nothing
behind, and a job without a terminal still hears how far a run is."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from codec_helpers import tiny
from otok.codec import save
from otok.tools import cli, encode
from otok.tools.cli import main
from otok.tools.errors import MediaError
from otok.tools.video_io import VideoWriter


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save(tiny(), tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = VideoWriter(path, 48, 32, Fraction(30000, 1001))
    for t in range(6):
        writer.write(np.full((32, 48, 3), 40 * t, np.uint8))
    writer.close()
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([os.fspath(a) if isinstance(a, Path) else str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_encode_never_replaces_a_video_or_another_file(tmp_path, capsys, clip, model):
    """issue 29 E.18: `otok encode clip.mp4 other.mp4` replaced a video with .otok bytes, exit 0."""
    other = tmp_path / "other.mp4"
    other.write_bytes(clip.read_bytes())
    status, _, err = run(capsys, "encode", clip, other, "--model", model)
    assert status == 2 and "writes .otok files" in err and other.read_bytes() == clip.read_bytes()
    notes = tmp_path / "notes.otok"
    notes.write_text("my notes")
    status, _, err = run(capsys, "encode", clip, notes, "--model", model)
    assert status == 2 and "--force" in err and notes.read_text() == "my notes"
    assert run(capsys, "encode", clip, notes, "--model", model, "--force", "--quiet")[0] == 0
    assert notes.read_bytes().startswith(b"\x89OTK")
    assert run(capsys, "encode", clip, notes, "--model", model, "--quiet")[0] == 0  # an .otok file: replaced


def test_names_that_are_not_utf8_are_written_and_shown_escaped(tmp_path, capsys, clip, model):
    """issue 29 D.11: `internal error: UnicodeEncodeError`, exit 1."""
    coded, back = tmp_path / os.fsdecode(b"\xff.otok"), tmp_path / os.fsdecode(b"\xfe.mp4")
    try:
        coded.touch()
        coded.unlink()
    except (OSError, UnicodeError):
        pytest.skip("this file system takes UTF-8 names only")
    status, out, _ = run(capsys, "encode", clip, coded, "--model", model)
    assert status == 0 and "\\udcff.otok" in out
    status, out, _ = run(capsys, "decode", coded, back, "--model", model)
    assert status == 0 and back.is_file() and "\\udcfe.mp4" in out


def test_error_lines_stay_one_line(tmp_path, capsys):
    """issue 29 D.15: a newline in a name cut the line ("otok: error: missing"); a symlink loop was "no such file"."""
    status, _, err = run(capsys, "encode", tmp_path / "a\nb.mp4", tmp_path / "x.otok")
    assert status == 2 and err.count("\n") == 1 and "a\\nb.mp4: no such file" in err
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    status, _, err = run(capsys, "encode", loop, tmp_path / "x.otok")
    assert status == 2 and "symbolic links" in err


def test_a_failed_encode_leaves_no_folders_or_files(tmp_path, capsys, clip, model, monkeypatch):
    """issue 29 D.12: a failed encode left the folders it had made."""
    def broken(*args, **kwargs):
        raise MediaError("the input broke")

    monkeypatch.setattr(encode, "frames_to_video", broken)
    status, _, err = run(capsys, "encode", clip, tmp_path / "new" / "deeper" / "x.otok", "--model", model)
    assert status == 2 and "the input broke" in err
    assert list(tmp_path.iterdir()) == []


def test_a_removed_output_folder_stops_the_run(tmp_path, capsys, clip, model, monkeypatch):
    """issue 29 D.13: the run went to the end, then named its temporary file."""
    folder = tmp_path / "out"
    calls = []
    real = encode.frames_to_video

    def remove_folder(*args, **kwargs):
        calls.append(1)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
        return real(*args, **kwargs)

    monkeypatch.setattr(encode, "frames_to_video", remove_folder)
    status, _, err = run(capsys, "encode", clip, folder / "x.otok", "--model", model)
    assert status == 2 and f"the folder {folder} was removed" in err and ".partial" not in err
    assert len(calls) == 1  # stopped at the next step, not at the end


def test_partials_of_killed_runs_go_whatever_their_name(tmp_path, capsys, clip, model):
    """issue 29 D.14: a killed decode's `.NAME.PID.partial` stayed until NAME was written again."""
    stale = tmp_path / ".other.mp4.999999999.partial"
    stale.write_bytes(b"left by kill -9")
    assert run(capsys, "encode", clip, tmp_path / "x.otok", "--model", model, "--quiet")[0] == 0
    assert not stale.exists()


def test_decode_several_files_into_a_folder(tmp_path, capsys, clip, model):
    """issue 29 E.22: `otok decode a.otok b.otok out/`, as encode has; a one-frame file becomes a .png."""
    assert run(capsys, "encode", clip, tmp_path / "a.otok", "--model", model, "--quiet")[0] == 0
    assert run(capsys, "encode", clip, tmp_path / "b.otok", "--model", model, "--frames", "1", "--quiet")[0] == 0
    status, out, _ = run(capsys, "decode", tmp_path / "a.otok", tmp_path / "b.otok", tmp_path / "out", "--model", model)
    assert status == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "b.png"]
    assert "b.png: 1 frame " in out and "a.mp4: 6 frames" in out


def test_info_shows_counts_and_rates_as_people_write_them(tmp_path, capsys, clip, model):
    """issue 29 E.22: "1 segments", a frame rate printed as 30000/1001 fps."""
    assert run(capsys, "encode", clip, tmp_path / "a.otok", "--model", model, "--quiet")[0] == 0
    status, out, _ = run(capsys, "info", tmp_path / "a.otok")
    assert status == 0 and "29.97 fps" in out and "1 segment " in out and "3 steps" in out


def test_progress_lines_without_a_terminal(tmp_path, capsys, clip, model, monkeypatch):
    """issue 29 E.19: without a terminal there was no progress at all until the end."""
    monkeypatch.setattr(cli, "LOG_EVERY_S", 0.0)
    status, _, err = run(capsys, "encode", clip, tmp_path / "a.otok", "--model", model)
    assert status == 0 and "otok: encode clip.mp4: 6 of 6 frames" in err
    assert run(capsys, "encode", clip, tmp_path / "b.otok", "--model", model, "--quiet")[2] == ""


def test_hints_work_for_a_cli_user(capsys, tmp_path, clip):
    """issue 29 E.21: `--model otok-b` said "use pretrained=False", Python advice."""
    status, _, err = run(capsys, "encode", clip, tmp_path / "a.otok", "--model", "otok-b")
    assert status == 2 and "--model PATH" in err and "pretrained" not in err


def test_compare_of_a_still_writes_one_picture(tmp_path, capsys, model):
    """issue 29 E.22: two identical "worst"/"typical" pictures for a still."""
    still = tmp_path / "still.png"
    writer = VideoWriter(still, 48, 32, Fraction(1))
    writer.write(np.full((32, 48, 3), 90, np.uint8))
    writer.close()
    status, _, err = run(capsys, "eval", still, "--model", model, "--compare", tmp_path / "cmp")
    assert status == 0, err
    assert [p.name.split(".")[1] for p in (tmp_path / "cmp").iterdir()] == ["worst"]


def test_nan_latents_are_a_damaged_file_not_black_frames(tmp_path, capsys, clip):
    """issue 29 B.7: KL latents with NaN/inf decoded to black frames, exit 0, no word."""
    from otok.bitstream import OtokReader, OtokWriter

    kl = save(tiny("kl"), tmp_path / "kl.safetensors")
    coded, forged = tmp_path / "kl.otok", tmp_path / "forged.otok"
    assert run(capsys, "encode", clip, coded, "--model", kl, "--quiet")[0] == 0
    with OtokReader(coded) as reader:
        header, steps, frames = reader.header, list(reader), reader.frames
    steps[1] = steps[1].copy()
    steps[1][0, 0, 0] = np.nan
    with OtokWriter(forged, header) as writer:
        for grid in steps:
            writer.write(grid)
        writer.close(frames=frames)
    status, _, err = run(capsys, "decode", forged, tmp_path / "back.mp4", "--model", kl)
    assert status == 2 and "step 1 holds NaN or infinite latents" in err and not (tmp_path / "back.mp4").exists()
    assert run(capsys, "decode", coded, tmp_path / "back.mp4", "--model", kl, "--quiet")[0] == 0


def test_non_square_pixels_are_carried_through(tmp_path, capsys, model):
    """issue 29 C.10: the sample aspect ratio was dropped. It goes into the file (`sasp`) and back out."""
    from otok.tools.video_io import VideoReader

    anamorphic = tmp_path / "anamorphic.mp4"  # (FFmpeg's Matroska muxer keeps no aspect ratio for ffv1)
    writer = VideoWriter(anamorphic, 48, 32, Fraction(25), sample_aspect=Fraction(32, 27))
    for t in range(5):
        writer.write(np.full((32, 48, 3), 30 * t, np.uint8))
    writer.close()
    assert run(capsys, "encode", anamorphic, tmp_path / "a.otok", "--model", model, "--quiet")[0] == 0
    status, out, _ = run(capsys, "info", tmp_path / "a.otok")
    assert status == 0 and "pixels 32:27" in out
    assert run(capsys, "decode", tmp_path / "a.otok", tmp_path / "back.mp4", "--model", model, "--quiet")[0] == 0
    with VideoReader(tmp_path / "back.mp4") as reader:
        assert reader.info.sample_aspect == Fraction(32, 27)


def test_library_warnings_are_one_line(tmp_path, capsys, model):
    """A multi-page TIFF is read as its first page with a warning: one `otok: warning:` line, no source line."""
    from PIL import Image

    pages = [Image.new("RGB", (48, 32), (40 * i, 0, 0)) for i in range(3)]
    pages[0].save(tmp_path / "pages.tiff", save_all=True, append_images=pages[1:])
    status, _, err = run(capsys, "encode", tmp_path / "pages.tiff", tmp_path / "p.otok", "--model", model, "--quiet")
    assert status == 0 and err.startswith("otok: warning: ") and err.count("\n") == 1 and "3 pages" in err, err


def test_the_first_compile_is_announced_once(tmp_path, capsys, clip, model, monkeypatch):
    """issue 29 E.19: the first encode after an install stalled ~26 s without a word."""
    from otok.bitstream.coders import ctx_kernels

    assert run(capsys, "encode", clip, tmp_path / "a.otok", "--model", model, "--quiet")[0] == 0
    assert ctx_kernels.compiled_on_disk() is ctx_kernels.CACHING  # compiled (and cached, where it can be) now
    monkeypatch.setattr(ctx_kernels, "compiled_on_disk", lambda: False)
    status, _, err = run(capsys, "encode", clip, tmp_path / "b.otok", "--model", model)
    assert status == 0 and err.count("compiling the ctx coder's kernels") == 1
    assert "compiling" not in run(capsys, "encode", clip, tmp_path / "c.otok", "--model", model, "--quiet")[2]


def test_sound_that_is_not_coded_is_said(tmp_path, capsys, model):
    """issue 29 E.22: audio was dropped without a notice. (Carrying it in an ancillary chunk is left for
    later: the file format holds video.)"""
    import av

    path = tmp_path / "with_sound.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=25)
        video.width, video.height, video.pix_fmt = 48, 32, "bgr0"
        sound = container.add_stream("pcm_s16le", rate=8000)
        sound.layout = "mono"
        for t in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 48, 3), 40 * t, np.uint8), format="rgb24")
            frame.pts = t
            container.mux(video.encode(frame))
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        samples.sample_rate, samples.pts = 8000, 0
        container.mux(sound.encode(samples))
        container.mux(video.encode())
        container.mux(sound.encode())
    status, _, err = run(capsys, "encode", path, tmp_path / "s.otok", "--model", model, "--quiet")
    assert status == 0 and err.startswith("otok: warning:") and "sound is not coded" in err


def test_tiles_give_the_same_file_and_fit_where_whole_frames_do_not(tmp_path, capsys, model, monkeypatch):
    """issue 31 at the CLI: `--tile PX` codes the same bytes as whole frames; the memory check refuses only
    what cannot fit even in the smallest tiles (auto), or at the tile asked for (`--tile 0`: untiled)."""
    from otok.codec.tiling import step_bytes, untiled_bytes
    from otok.tools import limits

    src = tmp_path / "big.mkv"
    writer = VideoWriter(src, 320, 256, Fraction(25), codec="ffv1")
    yy, xx = np.mgrid[0:256, 0:320]
    for t in range(5):
        writer.write(np.stack([(xx + 5 * t) % 256, (yy * 2) % 256, (xx + yy) % 256], -1).astype(np.uint8))
    writer.close()
    coded = {}
    for tile in ("0", "64", "128"):
        assert run(capsys, "encode", src, tmp_path / f"t{tile}.otok", "--model", model, "--tile", tile, "-q")[0] == 0
        coded[tile] = (tmp_path / f"t{tile}.otok").read_bytes()
    assert coded["0"] == coded["64"] == coded["128"]
    config = tiny().config
    between = (step_bytes(config, 256, 320, 1) + untiled_bytes(config, 256, 320)) // 2
    assert step_bytes(config, 256, 320, 1) < between < untiled_bytes(config, 256, 320)
    monkeypatch.setattr(limits, "available_memory", lambda: limits.BASE_BYTES + between)
    assert run(capsys, "encode", src, tmp_path / "auto.otok", "--model", model, "-q")[0] == 0
    status, _, err = run(capsys, "encode", src, tmp_path / "whole.otok", "--model", model, "--tile", "0")
    assert status == 2 and "untiled" in err and "--max-side" in err
    status, _, err = run(capsys, "encode", src, tmp_path / "neg.otok", "--model", model, "--tile", "-1")
    assert status == 2 and "--tile" in err


def test_a_full_disk_is_a_full_disk_not_the_codec(tmp_path):
    """issue 29 D.12: a full disk during decode was blamed on the video codec ("choose another codec")."""
    import errno

    import av

    writer = VideoWriter(tmp_path / "x.mp4", 48, 32, Fraction(25))

    class FullDisk:
        def mux(self, packet):
            av.error.err_check(-errno.ENOSPC)

        def close(self):
            pass

    real, writer._container = writer._container, FullDisk()
    with pytest.raises(OSError) as caught:
        for _ in range(40):  # the encoder hands out its first packet after a few frames
            writer.write(np.zeros((32, 48, 3), np.uint8))
        writer.close()
    assert caught.value.errno == errno.ENOSPC and not isinstance(caught.value, MediaError)
    real.close()


def test_a_forged_aspect_ratio_is_dropped_with_a_warning(tmp_path, capsys, clip, model):
    """A `sasp` chunk of 4294967295:1 (found in this session's review) was an internal OverflowError."""
    from otok.bitstream import OtokReader, OtokWriter
    from otok.bitstream import container as ct

    coded, forged = tmp_path / "c.otok", tmp_path / "forged.otok"
    assert run(capsys, "encode", clip, coded, "--model", model, "--coder", "zstd", "-q")[0] == 0
    with OtokReader(coded) as reader:
        header, steps, frames = reader.header, list(reader), reader.frames
    with OtokWriter(forged, header) as writer:
        writer.write_ancillary(ct.SASP, ct.SASP_PAYLOAD.pack(2**32 - 1, 1))
        for grid in steps:
            writer.write(grid)
        writer.close(frames=frames)
    status, _, err = run(capsys, "decode", forged, tmp_path / "back.mp4", "--model", model, "-q")
    assert status == 0 and "cannot be written; the output has square pixels" in err and err.count("\n") == 1
