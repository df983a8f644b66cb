"""Rate–distortion of otok against x264 and x265 on evaluation clips: CSV, PNG plot, summary with BD figures.

    python tools/evaluation/rd.py --clips FILE [FILE ...] [--short-side 256 | --max-side PX] [--frames N] --models otok-s \
        [--coders ctx zstd raw] [--crf 18,23,28,33,38,43,48] [--rdo 0,0.01,0.02,0.03,0.05] --out DIR

For each clip (a video, or an image as a 1-frame clip), frames are read as 8-bit RGB scaled down so the
shorter side is --short-side (default 256) or the longer at most --max-side (tools/video_io.VideoReader,
the same frames otok sees), then:

- x264 (libx264, preset veryslow) and x265 (libx265, preset slow) encode them at each CRF of the sweep,
  in yuv420p when width and height are even, else yuv444p (as `otok decode` writes video), one encoder
  thread by default so the bytes do not depend on the machine. Size = every byte the encoder emits, as a
  raw Annex-B elementary stream (parameter sets and the encoder's version/options SEI included, no
  container); the stream is decoded again and compared with the RGB source frames.
- otok: every model × coder × rate-distortion tolerance (--rdo, `otok encode --rdo`; token models) through
  `otok.tools.evaluation.evaluate.eval_file`, a real `.otok` file; size = the whole file (header, index and trailer
  included). Each model × coder is one curve over its --rdo points.

PSNR is the mean over frames of per-frame RGB PSNR (tools/metrics.psnr, peak 255; as `otok eval`), SSIM
the mean per-frame SSIM. bpp = 8 × bytes / (frames × width × height); kbps at the clip's frame rate.

Writes DIR/rd.csv (one row per clip × codec × operating point; `#` lines above the header record the
command, versions and encoder option strings), DIR/rd.png (PSNR vs bpp per clip, log x) and
DIR/summary.txt (the printed summary: otok's points against x264/x265 at the same bpp, and Bjøntegaard
BD-rate / BD-PSNR, tools/evaluation/bd.py).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from otok.bitstream import OtokError
from otok.tools.evaluation import bd
from otok.tools.evaluation.metrics import finite_mean
from otok.tools.evaluation.metrics import psnr, ssim
from otok.tools.video_io import VideoReader, max_side_for

ENCODERS = {"x264": ("libx264", "h264"), "x265": ("libx265", "hevc")}  # name: (encoder, decoder)
DEFAULT_PRESETS = {"x264": "veryslow", "x265": "slow"}
DEFAULT_CRFS = "18,23,28,33,38,43,48"
DEFAULT_RDOS = "0,0.01,0.02,0.03,0.05"  # otok operating points: the --rdo tolerances of `otok encode`
FIELDS = ["clip", "codec", "param", "frames", "width", "height", "bytes", "bpp", "kbps", "psnr", "ssim"]


@dataclass
class Point:
    """One measured operating point of one codec on one clip (a row of rd.csv)."""

    clip: str
    codec: str  # x264, x265, or MODEL:CODER for otok
    param: str  # crf=N for x264/x265, rdo=TAU for otok (the rate-distortion tolerance)
    frames: int
    width: int
    height: int
    bytes: int
    bpp: float
    kbps: float
    psnr: float
    ssim: float


def read_clip(path: Path, max_side: int | None, frames: int | None) -> tuple[list[np.ndarray], Fraction]:
    """The clip's frames as (H, W, 3) uint8 RGB, scaled as otok scales them, and its frame rate."""
    with VideoReader(path, max_side=max_side, max_frames=frames) as reader:
        return list(reader), reader.info.fps


def pixel_format(width: int, height: int) -> str:
    """yuv420p for even sizes, yuv444p when either side is odd (4:2:0 needs even sizes)."""
    return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"


@dataclass
class Coded:
    bytes: int  # the elementary stream, less the informational SEI unless counted (see encode_conventional)
    decoded: list[np.ndarray]  # (H, W, 3) uint8 RGB, display order
    info: str  # the encoder's version/options SEI text, when found
    info_bytes: int  # the size of that SEI NAL unit (start code included)


def encode_conventional(
    frames: list[np.ndarray], fps: Fraction, codec: str, crf: int, preset: str | None = None, threads: int = 1,
    count_info_sei: bool = False,
) -> Coded:
    """Encode RGB frames with libx264/libx265 at `crf` and decode the stream back to RGB.

    No container: the encoder's packets form an Annex-B elementary stream, whose bytes are counted
    (parameter sets included) — except the encoder's informational SEI (its version and options as text,
    ~0.6 KB for x264, ~2 KB for x265, ignored by decoders; x265 drops it with --no-info), unless
    `count_info_sei`. Its size is returned as `info_bytes` either way."""
    encoder_name, decoder_name = ENCODERS[codec]
    height, width = frames[0].shape[:2]
    fmt = pixel_format(width, height)
    enc = av.CodecContext.create(encoder_name, "w")
    enc.width, enc.height, enc.pix_fmt = width, height, fmt
    enc.time_base, enc.framerate = 1 / Fraction(fps), Fraction(fps)
    options = {"preset": preset or DEFAULT_PRESETS[codec], "crf": str(crf)}
    if codec == "x264":
        enc.thread_count = threads
    else:
        options["x265-params"] = f"log-level=error:frame-threads={threads}:pools={threads}"
    enc.options = options
    packets: list[bytes] = []
    for i, frame in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24").reformat(format=fmt)
        vf.pts = i
        packets += [bytes(p) for p in enc.encode(vf)]
    packets += [bytes(p) for p in enc.encode(None)]
    if not packets:
        raise RuntimeError(f"{codec} crf {crf}: the encoder produced no packets")
    extradata = bytes(enc.extradata or b"")  # empty without a global header; counted if present
    dec = av.CodecContext.create(decoder_name, "r")
    decoded: list[np.ndarray] = []
    for chunk in [extradata + packets[0]] + packets[1:]:
        decoded += [f.to_ndarray(format="rgb24") for f in dec.decode(av.Packet(chunk))]
    decoded += [f.to_ndarray(format="rgb24") for f in dec.decode(None)]
    if len(decoded) != len(frames):
        raise RuntimeError(f"{codec} crf {crf}: {len(frames)} frames in, {len(decoded)} decoded")
    info_nals = [n for n in annexb_nal_units(extradata + packets[0]) if INFO_MARKER.search(n)]
    info_bytes = sum(map(len, info_nals))
    total = len(extradata) + sum(map(len, packets))
    return Coded(total if count_info_sei else total - info_bytes, decoded,
                 sei_text(info_nals[0]) if info_nals else "", info_bytes)


INFO_MARKER = re.compile(rb"x264 - core|x265 \(build")


def annexb_nal_units(stream: bytes) -> list[bytes]:
    """An Annex-B byte stream cut into its NAL units, each with its own start code (00 00 01 or
    00 00 00 01), so that their lengths add up to the stream's length."""
    starts = [m.start() for m in re.finditer(b"\x00\x00\x01", stream)]
    # a 4-byte start code: the zero before 00 00 01 belongs to the next unit, not to the previous one
    starts = [s - 1 if s > 0 and stream[s - 1] == 0 else s for s in starts]
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    return [stream[a:b] for a, b in zip(starts, [*starts[1:], len(stream)])]


def sei_text(nal: bytes) -> str:
    """The x264/x265 version-and-options text inside their informational SEI, printable characters only."""
    match = INFO_MARKER.search(nal)
    if not match:
        return ""
    end = nal.find(b"\x00", match.start())
    text = nal[match.start():end if end > 0 else None].decode("ascii", "replace")
    return "".join(ch for ch in text if ch.isprintable())


def encoder_version(info: str) -> str:
    """'x264 - core 165' / 'x265 (build 216) - 4.2+1-e444744' from the SEI text."""
    return re.split(r" - H\.26[45]|:\[", info)[0].strip() if info else "unknown"


def measure(clip: str, codec: str, param: str, frames: list[np.ndarray], decoded: list[np.ndarray], nbytes: int,
            fps: Fraction) -> Point:
    """A Point from source and decoded frames: mean per-frame PSNR (finite ones) and SSIM, bpp, kbps."""
    height, width = frames[0].shape[:2]
    return Point(
        clip, codec, param, len(frames), width, height, nbytes, 8 * nbytes / (len(frames) * width * height),
        8 * nbytes / (len(frames) / float(fps)) / 1000, finite_mean(psnr(a, b) for a, b in zip(frames, decoded)),
        float(np.mean([ssim(a, b) for a, b in zip(frames, decoded)])),
    )


# ----- summary ------------------------------------------------------------------------------------------
def curve(points: list[Point]) -> list[tuple[float, float]]:
    return [(p.bpp, p.psnr) for p in points]


def _fmt(value: float | None, spec: str, missing: str = "—") -> str:
    return missing if value is None else format(value, spec)


def _bd_line(name: str, ref: list[Point], test: list[Point]) -> str:
    try:
        rate = bd.bd_rate(curve(ref), curve(test))
        gain = bd.bd_psnr(curve(ref), curve(test))
    except bd.BDError as exc:
        return f"  {name}: undefined — {exc}"
    return f"  {name}: BD-rate {rate:+.1f} %, BD-PSNR {gain:+.2f} dB"


def summarize(points: list[Point], models: list[str], clips: list[str]) -> str:
    """The per-clip table (each otok point against x264/x265 at its bpp) and the BD figures, as text."""
    lines = [
        "Each otok point against x264/x265: their PSNR at otok's bpp, and the bpp they need for otok's PSNR,",
        "interpolated piecewise-linearly in log10(bpp) between measured CRF points (no fit; '—' = outside the",
        "measured sweep, not extrapolated). BD figures: Bjøntegaard cubic fits (tools/evaluation/bd.py), rate = bpp.",
    ]
    bd_rates: dict[str, list[float]] = {}
    for clip in clips:
        here = [p for p in points if p.clip == clip]
        if not here:
            continue
        first = here[0]
        lines += ["", f"{clip}: {first.frames} frame(s), {first.width}x{first.height}"]
        refs = {c: sorted((p for p in here if p.codec == c), key=lambda p: p.bpp) for c in ENCODERS}
        for c, ref in refs.items():
            if ref:
                lines.append(f"  {c:<6} bpp {ref[0].bpp:.4f}–{ref[-1].bpp:.4f}, "
                             f"PSNR {ref[0].psnr:.2f}–{ref[-1].psnr:.2f} dB "
                             f"({ref[0].param}…{ref[-1].param})")
        header = f"  {'otok point':<26} {'bytes':>8} {'bpp':>8} {'PSNR':>7} {'SSIM':>7}"
        for c in ENCODERS:
            header += f" | {c + ' PSNR@bpp':>14} {'ΔPSNR':>7} {c + ' bpp@PSNR':>14} {'size ×':>7}"
        lines.append(header)
        otok = [p for p in here if p.codec not in ENCODERS]
        for p in otok:
            row = f"  {p.codec + ' ' + p.param:<26} {p.bytes:>8} {p.bpp:>8.4f} {p.psnr:>7.2f} {p.ssim:>7.4f}"
            for c, ref in refs.items():
                q = bd.psnr_at_rate(curve(ref), p.bpp) if ref else None
                try:
                    r = bd.rate_at_psnr(curve(ref), p.psnr) if ref else None
                except bd.BDError:
                    r = None  # a non-monotone sweep: no single answer
                row += (f" | {_fmt(q, '.2f'):>14} {_fmt(None if q is None else p.psnr - q, '+.2f'):>7} "
                        f"{_fmt(r, '.4f'):>14} {_fmt(None if r is None else p.bpp / r, '.2f'):>7}")
            lines.append(row)
        lines.append("  (ΔPSNR = otok − codec at equal bpp; "
                     "size × = otok's bytes / the codec's bytes at equal PSNR)")
        if refs["x264"] and refs["x265"]:
            line = _bd_line("x265 vs x264", refs["x264"], refs["x265"])
            lines.append(line)
            if "undefined" not in line:
                bd_rates.setdefault("x265 vs x264", []).append(bd.bd_rate(curve(refs["x264"]), curve(refs["x265"])))
        for codec in dict.fromkeys(p.codec for p in otok):
            mine = [p for p in otok if p.codec == codec]
            for c, ref in refs.items():
                if ref:
                    line = _bd_line(f"{codec} vs {c}", ref, mine) + f" [{len(mine)} point(s), one per --rdo]"
                    lines.append(line)
                    if "undefined" not in line:
                        bd_rates.setdefault(f"{codec} vs {c}", []).append(bd.bd_rate(curve(ref), curve(mine)))
        if len(models) >= bd.MIN_POINTS and refs["x264"]:
            best = [min((p for p in otok if p.codec.rsplit(":", 1)[0] == m), key=lambda p: p.bytes) for m in models]
            lines.append(_bd_line("otok models (smallest coder each) vs x264", refs["x264"], best))
    for name, values in bd_rates.items():
        if len(values) > 1:
            lines += ["", f"mean BD-rate {name} over {len(values)} clips: {np.mean(values):+.1f} %"]
    return "\n".join(lines)


# ----- plot ---------------------------------------------------------------------------------------------
def plot(points: list[Point], clips: list[str], path: Path, title: str, presets: dict[str, str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    n = len(clips)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    markers = "o^sDvP*X"
    for ax, clip in zip(axes.flat, clips):
        here = [p for p in points if p.clip == clip]
        for c, style in (("x264", "-o"), ("x265", "-s")):
            ref = sorted((p for p in here if p.codec == c), key=lambda p: p.bpp)
            if ref:
                ax.plot([p.bpp for p in ref], [p.psnr for p in ref], style, ms=4, label=f"{c} ({presets[c]})")
                for p in ref:
                    ax.annotate(p.param.removeprefix("crf="), (p.bpp, p.psnr), textcoords="offset points",
                                xytext=(3, -9), fontsize=6, color="gray")
        otok_codecs = list(dict.fromkeys(p.codec for p in here if p.codec not in ENCODERS))
        for i, c in enumerate(otok_codecs):
            mine = sorted((p for p in here if p.codec == c), key=lambda p: p.bpp)
            # shrinking markers: coincident points (coders of one model at one rate) stay visible
            ax.plot([p.bpp for p in mine], [p.psnr for p in mine], "--" + markers[i % len(markers)],
                    ms=max(4.0, 10 - 2 * (i % 4)), mec="black", alpha=0.85, label=f"{c} (--rdo sweep)")
            if i == 0:
                for p in mine:
                    ax.annotate(p.param.removeprefix("rdo="), (p.bpp, p.psnr), textcoords="offset points",
                                xytext=(4, 4), fontsize=6, color="tab:blue")
        first = here[0] if here else None
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.FuncFormatter(
            lambda v, _: f"{v:g}" if round(v / 10 ** np.floor(np.log10(v) + 1e-9)) in (2, 5) else ""))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("bits per pixel (log)")
        ax.set_ylabel("PSNR, dB (RGB, mean over frames)")
        ax.set_title(f"{clip}" + (f" — {first.frames} fr, {first.width}x{first.height}" if first else ""), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----- main ---------------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "av": av.__version__,
           "ffmpeg libavcodec": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
           "platform": platform.platform()}
    try:
        out["ffmpeg"] = av.ffmpeg_version_info
    except AttributeError:
        pass
    try:
        repo = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if commit:
            out["otok commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def read_csv(path: Path) -> tuple[list[Point], list[str]]:
    """The points of an rd.csv and its `#` comment lines (without the `# `)."""
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    comments = [line[2:] for line in lines if line.startswith("#")]
    rows = csv.DictReader(line for line in lines if not line.startswith("#"))
    points = [Point(r["clip"], r["codec"], r["param"], int(r["frames"]), int(r["width"]), int(r["height"]),
                    int(r["bytes"]), float(r["bpp"]), float(r["kbps"]), float(r["psnr"]), float(r["ssim"]))
              for r in rows]
    return points, comments


def replot(csv_path: Path, out: Path) -> int:
    """`--replot`: rd.png and summary.txt from an existing rd.csv, with its recorded command and versions."""
    points, comments = read_csv(csv_path)
    out.mkdir(parents=True, exist_ok=True)
    clips = list(dict.fromkeys(p.clip for p in points))
    models = list(dict.fromkeys(p.codec.rsplit(":", 1)[0] for p in points if p.codec not in ENCODERS))
    presets = dict(DEFAULT_PRESETS)
    for line in comments:  # presets as recorded, for the labels
        found = re.search(r"x264 preset (\S+), x265 preset (\S+),", line)
        if found:
            presets.update(x264=found[1], x265=found[2])
    command = next((c.split(": ", 1)[1] for c in comments if c.startswith("command: ")), str(csv_path))
    words = shlex.split(command)
    setting = {k: words[words.index(k) + 1] for k in ("--max-side", "--short-side", "--frames") if k in words[:-1]}
    max_side = setting.get("--max-side")
    short_side = setting.get("--short-side", 256 if max_side is None else None)
    plot(points, clips, out / "rd.png", title(presets, max_side, short_side, setting.get("--frames")), presets)
    head = [c for c in comments if not c.startswith(("x264 SEI", "x265 SEI"))]
    text = "\n".join(head) + f"\n(redrawn from {csv_path})\n\n" + summarize(points, models, clips) + "\n"
    (out / "summary.txt").write_text(text)
    print(text)
    print(f"wrote {out / 'rd.png'}, {out / 'summary.txt'}")
    return 0


def title(presets: dict[str, str], max_side, short_side, frames) -> str:
    scale = f"max side {max_side}" if max_side else f"short side {short_side}"
    return (f"otok vs x264 ({presets['x264']}) / x265 ({presets['x265']}), {scale}"
            + (f", ≤{frames} frames" if frames else ""))


def model_label(spec: str) -> str:
    """A registry name as is; a weights path by its file stem (the codec column reads STEM:CODER)."""
    return Path(spec).stem if spec.endswith(".safetensors") else spec


@dataclass
class Sweep:
    """What a run measured: the points, and the conventional encoders' informational SEI (text, sizes)."""

    points: list[Point] = field(default_factory=list)
    clips: list[str] = field(default_factory=list)
    encoder_info: dict[str, str] = field(default_factory=dict)
    info_sizes: dict[str, list[int]] = field(default_factory=dict)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[int], list[float]]:
    """The flags, checked: (args, CRFs, rdo tolerances); a bad one exits with argparse's message."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", type=Path, help="videos and/or images")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--short-side", type=int, default=256, help="scale down so the shorter side is this")
    scale.add_argument("--max-side", type=int, default=None, help="scale down so the longer side is at most this")
    parser.add_argument("--frames", type=int, default=None, help="at most this many frames per video")
    parser.add_argument("--models", nargs="+", default=["otok-s"], help="otok registry names or weights paths")
    parser.add_argument("--coders", nargs="+", default=["ctx", "zstd", "raw"])
    parser.add_argument("--crf", default=DEFAULT_CRFS, help="comma-separated CRF sweep for x264 and x265")
    parser.add_argument("--rdo", default=DEFAULT_RDOS,
                        help="comma-separated rate-distortion tolerances for otok token models (KL: 0 only)")
    parser.add_argument("--codecs", nargs="+", default=list(ENCODERS), choices=list(ENCODERS))
    parser.add_argument("--x264-preset", default=DEFAULT_PRESETS["x264"])
    parser.add_argument("--x265-preset", default=DEFAULT_PRESETS["x265"])
    parser.add_argument("--threads", type=int, default=1, help="encoder threads (1: bytes independent of the machine)")
    parser.add_argument("--count-info-sei", action="store_true",
                        help="count x264/x265's informational SEI (version and options text) in their bytes")
    parser.add_argument("--replot", type=Path, metavar="CSV",
                        help="no encoding: redraw rd.png and the summary from an rd.csv written before")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.replot:
        return args, [], []
    if not args.clips:
        parser.error("--clips is required (or --replot CSV)")
    try:
        crfs = [int(c) for c in args.crf.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--crf must be comma-separated integers, got {args.crf!r}")
    try:
        rdos = [float(t) for t in args.rdo.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--rdo must be comma-separated numbers, got {args.rdo!r}")
    if not rdos or any(not np.isfinite(t) or t < 0 for t in rdos):
        parser.error(f"--rdo must list numbers >= 0, got {args.rdo!r}")
    for clip in args.clips:
        if not clip.is_file():
            parser.error(f"{clip}: no such file")
    return args, crfs, rdos


def sweep(args: argparse.Namespace, toks: dict, crfs: list[int], rdos: list[float], presets: dict[str, str]) -> Sweep:
    """Every clip through x264/x265 at each CRF and through each otok model, coder and tolerance."""
    from otok.tools.evaluation.evaluate import eval_file

    result = Sweep()
    for clip in args.clips:
        max_side = args.max_side or max_side_for(clip, args.short_side)
        frames, fps = read_clip(clip, max_side, args.frames)
        if not frames:
            raise OtokError(f"{clip}: no frames")
        name = clip.name
        result.clips.append(name)
        h, w = frames[0].shape[:2]
        print(f"{name}: {len(frames)} frame(s) {w}x{h} @ {float(fps):g} fps, {pixel_format(w, h)} for x264/x265",
              file=sys.stderr, flush=True)
        for codec in args.codecs:
            for crf in crfs:
                tick = time.perf_counter()
                coded = encode_conventional(frames, fps, codec, crf, presets[codec], threads=args.threads,
                                            count_info_sei=args.count_info_sei)
                result.encoder_info.setdefault(codec, coded.info)
                result.info_sizes.setdefault(codec, []).append(coded.info_bytes)
                p = measure(name, codec, f"crf={crf}", frames, coded.decoded, coded.bytes, fps)
                result.points.append(p)
                print(f"  {codec} crf {crf:>2}: {p.bytes:>8} B {p.bpp:.4f} bpp {p.psnr:6.2f} dB "
                      f"({time.perf_counter() - tick:.1f} s)", file=sys.stderr, flush=True)
        for model, tok in toks.items():
            for coder in args.coders if tok.config.discrete else ["f16z"]:
                for tau in rdos if tok.config.discrete else [0.0]:
                    tick = time.perf_counter()
                    r = eval_file(clip, tokenizer=tok, coder=coder, max_side=max_side, frames=args.frames, rdo=tau)
                    p = Point(name, f"{model}:{r.coder}", f"rdo={tau:g}", r.frames, r.width, r.height, r.bytes,
                              r.bpp, 8 * r.bytes / (r.frames / float(fps)) / 1000, r.psnr, r.ssim)
                    result.points.append(p)
                    print(f"  {p.codec} {p.param}: {p.bytes:>8} B {p.bpp:.4f} bpp {p.psnr:6.2f} dB "
                          f"({time.perf_counter() - tick:.1f} s)", file=sys.stderr, flush=True)
    return result


def write_outputs(args: argparse.Namespace, meta: dict, run: Sweep, models: list[str], presets: dict[str, str]) -> None:
    """rd.csv (with its provenance as # lines), rd.png and summary.txt in args.out."""
    for codec, info in run.encoder_info.items():
        meta[f"{codec} version"] = encoder_version(info)
    sei = ", ".join(f"{c} {min(v)}–{max(v)} B" for c, v in run.info_sizes.items())
    notes = [
        "x264/x265 bytes: the raw Annex-B elementary stream, parameter sets included, no container; the "
        "encoders' informational SEI (version/options text, not needed to decode) "
        + ("counted" if args.count_info_sei else "left out") + (f" ({sei} per stream)" if sei else "")
        + ". otok bytes: the whole .otok file (header, index, trailer).",
        "psnr: mean over frames of per-frame RGB PSNR (peak 255); ssim: mean per-frame SSIM (tools/evaluation/metrics.py); "
        "bpp = 8*bytes/(frames*width*height).",
        f"x264 preset {presets['x264']}, x265 preset {presets['x265']}, threads {args.threads}; "
        "RGB -> yuv420p (even sizes) or yuv444p (odd) with swscale defaults.",
    ]
    csv_path = args.out / "rd.csv"
    with open(csv_path, "w", newline="") as f:
        for key, value in meta.items():
            f.write(f"# {key}: {value}\n")
        for codec, info in run.encoder_info.items():
            f.write(f"# {codec} SEI: {info}\n")
        for note in notes:
            f.write(f"# {note}\n")
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for p in run.points:
            row = asdict(p)
            row.update(bpp=f"{p.bpp:.6f}", kbps=f"{p.kbps:.3f}", psnr=f"{p.psnr:.4f}", ssim=f"{p.ssim:.5f}")
            writer.writerow(row)
    png_path = args.out / "rd.png"
    plot(run.points, run.clips, png_path, title(presets, args.max_side, args.short_side, args.frames), presets)
    head = [f"{k}: {v}" for k, v in meta.items()] + notes
    text = "\n".join(head) + "\n\n" + summarize(run.points, models, run.clips) + "\n"
    (args.out / "summary.txt").write_text(text)
    print(text)
    print(f"wrote {csv_path}, {png_path}, {args.out / 'summary.txt'}")


def main(argv: list[str] | None = None) -> int:
    args, crfs, rdos = parse_args(argv)
    if args.replot:
        return replot(args.replot, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    from otok.tools.models import load_model

    presets = {"x264": args.x264_preset, "x265": args.x265_preset}
    command = shlex.join([Path(sys.executable).name, *sys.argv]) if argv is None else shlex.join(["rd.py", *argv])
    meta = {"command": command, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            **versions()}
    try:
        toks = {model_label(m): load_model(m) for m in args.models}
        for name, tok in toks.items():
            meta[f"model {name}"] = f"{tok.config.name}, weights sha256 {tok.weights_sha256()[:16]}"
        run = sweep(args, toks, crfs, rdos, presets)
    except OtokError as exc:
        print(f"rd: error: {exc}", file=sys.stderr)
        return 2
    write_outputs(args, meta, run, list(toks), presets)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
