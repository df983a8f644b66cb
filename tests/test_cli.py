"""The `otok` CLI, in-process: round trips keep frame count, size and rate; every bad input gives one line,
a non-zero exit, no traceback and no output file."""

from __future__ import annotations

import errno
import importlib.util
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from codec_helpers import tiny
from otok.bitstream import CtxParams, OtokReader, read_tokens
from otok.codec import save
from otok.codec.priors import earlier_name
from otok.tools import encode
from otok.tools.decode import decode_file
from otok.tools.encode import make_header
from otok.tools.info import file_info
from otok.tools.models import load_model, model_prior, model_priors
from otok.tools.options import DEFAULTS
from otok.tools.video_io import frames_to_video, video_to_frames
from otok.tools.cli import main
from otok.tools.evaluation.metrics import psnr
from otok.tools.video_io import VideoReader, VideoWriter

SAMPLE = Path(__file__).parents[1] / "tools" / "samples" / "bigbuckbunny_2s.mp4"


def write_clip(path: Path, frames: int, width: int, height: int, fps=Fraction(30000, 1001), codec="h264"):
    """A moving colour gradient, so consecutive frames differ but correlate."""
    writer = VideoWriter(path, width, height, fps, codec=codec)
    yy, xx = np.mgrid[0:height, 0:width]
    for t in range(frames):
        r = (xx * 255 // max(width - 1, 1) + 7 * t) % 256
        g = (yy * 255 // max(height - 1, 1) + 3 * t) % 256
        b = ((xx + yy + 5 * t) * 2) % 256
        writer.write(np.stack([r, g, b], -1).astype(np.uint8))
    writer.close()
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save(tiny(), tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "odd.mp4", frames=10, width=70, height=46)


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_colours_come_back_in_their_channels(tmp_path, capsys):
    """Red, green and blue bands through encode and decode with the shipped model, lossless on both sides of
    it: each band comes back in its own channel (a red/blue swap anywhere between the files and the model,
    which a random model's output cannot show, fails here)."""
    source, coded, back = tmp_path / "bands.mkv", tmp_path / "bands.otok", tmp_path / "back.mkv"
    writer = VideoWriter(source, 96, 64, Fraction(25), codec="ffv1")
    frame = np.zeros((64, 96, 3), np.uint8)
    for channel in range(3):
        frame[:, 32 * channel: 32 * (channel + 1), channel] = 230
    for _ in range(5):
        writer.write(frame)
    writer.close()
    assert run(capsys, "encode", source, coded, "--quiet")[0] == 0
    assert run(capsys, "decode", coded, back, "--codec", "ffv1", "--quiet")[0] == 0
    decoded = np.stack(list(VideoReader(back))).astype(float)
    for channel in range(3):
        band = decoded[:, 8:56, 32 * channel + 6: 32 * (channel + 1) - 6]  # inside the band, away from its edges
        means = band.reshape(-1, 3).mean(0)
        assert means[channel] > 150 and all(means[other] < 90 for other in range(3) if other != channel), (channel, means)


def test_round_trip_of_a_real_clip(tmp_path, capsys, model_path):
    coded, back = tmp_path / "bbb.otok", tmp_path / "bbb.mp4"
    status, out, err = run(capsys, "encode", SAMPLE, coded, "--model", model_path, "--quiet")
    assert status == 0, err
    status, out, err = run(capsys, "decode", coded, back, "--model", model_path)
    assert status == 0, err
    assert "49 frames 256x144" in out
    source, decoded = VideoReader(SAMPLE), VideoReader(back)
    assert (decoded.info.width, decoded.info.height, decoded.info.fps) == (256, 144, Fraction(25))
    assert sum(1 for _ in decoded) == sum(1 for _ in source) == 49
    assert files_in(tmp_path) == {"bbb.otok", "bbb.mp4"}


@pytest.mark.parametrize("coder", ["ctx", "zstd", "raw"])
def test_odd_size_and_ntsc_rate_survive(tmp_path, capsys, model_path, clip, coder):
    coded, back = tmp_path / "c.otok", tmp_path / "c.mkv"
    assert run(capsys, "encode", clip, coded, "--model", model_path, "--coder", coder, "--gop", "2")[0] == 0
    assert run(capsys, "decode", coded, back, "--model", model_path, "--codec", "ffv1")[0] == 0
    reader = VideoReader(back)
    assert (reader.info.width, reader.info.height, reader.info.fps) == (70, 46, Fraction(30000, 1001))
    assert sum(1 for _ in reader) == 10
    info = file_info(coded)
    assert (info["coder"], info["gop"], info["segments"], info["steps"]) == (coder, 2, 2, 4)  # 10 frames = 2 segments of 1 + 4


def test_image_in_image_out(tmp_path, capsys, model_path):
    png = tmp_path / "still.png"
    writer = VideoWriter(png, 40, 30, Fraction(1))
    writer.write(np.full((30, 40, 3), 90, np.uint8))
    writer.close()
    assert run(capsys, "encode", png, tmp_path / "s.otok", "--model", model_path)[0] == 0
    assert file_info(tmp_path / "s.otok")["frames"] == 1
    assert run(capsys, "decode", tmp_path / "s.otok", tmp_path / "back.png", "--model", model_path)[0] == 0
    frames = list(VideoReader(tmp_path / "back.png"))
    assert len(frames) == 1 and frames[0].shape == (30, 40, 3)


def test_info_json_has_the_promised_fields(tmp_path, capsys, model_path, clip):
    coded = tmp_path / "c.otok"
    run(capsys, "encode", clip, coded, "--model", model_path, "--frames", "9")
    status, out, _ = run(capsys, "info", coded, "--json")
    info = json.loads(out)
    assert status == 0
    for key in ("model", "weights_sha256", "codebook_size", "width", "height", "frames", "fps", "steps",
                "segments", "coder", "bytes", "bits_per_token", "bpp", "duration_s"):
        assert key in info, key
    assert info["frames"] == 9 and info["steps"] == 3 and info["bytes"] == coded.stat().st_size
    assert info["weights_sha256"] == tiny().weights_sha256()
    assert info["grid"] == [8, 12]  # 46x70 pads to 64x96 (a multiple of patch 8 x window 4)
    assert info["bits_per_token"] == pytest.approx(8 * info["bytes"] / (3 * 8 * 12))
    with OtokReader(coded) as reader:  # (the prior is needed to decode, not to measure)
        assert 0 < info["coded_bytes"] == reader.coded_bytes < info["bytes"]
    assert info["coded_bits_per_token"] == pytest.approx(8 * info["coded_bytes"] / (3 * 8 * 12))
    assert (info["coder"], info["format_version"], info["literal_model"]) == ("ctx", "1.2", 1)
    assert info["bpp"] == pytest.approx(8 * info["bytes"] / (9 * 70 * 46))
    status, out, _ = run(capsys, "info", coded)
    assert status == 0 and "70x46" in out and "9 frames" in out


def test_eval_reports_quality_and_rate(tmp_path, capsys, model_path, clip):
    status, out, err = run(capsys, "eval", clip, "--model", model_path, "--json")
    assert status == 0, err
    r = json.loads(out)
    for key in ("psnr", "ssim", "bpp", "bits_per_token", "coded_bits_per_token", "encode_fps", "decode_fps",
                "frames", "width", "height"):
        assert key in r, key
    assert 0 < r["coded_bits_per_token"] < r["bits_per_token"]
    assert (r["frames"], r["width"], r["height"]) == (10, 70, 46)
    assert len(r["psnr_per_frame"]) == 10 and r["psnr"] == pytest.approx(np.mean(r["psnr_per_frame"]))
    assert 0 < r["psnr"] < 60 and -1 <= r["ssim"] <= 1
    coded = tmp_path / "raw.otok"
    assert run(capsys, "encode", clip, coded, "--model", model_path, "--coder", "raw")[0] == 0
    assert r["codes_used"] == len(np.unique(read_tokens(coded)))


def test_eval_reports_what_a_person_sees_and_writes_comparisons(tmp_path, capsys, model_path, clip):
    """The measures of docs/METRICS.md, finite on a 10-frame clip (3 tubes), and the two --compare PNGs."""
    status, out, err = run(capsys, "eval", clip, "--model", model_path, "--json", "--compare", tmp_path / "cmp")
    assert status == 0, err
    r = json.loads(out)
    for key in ("seam_ratio", "judder_ratio", "segment_pulse_db", "psnr_image_steps", "psnr_video_steps",
                "psnr_bicubic8", "psnr_min"):
        assert np.isfinite(r[key]), key
    for key, channels in (("channel_bias", "rgb"), ("channel_psnr", "rgb"), ("chroma_psnr", ("cb", "cr"))):
        assert set(r[key]) == set(channels) and all(np.isfinite(v) for v in r[key].values()), key
    assert r["psnr_min"] == pytest.approx(min(r["psnr_per_frame"]))
    worst, typical = int(np.argmin(r["psnr_per_frame"])), int(np.argsort(r["psnr_per_frame"], kind="stable")[4])
    assert [Path(p).name for p in r["compare"]] == [
        f"odd.worst.frame{worst}.{r['psnr_per_frame'][worst]:.2f}dB.png",
        f"odd.typical.frame{typical}.{r['psnr_per_frame'][typical]:.2f}dB.png"]
    source = list(VideoReader(clip))
    for path, frame in zip(r["compare"], (worst, typical)):
        with VideoReader(path) as reader:
            image = next(iter(reader))
        assert image.shape == (46, 3 * 70, 3) and (image[:, :70] == source[frame]).all()  # source | decoded | error
        error = np.abs(image[:, 70:140].astype(int) - source[frame])
        assert psnr(source[frame], image[:, 70:140]) == pytest.approx(r["psnr_per_frame"][frame])
        assert (image[:, 140:] == np.minimum(4 * error, 255)).all()
    status, out, _ = run(capsys, "eval", clip, "--model", model_path)  # people get them on one more line
    assert status == 0 and "seams " in out and "judder " in out and "bicubic x8 " in out
    status, _, err = run(capsys, "eval", clip, "--model", model_path, "--compare", clip)
    assert status == 2 and "not a folder" in err


def test_several_inputs_into_a_folder(tmp_path, capsys, model_path, clip):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert run(capsys, "encode", clip, SAMPLE, out_dir, "--model", model_path, "--frames", "5")[0] == 0
    assert files_in(out_dir) == {"odd.otok", "bigbuckbunny_2s.otok"}


def test_torchrun_ranks_share_inputs(tmp_path, capsys, model_path, clip, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert run(capsys, "encode", clip, SAMPLE, out_dir, "--model", model_path, "--frames", "5")[0] == 0
    assert files_in(out_dir) == {"bigbuckbunny_2s.otok"}


# ----- bad input: one line, non-zero, no traceback, no output -------------------------------------------
def assert_clean_failure(status, err, folder, expected_status=2, message=""):
    assert status == expected_status
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("otok: error: "), err
    assert message in lines[0]
    assert "Traceback" not in err
    leftovers = [n for n in files_in(folder) if n.endswith(".partial") or n.startswith("out")]
    assert not leftovers, leftovers


def test_missing_input(tmp_path, capsys, model_path):
    status, _, err = run(capsys, "encode", tmp_path / "none.mp4", tmp_path / "out.otok", "--model", model_path)
    assert_clean_failure(status, err, tmp_path, message="no such file")


def test_not_a_video(tmp_path, capsys, model_path):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("hello, not a video\n" * 50)
    status, _, err = run(capsys, "encode", bogus, tmp_path / "out.otok", "--model", model_path)
    assert_clean_failure(status, err, tmp_path, message="notes.mp4")


def test_not_an_otok(tmp_path, capsys, model_path, clip):
    status, _, err = run(capsys, "decode", clip, tmp_path / "out.mp4", "--model", model_path)
    assert_clean_failure(status, err, tmp_path, message="not an .otok file")
    status, _, err = run(capsys, "info", clip)
    assert_clean_failure(status, err, tmp_path, message="not an .otok file")


def test_zero_frame_video(tmp_path, capsys, model_path):
    empty = write_clip(tmp_path / "empty.mp4", frames=0, width=32, height=32)
    status, _, err = run(capsys, "encode", empty, tmp_path / "out.otok", "--model", model_path)
    assert status == 2 and "Traceback" not in err
    assert not (tmp_path / "out.otok").exists()
    assert [n for n in files_in(tmp_path) if "partial" in n] == []


def test_unknown_model(tmp_path, capsys, clip):
    status, _, err = run(capsys, "encode", clip, tmp_path / "out.otok", "--model", "otok-nope")
    assert_clean_failure(status, err, tmp_path, message="unknown model 'otok-nope'")


def test_weights_that_do_not_match_the_file(tmp_path, capsys, model_path, clip):
    coded = tmp_path / "c.otok"
    run(capsys, "encode", clip, coded, "--model", model_path)
    other = save(tiny(seed=5), tmp_path / "other.safetensors")
    status, _, err = run(capsys, "decode", coded, tmp_path / "out.mp4", "--model", other)
    assert_clean_failure(status, err, tmp_path, message="pass the weights file that made it, --model PATH")


def test_decode_own_weights_without_model_says_pass_model(tmp_path, capsys, model_path, clip):
    """A file made with weights that are not installed names the flag that fixes it (not a Python
    argument such as pretrained=False)."""
    coded = tmp_path / "c.otok"
    run(capsys, "encode", clip, coded, "--model", model_path)
    status, _, err = run(capsys, "decode", coded, tmp_path / "out.mp4")
    assert_clean_failure(status, err, tmp_path, message="--model PATH")
    assert "pretrained" not in err and "model=" not in err


def test_missing_output_folders_are_made(tmp_path, capsys, model_path, clip):
    out = tmp_path / "nowhere" / "deeper" / "out.otok"
    assert run(capsys, "encode", clip, out, "--model", model_path)[0] == 0 and out.is_file()
    back = tmp_path / "decoded" / "back.mp4"
    assert run(capsys, "decode", out, back, "--model", model_path)[0] == 0 and back.is_file()
    several = tmp_path / "many"
    assert run(capsys, "encode", clip, clip, several, "--model", model_path)[0] == 0
    assert (several / f"{Path(clip).stem}.otok").is_file()
    folder = tmp_path / "slash"
    assert run(capsys, "encode", clip, f"{folder}/", "--model", model_path)[0] == 0
    assert (folder / f"{Path(clip).stem}.otok").is_file()


def test_output_is_the_input(tmp_path, capsys, model_path, clip):
    coded = tmp_path / "c.otok"
    run(capsys, "encode", clip, coded, "--model", model_path)
    before = coded.read_bytes()
    status, _, err = run(capsys, "decode", coded, coded, "--model", model_path)
    assert status == 2 and "is the input file" in err
    assert coded.read_bytes() == before


def test_full_disk(tmp_path, capsys, model_path, clip, monkeypatch):
    from otok.bitstream import writer as writer_module

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_module.OtokWriter, "_put", no_space)
    status, _, err = run(capsys, "encode", clip, tmp_path / "out.otok", "--model", model_path)
    assert_clean_failure(status, err, tmp_path, expected_status=1, message="no space left")


def test_ctrl_c(tmp_path, capsys, model_path, clip, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(encode, "frames_to_video", interrupt)
    status, _, err = run(capsys, "encode", clip, tmp_path / "out.otok", "--model", model_path)
    assert_clean_failure(status, err, tmp_path, expected_status=130, message="interrupted")


def test_image_output_for_a_video(tmp_path, capsys, model_path, clip):
    coded = tmp_path / "c.otok"
    run(capsys, "encode", clip, coded, "--model", model_path)
    status, _, err = run(capsys, "decode", coded, tmp_path / "out.png", "--model", model_path)
    assert_clean_failure(status, err, tmp_path, message="an image output holds one")


def test_bad_flags(tmp_path, capsys, model_path, clip):
    status, _, err = run(capsys, "encode", clip, tmp_path / "out.otok", "--coder", "lzma")
    assert_clean_failure(status, err, tmp_path, message="invalid choice")
    status, _, err = run(capsys, "encode", clip, tmp_path / "out.otok", "--model", model_path, "--gop", "0")
    assert_clean_failure(status, err, tmp_path, message="--gop must be positive")
    status, _, err = run(capsys, "decode", tmp_path / "x.otok", tmp_path / "out.mp4", "--backend", "onnx")
    assert_clean_failure(status, err, tmp_path, message="--engine-dir")


def test_truncated_file_decodes_its_intact_prefix(tmp_path, capsys, model_path):
    coded = tmp_path / "c.otok"
    run(capsys, "encode", SAMPLE, coded, "--model", model_path, "--frames", "34")  # 2 segments of 17
    data = coded.read_bytes()
    cut = tmp_path / "cut.otok"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    status, out, err = run(capsys, "decode", cut, tmp_path / "cut.mp4", "--model", model_path)
    assert status == 0
    assert err.startswith("otok: warning: ")
    frames = sum(1 for _ in VideoReader(tmp_path / "cut.mp4"))
    assert 1 <= frames < 34


def test_prior_that_ships_beside_the_model_is_referenced(tmp_path, capsys, clip):
    from otok.bitstream import Prior, read_header

    model = save(tiny(), tmp_path / "m.safetensors")
    tokens = tiny().encode(frames_to_video(list(VideoReader(clip)), "cpu"))[0].numpy()
    prior = Prior.from_tokens([tokens[:5], tokens[5:]], 256)
    prior.save(tmp_path / "m.prior")
    coded = tmp_path / "c.otok"
    assert run(capsys, "encode", clip, coded, "--model", model)[0] == 0
    assert read_header(coded).coder_params.prior_sha256 == prior.sha256
    assert run(capsys, "info", coded)[0] == 0  # no model needed to describe a file
    assert run(capsys, "decode", coded, tmp_path / "back.mp4", "--model", model)[0] == 0
    (tmp_path / "m.prior").unlink()
    status, _, err = run(capsys, "decode", coded, tmp_path / "out.mp4", "--model", model)
    assert_clean_failure(status, err, tmp_path, message="prior")


def test_export_onnx_and_run_the_onnx_backend(tmp_path, capsys, model_path, clip):
    pytest.importorskip("onnxruntime")
    from otok.bitstream import read_tokens

    engines = tmp_path / "engines"
    status, out, err = run(capsys, "export", "onnx", "--model", model_path, "--out", engines)
    assert status == 0, err
    assert (engines / "manifest.json").is_file()
    by_torch, by_onnx = tmp_path / "t.otok", tmp_path / "o.otok"
    assert run(capsys, "encode", clip, by_torch, "--model", model_path)[0] == 0
    status, _, err = run(capsys, "encode", clip, by_onnx, "--backend", "onnx", "--engine-dir", engines)
    assert status == 0, err
    same = (read_tokens(by_torch) == read_tokens(by_onnx)).mean()
    assert same >= 0.999
    status, _, err = run(capsys, "decode", by_torch, tmp_path / "back.mp4", "--backend", "onnx", "--engine-dir", engines)
    assert status == 0, err
    assert sum(1 for _ in VideoReader(tmp_path / "back.mp4")) == 10
    # An engine from other weights is refused, naming both.
    other = save(tiny(seed=9), tmp_path / "other.safetensors")
    status, _, err = run(capsys, "encode", clip, tmp_path / "x.otok", "--model", other, "--backend", "onnx",
                         "--engine-dir", engines)
    assert status == 2 and "re-export" in err
    # An engine folder exported before rdo (no code table): the default --rdo gives one line, --rdo 0 works.
    (engines / "codes.safetensors").unlink()
    status, _, err = run(capsys, "encode", clip, tmp_path / "out.otok", "--backend", "onnx", "--engine-dir", engines)
    assert_clean_failure(status, err, tmp_path, message="or encode with --rdo 0")
    status, _, err = run(capsys, "encode", clip, tmp_path / "r0.otok", "--backend", "onnx", "--engine-dir", engines,
                         "--rdo", "0")
    assert status == 0, err


def test_export_trt_without_tensorrt_says_how_to_install(tmp_path, capsys):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed")
    except ImportError:
        pass
    status, _, err = run(capsys, "export", "trt", "--onnx-dir", tmp_path, "--out", tmp_path / "trt", "--fp16")
    assert status == 2 and "pip install" in err and "Traceback" not in err


def test_ten_bit_input_is_coded_as_8_bit_rgb(tmp_path, capsys, model_path):
    import av

    src = tmp_path / "tenbit.mkv"
    with av.open(str(src), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = 48, 40, "yuv420p10le"
        for i in range(6):
            rgb = np.full((40, 48, 3), 40 * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p10le")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert run(capsys, "encode", src, tmp_path / "t.otok", "--model", model_path)[0] == 0
    info = file_info(tmp_path / "t.otok")
    assert (info["frames"], info["width"], info["height"], info["fps"]) == (6, 48, 40, "24/1")


def test_encode_tunes_ctx_for_model_tokens(tmp_path, capsys, model_path, clip):
    """`otok encode` writes ctx with the literal increment measured best on real tokens and grouped
    literals (format 1.2); the file reads back."""
    from otok.bitstream import read_header

    coded = tmp_path / "c.otok"
    assert run(capsys, "encode", clip, coded, "--model", model_path, "--coder", "ctx")[0] == 0
    params = read_header(coded).coder_params
    assert params.literal_increment == 4 and params.literal_model == 1
    assert params == CtxParams(prior_sha256=params.prior_sha256)  # the coder's defaults: one set for every writer
    assert coded.read_bytes()[8:12] == bytes([1, 0, 2, 0])
    assert run(capsys, "decode", coded, tmp_path / "back.mp4", "--model", model_path)[0] == 0


def test_files_that_reference_an_earlier_prior_still_decode(tmp_path, capsys, clip):
    """A model keeps the prior tables of its earlier releases beside its current one (NAME.<hash>.prior):
    new files reference the current table, older files still decode, and `otok export onnx` carries all."""
    from otok.bitstream import CtxParams, OtokWriter, Prior, read_header

    model = save(tiny(), tmp_path / "m.safetensors")
    tokens = tiny().encode(frames_to_video(list(VideoReader(clip)), "cpu"))[0].numpy()
    old = Prior(256, Prior.from_tokens([tokens[:5]], 256).mode_counts, Prior.uniform(256).part_counts)
    new = Prior.from_tokens([tokens[:5], tokens[5:]], 256)
    old.save(tmp_path / earlier_name("m", old.sha256.hex()))
    new.save(tmp_path / "m.prior")
    tok = load_model(model)
    assert model_priors(tok) == [new, old] and model_prior(tok) == new
    (tmp_path / "m.0123456789abcdef.prior").write_bytes(b"not a prior")  # a damaged earlier table: left out
    with pytest.warns(UserWarning, match="m.0123456789abcdef.prior"):
        assert model_priors(tok) == [new, old]
    (tmp_path / "m.0123456789abcdef.prior").unlink()
    coded = tmp_path / "c.otok"
    assert run(capsys, "encode", clip, coded, "--model", model)[0] == 0
    assert read_header(coded).coder_params.prior_sha256 == new.sha256
    older = tmp_path / "older.otok"  # as an earlier release wrote it: format 1.1, the old table by hash
    header = read_header(coded).with_params(CtxParams(old.sha256, literal_increment=4, literal_model=0))
    with OtokWriter(older, header, prior=old, embed_prior=False) as writer:
        writer.write(read_tokens(coded, prior=new))
    assert older.read_bytes()[8:12] == bytes([1, 0, 1, 0])
    for path in (coded, older):
        assert run(capsys, "decode", path, tmp_path / f"{path.stem}.mp4", "--model", model)[0] == 0
    if importlib.util.find_spec("onnxruntime") is not None:
        engines = tmp_path / "engines"
        assert run(capsys, "export", "onnx", "--model", model, "--out", engines)[0] == 0
        assert {p.name for p in engines.glob("*.prior")} == {"model.prior", earlier_name("model", old.sha256.hex())}
        status, _, err = run(capsys, "decode", older, tmp_path / "e.mp4", "--backend", "onnx", "--engine-dir", engines)
        assert status == 0, err


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
def test_engine_folders_from_the_api_and_the_cli_code_the_same_bytes(tmp_path, capsys, clip):
    """`otok.export.export_onnx(tok, DIR)` and `otok export onnx` write the same prior tables beside the
    graphs (`otok.codec.priors`), so an engine from either encodes the bytes the PyTorch backend writes."""
    from otok.export import export_onnx

    model = save(tiny(), tmp_path / "m.safetensors")
    tokens = tiny().encode(frames_to_video(list(VideoReader(clip)), "cpu"))[0].numpy()
    from otok.bitstream import Prior

    Prior.from_tokens([tokens], 256).save(tmp_path / "m.prior")
    export_onnx(load_model(model), tmp_path / "api")
    assert run(capsys, "export", "onnx", "--model", model, "--out", tmp_path / "cli")[0] == 0
    names = sorted(p.name for p in (tmp_path / "api").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "cli").iterdir()) and "model.prior" in names
    coded = {}
    for name, flags in (("torch", ()), ("api", ("--backend", "onnx", "--engine-dir", tmp_path / "api")),
                        ("cli", ("--backend", "onnx", "--engine-dir", tmp_path / "cli"))):
        assert run(capsys, "encode", clip, tmp_path / f"{name}.otok", "--model", model, *flags)[0] == 0
        coded[name] = (tmp_path / f"{name}.otok").read_bytes()
    assert coded["api"] == coded["cli"] == coded["torch"]


def test_rdo_flag_chooses_the_tokens_the_model_chooses(tmp_path, capsys, model_path, clip):
    """`otok encode` codes the tokens of `Tokenizer.encode(video, rdo=...)`: DEFAULT_RDO unless told, the
    nearest codes with --rdo 0; a bad tolerance, or one for a KL model, is one line and exit 2."""
    from otok.codec import load

    tok = load(model_path)
    with VideoReader(clip) as reader:
        video = frames_to_video(list(reader), tok.device)
    for flag, tau in ((), DEFAULTS.rdo), (("--rdo", "0"), 0.0), (("--rdo", "0.4"), 0.4):
        coded = tmp_path / f"rdo{tau}.otok"
        assert run(capsys, "encode", clip, coded, "--model", model_path, *flag)[0] == 0
        np.testing.assert_array_equal(read_tokens(coded), tok.encode(video, rdo=tau)[0].numpy())
    assert (tok.encode(video, rdo=0.4) != tok.encode(video)).any()  # the check above can tell them apart
    status, out, err = run(capsys, "eval", clip, "--model", model_path, "--rdo", "0.4", "--json")
    assert status == 0, err
    assert json.loads(out)["rdo"] == 0.4
    for bad in ("-1", "nan"):
        status, _, err = run(capsys, "encode", clip, tmp_path / "out.otok", "--model", model_path, "--rdo", bad)
        assert_clean_failure(status, err, tmp_path, message="--rdo must be a number >= 0")
    kl = save(tiny("kl"), tmp_path / "kl.safetensors")
    status, _, err = run(capsys, "encode", clip, tmp_path / "out.otok", "--model", kl, "--rdo", "0.1")
    assert_clean_failure(status, err, tmp_path, message="continuous latents")
    assert run(capsys, "encode", clip, tmp_path / "kl.otok", "--model", kl)[0] == 0  # the default: none for KL


def test_info_shows_the_encoder_settings(tmp_path, capsys, model_path, clip):
    """`otok encode` records its settings in an `encd` chunk (SPEC §2.3); `otok info` shows them, and a file
    without one (or with one that is not JSON) still has its info."""
    from otok.bitstream import OtokWriter, read_header
    from otok.bitstream.container import ENCD
    from otok.codec import load

    coded = tmp_path / "c.otok"
    assert run(capsys, "encode", clip, coded, "--model", model_path, "--rdo", "0.02", "--quiet")[0] == 0
    status, out, _ = run(capsys, "info", coded)
    assert status == 0 and "encoder: --rdo 0.02" in out
    assert file_info(coded)["encoder_settings"] == {"rdo": 0.02}
    prior = model_prior(load(model_path))
    header, tokens = read_header(coded), read_tokens(coded, prior=prior)
    hostile = {"nested.otok": b"[" * 100_000 + b"]" * 100_000, "nan.otok": b'{"rdo": NaN}'}  # not JSON objects
    for name, payload in (("none.otok", None), ("garbage.otok", b"\xff not json"), *hostile.items()):
        with OtokWriter(tmp_path / name, header, prior=prior) as writer:
            if payload is not None:
                writer.write_ancillary(ENCD, payload)
            writer.write(tokens)
        status, out, err = run(capsys, "info", tmp_path / name)
        assert status == 0, err
        assert "encoder:" not in out and file_info(tmp_path / name)["encoder_settings"] is None
    assert json.loads(run(capsys, "info", tmp_path / "nan.otok", "--json")[1])["encoder_settings"] is None


def test_info_escapes_what_the_file_holds(tmp_path, capsys, model_path, clip):
    """A model name and encoder settings with terminal control characters are printed escaped, on their line."""
    import dataclasses

    from otok.bitstream import OtokWriter, read_header
    from otok.bitstream.container import ENCD
    from otok.codec import load

    coded = tmp_path / "c.otok"
    assert run(capsys, "encode", clip, coded, "--model", model_path, "--quiet")[0] == 0
    prior = model_prior(load(model_path))
    header = dataclasses.replace(read_header(coded), model="x\x1b[2J\a\ry")
    with OtokWriter(tmp_path / "evil.otok", header, prior=prior) as writer:
        writer.write_ancillary(ENCD, json.dumps({"rdo": "\x1b]0;owned\x07\n"}).encode())
        writer.write(read_tokens(coded, prior=prior))
    status, out, err = run(capsys, "info", tmp_path / "evil.otok")
    assert status == 0, err
    assert not any(c in out for c in "\x1b\a\r") and len(out.splitlines()) == 5, repr(out)
    assert "model: x\\x1b[2J\\x07\\ry" in out and "--rdo \\x1b]0;owned\\x07\\n" in out


def test_info_of_a_file_with_a_damaged_step_chunk(tmp_path, capsys, model_path, clip):
    """A STEP chunk whose length field is damaged: `otok info` still reports the file (from its index and
    trailer), without the coded bytes it cannot measure."""
    import struct

    from otok.bitstream import OtokReader

    coded = tmp_path / "c.otok"
    assert run(capsys, "encode", clip, coded, "--model", model_path, "--quiet")[0] == 0
    data = bytearray(coded.read_bytes())
    first = OtokReader(coded).index[0].offset
    data[first:first + 4] = struct.pack("<I", 1 << 29)  # more than the file holds
    damaged = tmp_path / "damaged.otok"
    damaged.write_bytes(bytes(data))
    status, out, err = run(capsys, "info", damaged)
    assert status == 0, err
    assert "coded" not in out and "bits/token" in out
    info = file_info(damaged)
    assert info["coded_bytes"] is None and info["coded_bits_per_token"] is None


def test_image_encode_reports_bits_per_pixel(tmp_path, capsys, model_path):
    png = tmp_path / "still.png"
    writer = VideoWriter(png, 40, 30, Fraction(1))
    writer.write(np.full((30, 40, 3), 128, np.uint8))
    writer.close()
    status, out, _ = run(capsys, "encode", png, tmp_path / "s.otok", "--model", model_path)
    assert status == 0 and "1 frame 40x30" in out and "bits/pixel" in out
    assert "frames" not in out and "kbit/s" not in out
    status, out, _ = run(capsys, "info", tmp_path / "s.otok")
    assert status == 0 and "1 frame (an image)" in out and "fps" not in out


def test_gif_frame_rate_from_its_delays(tmp_path, capsys, model_path):
    """A GIF's frames carry their own delays (hundredths of a second); FFmpeg's average rate for one is
    not its rate (a 43.9 fps GIF was read as 50)."""
    import av

    gif = tmp_path / "anim.gif"
    out = av.open(str(gif), "w", format="gif")
    stream = out.add_stream("gif", rate=100)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb8"
    pts = 0
    for i, delay in enumerate([2, 3] * 10):
        frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 12 * i, np.uint8), format="rgb24").reformat(format="rgb8")
        frame.pts, frame.time_base = pts, Fraction(1, 100)
        pts += delay
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    assert VideoReader(gif).info.fps == Fraction(19 * 100, 2 * 10 + 3 * 9)  # 19 intervals in 47 hundredths
    assert run(capsys, "encode", gif, tmp_path / "g.otok", "--model", model_path)[0] == 0
    status, out_text, _ = run(capsys, "info", tmp_path / "g.otok", "--json")
    assert status == 0 and abs(json.loads(out_text)["fps_float"] - 1900 / 47) < 0.01


def test_a_file_of_one_segment_decodes_as_one(tmp_path, model_path):
    """A header gop of 0 (otok.bitstream.timeline.ONE_SEGMENT) makes the file one segment: decoding keeps
    the temporal cache across all its steps, as the whole-clip decoder does."""
    from otok.bitstream import OtokWriter

    tok = load_model(model_path)
    frames = list(VideoReader(write_clip(tmp_path / "long.mp4", frames=29, width=40, height=32)))
    height, width = frames[0].shape[:2]
    tokens = tok.encode(frames_to_video(frames, "cpu"), gop=100)  # 8 steps in one segment
    assert tokens.shape[1] == 8 > tok.config.gop
    header = make_header(tok, width, height, Fraction(25), "zstd", gop=0)
    coded = tmp_path / "one.otok"
    with OtokWriter(coded, header) as writer:
        for s in range(tokens.shape[1]):
            writer.write(tokens[0, s].numpy())
        writer.close(frames=len(frames))
    expected = video_to_frames(tok.decode(tokens, frames=len(frames), height=height, width=width, gop=100))
    decode_file(coded, tmp_path / "back.mkv", tokenizer=tok, codec="ffv1")
    assert np.array_equal(np.stack(list(VideoReader(tmp_path / "back.mkv"))), expected)
    segments = video_to_frames(tok.decode(tokens, height=height, width=width))  # the model's gop: 26 frames
    assert not np.array_equal(segments, expected[: len(segments)])  # would decode something else


def test_info_reports_a_closed_or_full_stdout(tmp_path, capsys, model_path, clip):
    """`otok info FILE >&-` printed nothing and exited 0; a full stdout must not pass silently either."""
    import subprocess
    import sys

    coded = tmp_path / "c.otok"
    assert run(capsys, "encode", clip, coded, "--model", model_path, "--quiet")[0] == 0
    command = f'"{sys.executable}" -m otok.tools.cli info "{coded}"'
    closed = subprocess.run(["bash", "-c", command + " >&-"], capture_output=True, text=True)
    assert closed.returncode == 2 and "standard output is closed" in closed.stderr
    if Path("/dev/full").exists():
        full = subprocess.run(["bash", "-c", command + " >/dev/full"], capture_output=True, text=True)
        assert full.returncode == 1 and "no space left" in full.stderr
    assert subprocess.run(["bash", "-c", command], capture_output=True).returncode == 0


def test_info_warns_about_a_damaged_index(tmp_path, capsys, model_path, clip):
    coded, damaged = tmp_path / "c.otok", tmp_path / "d.otok"
    assert run(capsys, "encode", clip, coded, "--model", model_path, "--quiet")[0] == 0
    data = bytearray(coded.read_bytes())
    data[data.rindex(b"indx") + 8] ^= 0xFF  # a byte of the index chunk's payload: its CRC no longer holds
    damaged.write_bytes(bytes(data))
    status, out, _ = run(capsys, "info", damaged)
    assert status == 0 and "warning" in out and "damaged" in out
