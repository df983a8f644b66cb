"""The `otok` command line: encode, decode, info, tokens, eval, export, dataset.

`main(argv) -> int` is the whole program; it is tested in-process. A user's error prints one line
`otok: error: ...` on stderr and returns 2; an internal error returns 1 (with a traceback under --debug);
Ctrl-C returns 130. No output file is left behind by a failed command.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import otok
from otok.bitstream import OtokError, UsageError

from .decode import decode_with
from .encode import EncodeResult, Progress, encode_with
from .errors import install_hint, printable
from .evaluation.evaluate import eval_with
from .evaluation.metrics import quality_line
from .files import atomic_output, check_input, check_otok_output, check_output, is_stream, open_video
from .info import coded_suffix, file_info
from .models import load_for, load_model
from .options import BACKENDS, CODERS, DEFAULTS, PRECISIONS, DecodeOptions, EncodeOptions, RunOptions, option_names

SAMPLE = "tools/samples/bigbuckbunny_2s.mp4"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit status 2, like every other user error; its
    help lists each flag's default and ends with examples."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' lines; adds "(default: X)" to a flag's help unless it already names one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" not in text and action.option_strings and action.default not in (None, False)
                and action.default is not argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _runtime_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda, e.g. --device cuda")
    p.add_argument("--backend", choices=BACKENDS, default="torch", help="inference backend, e.g. --backend onnx")
    p.add_argument("--engine-dir", type=Path, metavar="DIR",
                   help="folder made by `otok export`, for --backend onnx|trt, e.g. --engine-dir engines/ (default: none)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="torch backend: auto = bf16 autocast on CUDA, fp32 on the CPU")
    p.add_argument("--compile", action="store_true", help="torch backend: torch.compile the step functions (default: off)")
    p.add_argument("--tile", type=int, metavar="PX",
                   help="code large frames in tiles of PX pixels, the same tokens and pixels as whole frames; "
                        "e.g. --tile 0 (never) (default: auto, from the frame size and the free memory)")


def _input_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="NAME|PATH", help="registry name or .safetensors weights, e.g. --model "
                   f"runs/joint/final.safetensors (default: {DEFAULTS.model})")
    p.add_argument("--max-side", type=int, metavar="PX",
                   help="scale frames down so the longer side is at most PX, e.g. --max-side 640 (default: no scaling)")
    p.add_argument("--frames", type=int, metavar="N", help="code only the first N frames, e.g. --frames 33 (default: all)")


def _coding_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--coder", choices=CODERS, default=DEFAULTS.coder, help="entropy coder, e.g. --coder zstd")
    p.add_argument("--gop", type=int, metavar="STEPS",
                   help="segment length in token steps, e.g. --gop 10 (default: the model's, 5 for otok-s)")
    p.add_argument("--rdo", type=float, metavar="TAU",
                   help="rate-distortion trade-off: a token may repeat the previous step's, the upper or the left "
                        "token when its code is within TAU of the nearest; 0 gives the tokenizer's exact output, "
                        f"e.g. --rdo 0 (default: {DEFAULTS.rdo:g} for token models, 0 for KL)")


def _common_flags(p: argparse.ArgumentParser, default) -> None:
    """--quiet and --debug, accepted before or after the command (the command's copy only overrides)."""
    p.add_argument("--quiet", "-q", action="store_true", default=default, help="no progress bar or summary (default: off)")
    p.add_argument("--debug", action="store_true", default=default, help="show tracebacks of internal errors (default: off)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="otok", description="A streaming video tokenizer that works like a codec.",
                     epilog=_examples(f"otok encode {SAMPLE} clip.otok", "otok decode clip.otok back.mp4",
                                      "otok tokens clip.otok tokens.npy", f"otok eval {SAMPLE}",
                                      "otok COMMAND --help"))
    _common_flags(parser, False)
    parser.add_argument("--version", action="version", version=f"otok {otok.__version__}")
    common = argparse.ArgumentParser(add_help=False)
    _common_flags(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    enc = sub.add_parser("encode", parents=[common], help="video or image -> .otok (several inputs: OUT is a folder)",
                         epilog=_examples(f"otok encode {SAMPLE} clip.otok", "otok encode photo.png photo.otok",
                                          "otok encode a.mp4 b.mkv c.png outdir/     # one .otok each, in outdir/",
                                          "otok encode in.mp4 out.otok --max-side 640 --rdo 0"))
    enc.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="videos PyAV reads, or images")
    enc.add_argument("output", metavar="OUT", help="an .otok file, or a folder (made if missing) for several inputs")
    _input_flags(enc)
    _coding_flags(enc)
    enc.add_argument("--force", action="store_true",
                     help="replace an existing OUT that is not an .otok file (default: refuse)")
    _runtime_flags(enc)

    dec = sub.add_parser("decode", parents=[common], help=".otok -> video (.mp4/.mkv/.mov/.webm) or image (.png/.jpg)",
                         epilog=_examples("otok decode clip.otok back.mp4", "otok decode photo.otok photo.png",
                                          "otok decode a.otok b.otok outdir/     # outdir/a.mp4, outdir/b.mp4",
                                          "otok decode clip.otok back.mkv --codec ffv1      # lossless output",
                                          "otok decode mine.otok back.mp4 --model runs/joint/final.safetensors"))
    dec.add_argument("inputs", nargs="+", type=Path, metavar="IN", help=".otok files")
    dec.add_argument("output", metavar="OUT",
                     help="a video or image file, or a folder (made if missing) for several inputs: NAME.mp4 each "
                          "(NAME.png for a one-frame file)")
    dec.add_argument("--model", metavar="NAME|PATH",
                     help="weights that made the file, e.g. --model runs/joint/final.safetensors "
                          "(default: the installed release the file names by hash)")
    dec.add_argument("--codec", choices=("h264", "h265", "ffv1", "vp9"),
                     help="output video codec, e.g. --codec h265 (default: h264; .webm: vp9)")
    dec.add_argument("--crf", type=int, metavar="N",
                     help="quality of the output video codec, e.g. --crf 12 (default: 18 h264, 20 h265, 24 vp9)")
    _runtime_flags(dec)

    info = sub.add_parser("info", parents=[common], help="describe an .otok file",
                          epilog=_examples("otok info clip.otok", "otok info clip.otok --json"))
    info.add_argument("input", type=Path, metavar="IN")
    info.add_argument("--json", action="store_true", help="one JSON object (default: a table)")

    tok = sub.add_parser("tokens", parents=[common], help=".otok -> a numpy .npy array of its tokens (S, h, w)",
                         epilog=_examples("otok tokens clip.otok tokens.npy",
                                          "otok tokens mine.otok tokens.npy --prior runs/joint/final.prior"))
    tok.add_argument("input", type=Path, metavar="IN")
    tok.add_argument("output", type=Path, metavar="OUT", help="a .npy file: int64 (S, h, w); KL files: float16 (S, C, h, w)")
    tok.add_argument("--prior", type=Path, action="append", metavar="FILE",
                     help="a prior table beside your own weights, e.g. --prior runs/joint/final.prior "
                          "(default: the installed models' tables)")

    ev = sub.add_parser("eval", parents=[common], help="encode + decode a video and report quality and rate",
                        epilog=_examples(f"otok eval {SAMPLE}", f"otok eval {SAMPLE} --compare compare/",
                                         "otok eval clip.mp4 --json --rdo 0"))
    ev.add_argument("input", type=Path, metavar="VIDEO")
    _input_flags(ev)
    _coding_flags(ev)
    _runtime_flags(ev)
    ev.add_argument("--json", action="store_true",
                    help="one JSON object, per-frame figures included (the measures: docs/METRICS.md; default: text)")
    ev.add_argument("--compare", type=Path, metavar="DIR",
                    help="write side-by-side PNGs (source | decoded | error x4) of the worst and a typical frame, "
                         "e.g. --compare compare/ (default: none)")

    ex = sub.add_parser("export", parents=[common], help="ONNX graphs or TensorRT engines for a backend",
                        epilog=_examples("otok export onnx --out engines/",
                                         "otok export trt --onnx-dir engines/ --out trt/ --fp16"))
    targets = ex.add_subparsers(dest="target", required=True, parser_class=_Parser)
    onnx = targets.add_parser("onnx", parents=[common], help="the step graphs of a model, for --backend onnx",
                              epilog=_examples("otok export onnx --out engines/ --model otok-s"))
    onnx.add_argument("--model", metavar="NAME|PATH",
                      help=f"registry name or .safetensors weights, e.g. --model otok-s-kl (default: {DEFAULTS.model})")
    onnx.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder, e.g. --out engines/ (default: none, required)")
    onnx.add_argument("--opset", type=int, default=17, choices=range(17, 21), metavar="17..20", help="ONNX opset, e.g. --opset 18")
    trt = targets.add_parser("trt", parents=[common], help="TensorRT engines from an ONNX folder (GPU)",
                             epilog=_examples("otok export trt --onnx-dir engines/ --out trt/ --fp16"))
    trt.add_argument("--onnx-dir", type=Path, required=True, metavar="DIR", help="made by `otok export onnx`, e.g. --onnx-dir engines/ (default: none, required)")
    trt.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder, e.g. --out trt/ (default: none, required)")
    precision = trt.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_const", dest="precision", const="fp16",
                           help="fp16 engines (default: fp32)")
    precision.add_argument("--bf16", action="store_const", dest="precision", const="bf16",
                           help="bf16 engines (default: fp32)")
    for which, default in (("min", "1,64,64"), ("opt", "1,256,256"), ("max", "4,1088,1920")):
        trt.add_argument(f"--{which}-shape", default=default, metavar="B,H,W",
                         help=f"{which} batch, height, width of the engines' profile, e.g. --{which}-shape {default}")
    ds = sub.add_parser("dataset", parents=[common], help="videos and images -> Parquet shards of tokens, a row per clip",
                        epilog=_examples("otok dataset videos/ --out shards/",
                                         "otok dataset list.txt more/ --out shards/ --clip-frames 17 --max-side 256",
                                         "otok dataset videos/ --out shards/ --engine ray --workers 4",
                                         "otok dataset paths.csv --out /shared/shards --engine ray --ray-address auto "
                                         "--gpus-per-worker 1"))
    ds.add_argument("sources", nargs="+", type=Path, metavar="SRC",
                    help="files, folders (searched recursively for videos and images), .txt or .csv lists of paths")
    ds.add_argument("--out", type=Path, required=True, metavar="DIR",
                    help="the shards' folder (a rerun resumes it), e.g. --out shards/ (default: none, required)")
    _input_flags(ds)
    _coding_flags(ds)
    ds.add_argument("--device", default="cpu", help="--engine local: cpu or cuda, e.g. --device cuda")
    ds.add_argument("--clip-frames", type=int, metavar="N",
                    help="cut videos into clips of N frames, a row each, e.g. --clip-frames 17 (default: a row a file)")
    ds.add_argument("--also-otok", action="store_true", help="also keep each clip's .otok file in DIR/otok/ (default: off)")
    ds.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="local: in this process; ray: Ray Data actors (pip install 'ray[data]')")
    ds.add_argument("--workers", type=int, metavar="N", help="--engine ray: actors, each loading the model once, "
                    "e.g. --workers 4 (default: one per CPU, or per G GPUs with --gpus-per-worker G)")
    ds.add_argument("--gpus-per-worker", type=float, default=0, metavar="G",
                    help="--engine ray: GPUs per actor, which then runs on cuda, e.g. --gpus-per-worker 1 (default: 0)")
    ds.add_argument("--ray-address", metavar="ADDR",
                    help="--engine ray: join this cluster, e.g. --ray-address auto (default: start a local Ray)")
    ds.add_argument("--shard-rows", type=int, default=512, metavar="N",
                    help="rows a shard (a file's rows share one), e.g. --shard-rows 2000")
    ds.add_argument("--overwrite", action="store_true",
                    help="start DIR again, deleting its shards (default: resume; other options are refused)")
    return parser


LOG_EVERY_S = 10.0  # without a terminal, a progress line at most this often


@contextlib.contextmanager
def _progress(args: argparse.Namespace, total: int | None, label: str) -> Iterator[Progress | None]:
    """A bar on a terminal; without one (a log, a pipe), a line on stderr every LOG_EVERY_S seconds, so that
    a long run in a job still says where it is; nothing with --quiet."""
    if args.quiet:
        yield None
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, unit="frame", desc=label, dynamic_ncols=True, leave=False) as bar:
            yield bar.update
        return
    done, last = [0], [time.monotonic()]

    def log(frames: int) -> None:
        done[0] += frames
        if time.monotonic() - last[0] >= LOG_EVERY_S:
            last[0] = time.monotonic()
            print(f"otok: {printable(label)}: {done[0]}{f' of {total}' if total else ''} frame{'' if (total or done[0]) == 1 else 's'}",
                  file=sys.stderr, flush=True)

    yield log


def _show_progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _options(kind: type[RunOptions], args: argparse.Namespace) -> RunOptions:
    """The command's options object from its flags (each field is a flag of the same name), checked once."""
    return kind(**{name: getattr(args, name) for name in option_names(kind) if hasattr(args, name)})


def _shard(items: list[Path]) -> list[Path]:
    """Under torchrun, rank r of w takes items r, r+w, ...; alone, all of them."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return items[rank::world]


def cmd_encode(args: argparse.Namespace) -> int:
    options = _options(EncodeOptions, args)
    _note_first_compile(args)
    out = Path(args.output)
    if len(args.inputs) > 1 or out.is_dir() or args.output.endswith(("/", os.sep)):
        if out.exists() and not out.is_dir():
            raise UsageError(f"with several inputs, OUT is a folder; {out} is a file")
        inputs = _distinct_stems(args.inputs, out)  # all inputs, not this rank's share: every rank agrees
        jobs = [(src, out / f"{src.stem}.otok") for src in _shard(inputs)]
    else:
        jobs = [(args.inputs[0], out)]
    for src, dst in jobs:  # every input and output checked before any work
        check_input(src)
        check_output(dst, [src])
        check_otok_output(dst, args.force)
    tok = load_for(options)
    for i, (src, dst) in enumerate(jobs):
        try:
            total = _frames_of(src, args.frames) if not args.quiet else None
            with _progress(args, total, f"encode {src.name}") as progress:
                r = encode_with(src, dst, options, tok, progress, args.force)
        except OtokError as exc:
            if len(jobs) == 1:
                raise
            kept = f", after writing {', '.join(str(d) for _, d in jobs[:i])}" if i else ""
            raise BatchError(f"{cli_message(exc)} (stopped at input {i + 1} of {len(jobs)}{kept})") from None
        if not args.quiet:
            print(_encode_summary(dst, r))
    return 0


class BatchError(OtokError):
    """An input of several failed: its message, and which outputs were written before it (exit status 2)."""


def _distinct_stems(inputs: list[Path], folder: Path, suffix: str = ".otok") -> list[Path]:
    """The inputs, each file once. Two files with one stem (a.mp4, a.mkv) would write one output: refused
    before any work, rather than overwritten, or given invented names that a pipeline keyed on the stem
    would not find. One file named twice is encoded once."""
    seen: dict[str, Path] = {}
    for src in inputs:
        first = seen.setdefault(src.stem, src)
        if first is not src and os.path.realpath(first) != os.path.realpath(src):
            raise UsageError(f"{first} and {src} would both write {folder / (src.stem + suffix)}; "
                             "encode them into separate folders, or rename one")
    return list(seen.values())


def _encode_summary(dst: Path, r: EncodeResult) -> str:
    """One line: an image's size in bits per pixel, a video's rate in kbit/s."""
    if r.frames == 1:
        bpp = 8 * r.bytes / (r.width * r.height)
        return f"{dst}: 1 frame {r.width}x{r.height}, {r.bytes:,} bytes ({bpp:.3f} bits/pixel), {r.seconds:.2f} s"
    kbps = 8 * r.bytes / 1000 / (r.frames / float(r.fps))
    return (f"{dst}: {_count(r.frames, 'frame')} {r.width}x{r.height}, {_count(r.steps, 'step')}, {r.bytes:,} bytes "
            f"({kbps:.1f} kbit/s), {r.frames / r.seconds:.1f} frames/s")


def _frames_of(src: Path, limit: int | None) -> int | None:
    """The container's frame count (an estimate, for the progress bar's ETA), capped by --frames. A pipe is
    not opened for it: it can be read only once."""
    if is_stream(src):
        return limit
    with open_video(src) as reader:
        count = reader.info.frames
    return min(count, limit) if count and limit else count or limit


def cmd_decode(args: argparse.Namespace) -> int:
    options = _options(DecodeOptions, args)
    _note_first_compile(args)
    out = Path(args.output)
    if len(args.inputs) > 1 or out.is_dir() or str(args.output).endswith(("/", os.sep)):
        if out.exists() and not out.is_dir():
            raise UsageError(f"with several inputs, OUT is a folder; {out} is a file")
        inputs = _distinct_stems(args.inputs, out, ".mp4")
        jobs = [(src, out / (src.stem + (".png" if file_info(src)["frames"] == 1 else ".mp4"))) for src in inputs]
    else:
        jobs = [(args.inputs[0], out)]
    for i, (src, dst) in enumerate(jobs):
        total = file_info(src)["frames"] if not args.quiet and not is_stream(src) else None
        try:
            with _progress(args, total, f"decode {src.name}") as progress:
                r = decode_with(src, dst, options, progress=progress)
        except OtokError as exc:
            if len(jobs) == 1:
                raise
            kept = f", after writing {', '.join(str(d) for _, d in jobs[:i])}" if i else ""
            raise BatchError(f"{cli_message(exc)} (stopped at input {i + 1} of {len(jobs)}{kept})") from None
        if r.damage:
            print(f"otok: warning: {r.damage}; decoded the {_count(r.frames, 'frame')} before it", file=sys.stderr)
        elif r.untrusted:
            print(f"otok: warning: {r.untrusted}", file=sys.stderr)
        if not args.quiet:
            speed = f"{r.seconds:.1f} s" if r.frames == 1 else f"{r.frames / r.seconds:.1f} frames/s"
            print(f"{r.path}: {_count(r.frames, 'frame')} {r.width}x{r.height}, {speed}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    info = file_info(args.input)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    rows = [
        ("model", f"{printable(info['model'])} (weights {info['weights_sha256'][:16]}...)"),
        ("video", f"{info['width']}x{info['height']} (padded {info['padded_width']}x{info['padded_height']}"
                  + (f", pixels {info['sample_aspect']}" if info["sample_aspect"] else "") + "), "
                  + ("1 frame (an image)" if info["frames"] == 1 else
                     f"{info['frames']} frames at {_rate(info['fps_float'])} fps, {info['duration_s']:.2f} s")),
        ("tokens", f"{_count(info['steps'], 'step')} of {info['grid'][0]}x{info['grid'][1]}, {_count(info['segments'], 'segment')} "
                   f"(gop {info['gop']}), " + (f"codebook {info['codebook_size']}" if info["codebook_size"]
                                                else f"{info['latent_channels']} latent channels")),
        ("coding", f"{info['coder']}{' (grouped literals)' if info['literal_model'] else ''}, format "
                   f"{info['format_version']}, {info['bytes']:,} bytes"
                   + (f" ({info['coded_bytes']:,} of coded steps), " if info["coded_bytes"] is not None else ", ")
                   + (f"{info['bits_per_token']:.3f} bits/token"
                      f"{coded_suffix(info['coded_bits_per_token'])}, " if info["bits_per_token"] else "")
                   + (f"{info['bpp']:.4f} bpp" if info["bpp"] else "")),
    ]
    settings = info["encoder_settings"]
    if settings:
        described = [str(settings["encoder"])] if "encoder" in settings else []
        described += [f"--{k} {v}" for k, v in settings.items() if k != "encoder"]
        rows.append(("encoder", printable(", ".join(described))))
    if not info["complete"]:
        rows.append(("warning", "no valid index/trailer: the file is truncated or damaged"))
    for key, value in rows:
        print(f"{key:>8}: {value}")
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    """The file's tokens as a .npy array, for a language-model pipeline (`otok.read_tokens`)."""
    import numpy as np

    if args.output.suffix != ".npy":
        raise UsageError(f"OUT is a .npy file; got {args.output}")
    tokens = otok.read_tokens(args.input, prior=args.prior)
    check_output(args.output, [args.input])
    with atomic_output(args.output) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, tokens)
    if not args.quiet:
        print(f"{args.output}: {tokens.dtype} {tuple(tokens.shape)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    options = _options(EncodeOptions, args)
    _note_first_compile(args)
    total = _frames_of(args.input, args.frames) if not args.quiet else None
    with _progress(args, total, f"eval {args.input.name}") as progress:
        r = eval_with(args.input, options, args.compare, load_for(options), progress)
    record = {
        "model": r.model, "coder": r.coder, "frames": r.frames, "width": r.width, "height": r.height,
        "bytes": r.bytes, "psnr": r.psnr, "ssim": r.ssim, "bpp": r.bpp, "bits_per_token": r.bits_per_token,
        "coded_bits_per_token": r.coded_bits_per_token, "encode_fps": r.encode_fps, "decode_fps": r.decode_fps,
        "rdo": r.rdo,
        "codes_used": None if r.code_counts is None else int((r.code_counts > 0).sum()),
        **r.quality,  # seam_ratio, judder_ratio, segment_pulse_db, channel_*, chroma_psnr, psnr_bicubic8, ...
    }
    if args.compare is not None:
        record["compare"] = [str(p) for p in r.compare]
    if args.json:
        print(json.dumps({**record, "psnr_per_frame": r.psnr_per_frame, "ssim_per_frame": r.ssim_per_frame}))
    else:
        print(f"{args.input}: {r.frames} frames {r.width}x{r.height}  PSNR {r.psnr:.2f} dB  SSIM {r.ssim:.4f}  "
              f"{r.bpp:.4f} bpp  {r.bits_per_token:.3f} bits/token{coded_suffix(r.coded_bits_per_token)}  "
              f"encode {r.encode_fps:.1f} f/s  decode {r.decode_fps:.1f} f/s")
        print(f"  {quality_line(r.quality)}")
        for path in r.compare:
            print(f"  wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from otok.export import EngineError, UnsupportedOpError, build_trt_engines, export_onnx

    try:
        if args.target == "onnx":
            if args.out.exists() and not args.out.is_dir():
                raise UsageError(f"{args.out} exists and is not a folder")
            manifest = export_onnx(load_model(args.model), args.out, opset=args.opset)
            what = f"{len(manifest['graphs'])} ONNX graphs of {manifest['model']}"
        else:
            shapes = {f"{k}_shape": _shape(getattr(args, f"{k}_shape")) for k in ("min", "opt", "max")}
            build_trt_engines(args.onnx_dir, args.out, args.precision or "fp32", **shapes)
            what = f"TensorRT engines ({args.precision or 'fp32'})"
    except (EngineError, UnsupportedOpError) as exc:
        raise UsageError(str(exc)) from None
    except ImportError as exc:
        extra = "onnx" if args.target == "onnx" else "gpu"
        raise UsageError(f"otok export {args.target} needs {exc.name or 'its runtime'}: "
                         f"{install_hint(extra)}") from None
    if not args.quiet:
        print(f"{args.out}: {what}")
    return 0


def _shape(text: str) -> tuple[int, int, int]:
    try:
        b, h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"a shape is B,H,W (three integers), got {text!r}") from None
    return b, h, w


def cmd_dataset(args: argparse.Namespace) -> int:
    from .dataset.build import FAILURES, build_dataset

    _options(EncodeOptions, args)  # the flags it shares with encode, checked as encode checks them
    for flag in ("clip_frames", "workers", "shard_rows"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    given = [flag for flag, value in (("--workers", args.workers), ("--gpus-per-worker", args.gpus_per_worker),
                                      ("--ray-address", args.ray_address)) if value]
    if args.engine == "local" and given:
        raise UsageError(f"{given[0]} is for --engine ray")
    if args.gpus_per_worker < 0:
        raise UsageError(f"--gpus-per-worker must be 0 or more, got {args.gpus_per_worker:g}")
    if args.engine == "ray" and args.device != "cpu":
        raise UsageError("--device is for --engine local; Ray actors run on cuda with --gpus-per-worker G")
    r = build_dataset(args.sources, args.out, model=args.model, max_side=args.max_side, frames=args.frames,
                      clip_frames=args.clip_frames, gop=args.gop, rdo=args.rdo, coder=args.coder,
                      also_otok=args.also_otok, device=args.device, engine=args.engine, workers=args.workers,
                      gpus_per_worker=args.gpus_per_worker, ray_address=args.ray_address, shard_rows=args.shard_rows,
                      overwrite=args.overwrite, progress=_show_progress(args))
    if not args.quiet:
        print(f"{args.out}: {_count(r.clips, 'clip')} of {_count(r.files, 'file')} in {_count(len(r.shards), 'new shard')}, "
              f"{r.seconds:.1f} s ({r.clips / r.seconds if r.seconds else 0:.2f} clips/s)"
              + (f"; {_count(r.skipped, 'file')} there already" if r.skipped else ""))
    if r.failures:
        print(f"otok: {'warning' if r.files else 'error'}: files failed: {len(r.failures)} of {r.files + len(r.failures)}, "
              f"listed in {args.out / FAILURES} (first: {r.failures[0]['error']})", file=sys.stderr)
        return 1 if r.files else 2
    return 0


def _rate(fps: float) -> str:
    """A frame rate as people write it: 25, 29.97, 23.976 (not 2997/125)."""
    return f"{fps:.3f}".rstrip("0").rstrip(".")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


PRINTS_ITS_RESULT = ("info", "eval")  # the others write files and print only a summary
COMMANDS = {"encode": cmd_encode, "decode": cmd_decode, "info": cmd_info, "tokens": cmd_tokens, "eval": cmd_eval,
            "export": cmd_export, "dataset": cmd_dataset}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed escaped, not a crash
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    debug = "--debug" in argv
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return _main(argv, debug)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: list[str], debug: bool) -> int:
    try:
        args = build_parser().parse_args(argv)
        if sys.stdout is None and args.command in PRINTS_ITS_RESULT:  # started with stdout closed (`>&-`)
            raise UsageError(f"standard output is closed, and otok {args.command} prints its result there")
        status = COMMANDS[args.command](args)
        if sys.stdout is not None:
            sys.stdout.flush()  # a write error (a full disk, a closed pipe) is reported here, not lost at exit
        return status
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    except OtokError as exc:  # the library's errors, MediaError and ModelError included
        return _fail(cli_message(exc), 2)
    except _Terminated as exc:
        return _fail(f"terminated ({exc})", 128 + getattr(signal, str(exc), signal.SIGTERM).value)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            return _fail(f"no space left on the device{_where(exc)}", 1)
        if debug:
            traceback.print_exc()
        return _fail(f"{exc.strerror or exc}{_where(exc)}", 2 if exc.errno in USER_ERRNOS else 1)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if debug:
            traceback.print_exc()
        return _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for a traceback)", 1)


# OSErrors that are the user's to fix (a path, a permission, a read-only or full place): exit status 2
USER_ERRNOS = {errno.EACCES, errno.ENOENT, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG, errno.ENOTDIR,
               errno.EISDIR, errno.EEXIST, errno.ELOOP, errno.EDQUOT}


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so that partial outputs are removed."""


def _on_signal(signum, frame) -> None:
    raise _Terminated(signal.Signals(signum).name)


def cli_message(exc: OtokError) -> str:
    """A library error in the CLI's words: an ArgumentError names the flag (`rdo` -> `--rdo`, `model=PATH`
    -> `--model PATH`) instead of the Python argument."""
    message = str(exc)
    name = getattr(exc, "argument", "")
    if name:
        flag = "--" + name.replace("_", "-")
        message = re.sub(rf"\b{name}=True\b", flag, message)
        message = re.sub(rf"\b{name}=", f"{flag} ", message)
        message = re.sub(rf"^{name}\b", flag, message)
    return message


def _where(exc: OSError) -> str:
    return f" ({exc.filename})" if exc.filename else ""


def _note_first_compile(args: argparse.Namespace) -> None:
    """The ctx coder's kernels compile on their first use after an install (tens of seconds with no output
    otherwise, the bar standing still): say so, once, unless --quiet."""
    from otok.bitstream.coders.ctx_kernels import compiled_on_disk

    if not args.quiet and getattr(args, "coder", "ctx") == "ctx" and not compiled_on_disk():
        print("otok: note: compiling the ctx coder's kernels, once after an install (about half a minute)",
              file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning from the library (a TIFF read only in part, a damaged prior table) as one line."""
    print(f"otok: warning: {printable(str(message))}", file=sys.stderr)


def _fail(message: str, status: int) -> int:
    """One line on stderr: a newline or control character in a file name is shown escaped, not obeyed."""
    print(f"otok: error: {printable(message) if message else 'failed'}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
