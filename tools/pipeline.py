"""The work behind the CLI, callable from Python: `encode_file`, `decode_file`, `eval_file`, `file_info`.

Everything streams: frames are read, coded and written one group at a time, so memory stays flat for a
video of any length. Outputs are written under a temporary name in the destination folder and renamed
when complete, so a failure never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from otok.bitstream import CorruptError, CtxParams, Header, OtokError, OtokReader, OtokWarning, OtokWriter, Prior, read_header
from otok.bitstream.container import ENCD
from otok.bitstream.timeline import frames_in_steps
from otok.codec import Tokenizer, WeightsError, list_models, load
from otok.codec.accelerate import accelerate as codec_accelerate

from .defaults import DEFAULTS
from .errors import ArgumentError, InputError, MediaError, ModelError, printable
from .metrics import VideoQuality, psnr, side_by_side, ssim
from .metrics import _finite_mean as finite_mean  # the one mean of PSNRs that skips exact (infinite) frames
from .video_io import VideoInfo, VideoReader, VideoWriter, check_video_suffix, frames_to_video, video_to_frames

ENGINE_PRIOR = "model.prior"  # an engine folder carries its model's prior table under this name


DEFAULT_MODEL = DEFAULTS.model
DEFAULT_RDO = DEFAULTS.rdo

Progress = Callable[[int], None]  # called with the number of frames just finished


@dataclass
class EncodeResult:
    path: Path
    frames: int
    steps: int
    width: int
    height: int
    fps: Fraction
    bytes: int
    seconds: float


@dataclass
class DecodeResult:
    path: Path
    frames: int
    width: int
    height: int
    seconds: float
    damage: str | None = None  # where a truncated or damaged file stopped
    untrusted: str | None = None  # why the frame count was inferred (no valid trailer and index), if it was


# ----- models -------------------------------------------------------------------------------------------
def load_model(
    spec: str | os.PathLike | None = None, device: str = "cpu", backend: str = "torch",
    engine_dir: str | os.PathLike | None = None, precision: str = "auto", compile: bool = False,
    weights_sha256: str | None = None,
) -> Tokenizer:
    """A tokenizer from a registry name or weights path (backend torch), or an exported engine folder
    (backend onnx/trt; `spec`, when given, must be the weights it was exported from). weights_sha256: the
    release of a registry model's shipped weights a file names (`otok.codec.load`). User errors raise
    ModelError or ArgumentError."""
    check_device(device)
    if backend != "torch":
        return _load_engine(spec, device, backend, engine_dir)
    try:
        tok = load(spec or DEFAULT_MODEL, device=device, weights_sha256=weights_sha256)
    except WeightsError as exc:
        raise ModelError(str(exc)) from None
    return accelerate(tok, precision, compile)


def check_device(device: str) -> None:
    """A device PyTorch can use: `cpu`, or `cuda`/`cuda:N` with that GPU present (ArgumentError)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ArgumentError("device", f"device={device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError("device", f"device={device!r} was asked for, but PyTorch sees no CUDA device")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ArgumentError("device", f"device={device!r}: PyTorch sees {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index is not None):
        raise ArgumentError("device", f"device={device!r} is not one otok runs on; use cpu, cuda or cuda:N")


def _load_engine(spec, device: str, backend: str, engine_dir) -> Tokenizer:
    from otok.export import EngineError, load_engine

    if engine_dir is None:
        raise ArgumentError("engine_dir", f"backend={backend!r} needs engine_dir=DIR (a folder made by `otok export`)")
    try:
        expect = load(spec, device="cpu").weights_sha256() if spec else None
        return load_engine(engine_dir, backend, device, expect_sha256=expect, expect_source=f"model={spec}")
    except (EngineError, WeightsError) as exc:
        raise ModelError(str(exc)) from None
    except ImportError as exc:
        extra = "onnx" if backend == "onnx" else "gpu"
        raise ModelError(f"backend={backend!r} needs {exc.name or 'its runtime'}: pip install 'otok-codec[{extra}]'") from None


def accelerate(tok: Tokenizer, precision: str = "auto", compile: bool = False) -> Tokenizer:
    """`otok.codec.accelerate`, its bad `precision` an ArgumentError."""
    try:
        return codec_accelerate(tok, precision, compile)
    except ValueError as exc:
        raise ArgumentError("precision", str(exc)) from None


def model_for_file(
    header: Header, spec: str | os.PathLike | None, device: str, backend: str, tokenizer: Tokenizer | None = None,
    engine_dir: str | os.PathLike | None = None, precision: str = "auto", compile: bool = False,
) -> Tokenizer:
    """The model that wrote `header`: `tokenizer` or `spec` if given, else the registry model it names (or
    the engine in `engine_dir`); its weights hash must match the header's. precision, compile: as for
    `load_model` (a loaded model's)."""
    if tokenizer is None and backend != "torch":
        tokenizer = _load_engine(spec, device, backend, engine_dir)
    wanted = header.weights_sha256.hex()
    try:
        # A file selects among the models this installation ships, by name; what it names is never opened as a path.
        unknown = tokenizer is None and not spec and header.model not in list_models()
        tok = None if unknown else tokenizer or load_model(
            spec or header.model, device, backend, precision=precision, compile=compile,
            weights_sha256=None if spec else wanted)
    except ModelError:
        if spec or tokenizer:
            raise
        tok = None  # a model name this installation does not know, or one without shipped weights
    if tok is not None and tok.weights_sha256() == wanted:
        check_geometry(header, tok)
    if tok is None or tok.weights_sha256() != wanted:
        source = ("none is installed" if tok is None else
                  f"the engine in {engine_dir} has {tok.weights_sha256()[:12]}" if backend != "torch" else
                  f"the given tokenizer has {tok.weights_sha256()[:12]}" if tokenizer else
                  f"model={spec} has {tok.weights_sha256()[:12]}" if spec else
                  f"the installed '{printable(header.model)}' releases have other weights")
        raise ArgumentError(
            "model", f"the file was made with {printable(header.model)} weights {wanted[:12]}, but {source}; pass the "
            "weights file that made it, model=PATH" + (" (and export an engine from it)" if backend != "torch" else "")
        )
    return tok


MAX_FRAME_PIXELS = 1 << 26  # 8192 x 8192 padded pixels a frame: 8K UHD (33 Mpx) fits, twice over


def check_frame_size(width: int, height: int, what: str, error: type[OtokError] = MediaError) -> None:
    """Refuse frames over MAX_FRAME_PIXELS before anything is allocated for them (one line)."""
    if width * height > MAX_FRAME_PIXELS:
        message = f"{what} has frames of {width}x{height}, over otok's limit of {MAX_FRAME_PIXELS:,} pixels (8192x8192)"
        if error is ArgumentError:
            raise ArgumentError("max_side", message + "; scale them down, e.g. max_side=4096")
        raise error(message)


# Peak memory of coding one frame on the CPU, measured with otok-s (docs: issue 20): about 0.43 GB at
# start-up plus 870 bytes a pixel (0.75 MP: 1.1 GB, 3 MP: 3.0 GB, 12 MP: 10.6 GB).
BYTES_PER_PIXEL = 900
BASE_BYTES = 1 << 29


def check_memory(width: int, height: int, device: object, what: str, error: type[OtokError] = MediaError) -> None:
    """Refuse frames whose coding on the CPU would need more memory than this process can have (the free
    memory, a cgroup's or `ulimit -v`'s limit), in one line naming both, before anything is allocated."""
    if getattr(device, "type", str(device)) != "cpu":
        return
    need, have = BASE_BYTES + BYTES_PER_PIXEL * width * height, available_memory()
    if have is None or need <= have:
        return
    message = (f"{what} has frames of {width}x{height} once padded, which need about {need / 1e9:.1f} GB to code, "
               f"more than the {have / 1e9:.1f} GB this process can have")
    if error is ArgumentError:
        side = max(1, int(max(width, height) * math.sqrt(max(have - BASE_BYTES, 0) / (need - BASE_BYTES))))
        raise ArgumentError("max_side", f"{message}; scale them down, e.g. max_side={side}")
    raise error(message)


def available_memory() -> int | None:
    """Bytes this process may still allocate: the least of MemAvailable, a cgroup v2 limit's headroom and
    RLIMIT_AS's headroom; None when none of them can be read."""
    import resource

    limits: list[int] = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        meminfo = Path("/proc/meminfo").read_text()
        limits.append(int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cap != "max":
            limits.append(int(cap) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        with contextlib.suppress(OSError, ValueError, IndexError):
            vm = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
            limits.append(soft - vm)
    return max(min(limits), 0) if limits else None


def check_geometry(header: Header, tok: Tokenizer) -> None:
    """The file's tokenizer geometry must be the model's (a header naming these weights but another patch,
    tubelet, codebook, latent kind or grid is damaged or forged): CorruptError, before any decoding."""
    c = tok.config
    m = c.pad_multiple
    grid = (-(-header.height // m) * m // c.patch, -(-header.width // m) * m // c.patch)
    channels = 0 if c.discrete else tok.quantizer.code_dim
    for name, got, want in (("patch", header.patch, c.patch), ("temporal patch", header.temporal, c.tubelet),
                            ("codebook size", header.codebook_size, c.codebook_size if c.discrete else 0),
                            ("latent channels", header.latent_channels, channels),
                            ("token grid", header.grid, grid)):
        if got != want:
            raise CorruptError(f"the header gives {name} {got}, but {c.name}, whose weights it names, has {want} "
                               f"(for {header.width}x{header.height} frames): the header is damaged or forged")
    check_frame_size(header.padded_width, header.padded_height, "the file", CorruptError)


def _prior_path(tok: Tokenizer) -> Path | None:
    """Where the model's current prior table lies: NAME.prior beside its weights, or its engine folder's
    model.prior. Tables of its earlier releases lie beside it as NAME.<hash>.prior (see model_priors)."""
    path, engine_dir = getattr(tok, "weights_path", None), getattr(tok, "engine_dir", None)
    return (path.with_suffix(".prior") if path is not None
            else Path(engine_dir) / ENGINE_PRIOR if engine_dir is not None else None)


def _load_prior(path: Path) -> Prior:
    try:
        return Prior.load(path)
    except OtokError as exc:
        raise ModelError(f"{path}: {exc}") from None


def model_prior(tok: Tokenizer) -> Prior | None:
    """The ctx coder's prior table that new files reference: the one that ships beside the model's weights
    (NAME.prior) or in its engine folder, if any."""
    path = _prior_path(tok)
    return _load_prior(path) if path is not None and path.is_file() else None


def model_priors(tok: Tokenizer) -> list[Prior]:
    """Every prior table a file of this model may reference: the current one, then those kept from
    earlier releases of the model (NAME.<hash>.prior), so that older files still decode. An earlier table
    that does not load is left out with a warning (only files that reference it need it)."""
    path = _prior_path(tok)
    if path is None:
        return []
    priors = [_load_prior(path)] if path.is_file() else []
    # Earlier tables beside the weights: of this file (STEM.<hash>.prior) and of the model's other
    # releases kept in the same folder (NAME.<hash>.prior); a file names the one it needs by its hash.
    legacies = {*path.parent.glob(f"{path.stem}.*.prior"), *path.parent.glob(f"{tok.config.name}.*.prior")}
    for legacy in sorted(legacies - {path}):
        try:
            priors.append(Prior.load(legacy))
        except OtokError as exc:
            warnings.warn(f"{legacy}: {exc}; files that reference it cannot be decoded", stacklevel=2)
    return priors


def legacy_prior_name(stem: str, prior: Prior) -> str:
    """The file name under which a model keeps a prior table it no longer writes."""
    return f"{stem}.{prior.sha256.hex()[:16]}.prior"


def export_engine(spec: str | os.PathLike | None, out_dir: Path, opset: int = 17) -> dict:
    """`otok export onnx`: the four step graphs, their manifest, and the model's prior tables (the current
    one and any kept from earlier releases)."""
    from otok.export import export_onnx

    tok = load_model(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = export_onnx(tok, out_dir, opset=opset)
    current = model_prior(tok)
    for prior in model_priors(tok):
        name = ENGINE_PRIOR if prior == current else legacy_prior_name(Path(ENGINE_PRIOR).stem, prior)
        prior.save(out_dir / name)
    return manifest


# ----- frames <-> tensors -------------------------------------------------------------------------------
def groups(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ----- files --------------------------------------------------------------------------------------------
def check_output(dst: Path, sources: Iterable[Path] = ()) -> None:
    """An output file name that can be written: not a folder, not an input. Missing folders are made when
    the output is written (`atomic_output`)."""
    if dst.is_dir():
        raise InputError(f"{dst} is a folder; give a file name")
    for parent in dst.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"cannot write {dst}: {parent} is a file, not a folder")
            break
    for src in sources:
        if dst.exists() and src.exists() and os.path.samefile(src, dst):
            raise InputError(f"output {dst} is the input file; choose another name")
    if dst.exists() and not dst.is_file():  # /dev/null, a FIFO: never replaced by a regular file
        raise InputError(f"{dst} is not a regular file (a device or FIFO); otok writes its outputs as files")


@contextlib.contextmanager
def atomic_output(dst: Path) -> Iterator[Path]:
    """Yield a temporary path beside `dst`; rename it to `dst` on success, delete it on any failure."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    stem = dst.name.encode()[:160].decode("utf-8", "ignore")  # the temporary name fits where `dst`'s does
    remove_stale_partials(dst.parent, stem)
    tmp = dst.with_name(f".{stem}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def is_stream(src: Path) -> bool:
    """True for an input that can be read only once: a pipe, a FIFO, /dev/stdin (anything not a regular file)."""
    try:
        return not stat.S_ISREG(os.stat(src).st_mode)
    except OSError:
        return False


def check_seekable(src: Path, why: str) -> None:
    if is_stream(src):
        raise InputError(f"{src}: {why}, so the input must be a seekable file, not a pipe or FIFO")


def remove_stale_partials(folder: Path, stem: str) -> None:
    """Delete `.STEM.PID.partial` files that a killed otok left (its PID no longer runs)."""
    for path in folder.glob(f".{glob_escape(stem)}.*.partial"):
        pid = path.name[len(stem) + 2:-len(".partial")]
        if pid.isdigit() and not _running(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


def check_input(src: Path) -> None:
    if not src.exists():
        raise InputError(f"{src}: no such file")
    if src.is_dir():
        raise InputError(f"{src}: is a folder, not a file")
    if not os.access(src, os.R_OK):
        raise InputError(f"{src}: permission denied")


def open_video(src: Path, max_side: int | None = None, frames: int | None = None) -> VideoReader:
    return VideoReader(src, max_side=max_side, max_frames=frames)


@contextlib.contextmanager
def damage_reported_by_caller() -> Iterator[None]:
    """Silence the reader's OtokWarning: where a file stops early, `reader.damage` says why and the caller
    reports it once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OtokWarning)
        yield


def open_otok(src: Path, tok: Tokenizer | None = None) -> OtokReader:
    """A reader; `tok` supplies the prior table that a ctx file may reference without embedding."""
    check_input(src)
    try:
        return OtokReader(src, prior=model_priors(tok) if tok is not None else None)
    except OtokError as exc:
        raise type(exc)(f"{src}: {exc}") from None


def header_of(src: Path) -> Header:
    check_input(src)
    try:
        return read_header(src)
    except OtokError as exc:
        raise type(exc)(f"{src}: {exc}") from None


def make_header(tok: Tokenizer, width: int, height: int, fps: Fraction, coder: str, gop: int) -> Header:
    c = tok.config
    if not c.discrete and coder != "f16z":
        coder = "f16z"  # KL latents are stored as fp16 + zstd, whatever token coder was asked for
    if c.discrete and coder == "f16z":
        raise ArgumentError("coder", "coder='f16z' stores KL latents; this model makes tokens (use ctx, zstd or raw)")
    fps = Fraction(fps).limit_denominator(1 << 20) if fps > 0 else Fraction(25)
    params = CtxParams() if coder == "ctx" else None
    return Header(
        model=c.name, weights_sha256=bytes.fromhex(tok.weights_sha256()), patch=c.patch, temporal=c.tubelet,
        gop=gop, grid=tok.grid_size(height, width), width=width, height=height,
        fps=(fps.numerator, fps.denominator), codebook_size=c.codebook_size if c.discrete else 0,
        latent_channels=0 if c.discrete else tok.quantizer.code_dim, coder=coder, coder_params=params,
    )


def _grid_to_numpy(grid: torch.Tensor) -> np.ndarray:
    return grid[0].cpu().numpy()


# ----- encode -------------------------------------------------------------------------------------------
def rdo_for(tok: Tokenizer, rdo: float | None) -> float:
    """The rate-distortion tolerance to encode with: `rdo`, or the default for the model's kind. An engine
    folder exported before rdo existed has no code table: a one-line error that says what to do."""
    if rdo is None:
        rdo = DEFAULTS.rdo if tok.config.discrete else 0.0
    if not math.isfinite(rdo) or rdo < 0:
        raise ArgumentError("rdo", f"rdo must be a number >= 0, got {rdo}")
    if rdo and not tok.config.discrete:
        raise ArgumentError("rdo", f"rdo applies to token models; {tok.config.name} codes continuous latents")
    if rdo and getattr(tok, "engine_dir", None) is not None:  # an engine needs its exported code table
        from otok.export import EngineError

        try:
            tok.codes_from_indices(torch.zeros(1, dtype=torch.long))
        except EngineError as exc:
            raise ModelError(str(exc)) from None
    return rdo + 0.0  # -0.0 -> 0.0


def encode_file(
    src: str | os.PathLike, dst: str | os.PathLike, *, model: str | os.PathLike | None = None,
    coder: str = DEFAULTS.coder, gop: int | None = None, max_side: int | None = None, frames: int | None = None,
    device: str = "cpu", backend: str = "torch", engine_dir: str | os.PathLike | None = None,
    progress: Progress | None = None, tokenizer: Tokenizer | None = None, rdo: float | None = None,
) -> EncodeResult:
    """Encode a video or image file into an `.otok` file, streaming.

    model: a registry name or weights path (default `DEFAULTS.model`), or pass a loaded `tokenizer`.
    gop: segment length in steps (default: the model's). rdo: the rate-distortion tolerance
    (`otok.codec.rdo`); None: `DEFAULTS.rdo` for token models, 0 for KL. Errors: the OtokError family.
    """
    src, dst = Path(src), Path(dst)
    check_input(src)
    check_output(dst, [src])
    tok = tokenizer or load_model(model, device, backend, engine_dir)
    with open_video(src, max_side, frames) as reader:
        return encode_frames(reader, reader.info, dst, tok, coder=coder, gop=gop, rdo=rdo, progress=progress,
                             name=str(src))


def encode_frames(
    frames: Iterable[np.ndarray], info: VideoInfo, dst: Path, tok: Tokenizer, *, coder: str = DEFAULTS.coder,
    gop: int | None = None, rdo: float | None = None, progress: Progress | None = None, name: str = "the input",
) -> EncodeResult:
    """What `encode_file` writes, from frames already read: (H, W, 3) uint8 of `info`'s size and rate (a
    VideoReader, or a clip of one). name: the input, in messages."""
    gop = tok.config.gop if gop is None else gop
    if gop < 1:
        raise ArgumentError("gop", f"gop must be at least 1 step, got {gop}")
    rdo = rdo_for(tok, rdo)
    start = time.perf_counter()
    with atomic_output(dst) as tmp:
        check_frame_size(info.width, info.height, name, ArgumentError)
        header = make_header(tok, info.width, info.height, info.fps, coder, gop)
        check_memory(header.padded_width, header.padded_height, tok.device, name, ArgumentError)
        stream = tok.stream_encoder(1, info.height, info.width, gop, rdo=rdo)
        count = 0
        # A prior that ships with the model is referenced by its hash, not embedded: the decoder has it too.
        prior = model_prior(tok) if coder == "ctx" else None
        with OtokWriter(tmp, header, prior=prior, embed_prior=False) as writer, torch.inference_mode():
            # 24 bytes with framing: what a reader of the tokens needs to know (nearest codes or not)
            writer.write_ancillary(ENCD, json.dumps({"rdo": rdo}, separators=(",", ":")).encode())
            for batch in groups(frames, tok.config.tubelet):
                for grid in stream.push(frames_to_video(batch, tok.device)):
                    writer.write(_grid_to_numpy(grid))
                count += len(batch)
                if progress:
                    progress(len(batch))
            if count == 0:
                raise MediaError(f"{name}: has no frames")
            for grid in stream.flush():
                writer.write(_grid_to_numpy(grid))
            writer.close(frames=count)
            steps = writer.steps
        size = tmp.stat().st_size
    fps = Fraction(*header.fps)
    return EncodeResult(dst, count, steps, info.width, info.height, fps, size, time.perf_counter() - start)


# ----- decode -------------------------------------------------------------------------------------------
def decode_file(
    src: str | os.PathLike, dst: str | os.PathLike, *, model: str | os.PathLike | None = None,
    device: str = "cpu", backend: str = "torch", codec: str | None = None, crf: int | None = None,
    progress: Progress | None = None, tokenizer: Tokenizer | None = None, engine_dir: str | os.PathLike | None = None,
    precision: str = "auto", compile: bool = False,
) -> DecodeResult:
    """Decode an `.otok` file to a video (or, for one frame, an image) of the source's size and rate. The
    file is opened once, so a pipe or FIFO works too (the format streams).

    model: the weights that made the file when they are not installed (default: the release it names).
    precision, compile: as for `load_model`.
    """
    src, dst = Path(src), Path(dst)
    check_output(dst, [src])
    check_video_suffix(dst)
    start = time.perf_counter()
    with contextlib.closing(open_otok(src)) as reader:
        header = reader.header
        try:
            tok = model_for_file(header, model, device, backend, tokenizer, engine_dir, precision, compile)
        except CorruptError as exc:  # a forged geometry
            raise type(exc)(f"{src}: {exc}" if not str(exc).startswith(str(src)) else str(exc)) from None
        check_memory(header.padded_width, header.padded_height, tok.device, str(src))
        reader.use_priors(model_priors(tok))
        if dst.suffix.lower() in (".png", ".jpg", ".jpeg") and reader.seekable and reader.frames != 1:
            raise InputError(f"{src} holds {reader.frames} frames; an image output holds one (write .mp4, .mkv, ...)")
        written = 0
        try:
            with atomic_output(dst) as tmp:
                writer = VideoWriter(tmp, header.width, header.height, Fraction(*header.fps), codec, crf,
                                     suffix=dst.suffix)
                for frame in decoded_frames(reader, tok):
                    writer.write(frame)
                    written += 1
                    if progress:
                        progress(1)
                if written == 0:
                    raise CorruptError(f"{src}: the file holds no intact step to decode")
                writer.close()
        except OtokError as exc:
            raise type(exc)(f"{src}: {exc}" if not str(exc).startswith(str(src)) else str(exc)) from None
        damage = reader.damage
        untrusted = None if reader.frames_trusted else (
            f"{src}: no valid trailer and index, so the frame count is untrusted; wrote {written} frames, "
            + ("the intact steps less the padding the damaged trailer names"
               if written < frames_in_steps(reader.steps, header.gop, header.temporal)
               else f"all the intact steps hold (up to {header.temporal - 1} of them may be the last step's padding)"))
    return DecodeResult(dst, written, header.width, header.height, time.perf_counter() - start, damage, untrusted)


def decoded_frames(reader: OtokReader, tok: Tokenizer, timer: list[float] | None = None,
                   on_grid: Callable[[np.ndarray], None] | None = None) -> Iterator[np.ndarray]:
    """The frames of an open `.otok` file, decoded one step at a time: (H, W, 3) uint8 each, as many as the
    file holds (a padded last group's extra frames dropped), up to its last intact step (`reader.damage`
    then says where it stopped). timer: seconds spent in the model are added to timer[0]. on_grid: called
    with each step's grid before it is decoded."""
    header = reader.header
    stream = tok.stream_decoder(1, header.height, header.width, header.gop)  # gop 0: one segment
    # A pipe gives its frame count only in the trailer at its end: each step's frames wait for the next
    # step (or the end), so that the last step's padding can be dropped.
    total, done, held = (reader.frames if reader.seekable else None), 0, []
    with torch.inference_mode(), damage_reported_by_caller():
        for grid in reader:
            if total is not None and done >= total:
                return
            if on_grid is not None:
                on_grid(grid)
            tick = time.perf_counter()
            frames = video_to_frames(stream.push(torch.from_numpy(grid.astype(_grid_dtype(grid)))[None]))
            if timer is not None:
                timer[0] += time.perf_counter() - tick
            if total is None:
                yield from held
                done, held = done + len(held), list(frames)
                continue
            for frame in frames[: total - done]:
                done += 1
                yield frame
        if total is None:
            yield from held[: max(0, reader.frames - done)]


def _grid_dtype(grid: np.ndarray) -> type:
    return np.int64 if np.issubdtype(grid.dtype, np.integer) else np.float32


# ----- info ---------------------------------------------------------------------------------------------
def file_info(src: str | os.PathLike) -> dict:
    """The `otok info --json` record of an `.otok` file."""
    src = Path(src)
    with contextlib.closing(open_otok(src)) as reader:
        h = reader.header
        try:
            index = reader.index
        except OtokError as exc:
            raise type(exc)(f"{src}: {exc}") from None
        steps, frames = reader.steps, reader.frames
        size = src.stat().st_size
        fps = Fraction(*h.fps)
        tokens = steps * h.grid[0] * h.grid[1]
        try:
            coded = reader.coded_bytes
        except OtokError:  # a damaged chunk: the rest of the record still holds
            coded = None
        return {
            "file": str(src),
            "model": h.model,
            "weights_sha256": h.weights_sha256.hex(),
            "codebook_size": h.codebook_size or None,
            "latent_channels": h.latent_channels or None,
            "patch": h.patch,
            "temporal_patch": h.temporal,
            "gop": h.gop,
            "grid": list(h.grid),
            "width": h.width,
            "height": h.height,
            "padded_width": h.padded_width,
            "padded_height": h.padded_height,
            "frames": frames,
            "fps": f"{fps.numerator}/{fps.denominator}",
            "fps_float": float(fps),
            "steps": steps,
            "segments": sum(1 for e in index if e.keyframe),
            "coder": h.coder,
            "format_version": reader.format_version,
            "literal_model": h.coder_params.literal_model if h.coder == "ctx" else None,
            "bytes": size,
            "bits_per_token": 8 * size / tokens if tokens else None,
            "coded_bytes": coded,
            "coded_bits_per_token": 8 * coded / tokens if tokens and coded is not None else None,
            "bpp": 8 * size / (frames * h.width * h.height) if frames else None,
            "duration_s": frames / float(fps),
            "complete": reader.complete,
            "encoder_settings": encoder_settings(reader),
        }


def coded_suffix(coded_bits_per_token: float | None, width: int = 0) -> str:
    """" (X coded)" after a whole file's bits/token, or "" when the coded steps could not be measured."""
    return "" if coded_bits_per_token is None else f" ({coded_bits_per_token:{width}.3f} coded)"


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def encoder_settings(reader: OtokReader) -> dict | None:
    """The `encd` chunk's settings (SPEC §2.3), or None: not there (written by another tool or before it
    existed) or not a JSON object (NaN and Infinity are not JSON)."""
    payload = reader.ancillary.get(ENCD)
    try:
        settings = json.loads(payload.decode("utf-8"), parse_constant=_not_json) if payload is not None else None
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        return None
    return settings if isinstance(settings, dict) else None


# ----- eval ---------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    frames: int
    width: int
    height: int
    bytes: int
    psnr: float
    ssim: float
    bpp: float
    bits_per_token: float | None  # the whole file
    coded_bits_per_token: float | None  # the coder's data only (OtokReader.coded_bytes), without the container
    encode_fps: float
    decode_fps: float
    coder: str
    model: str
    psnr_per_frame: list[float] = field(default_factory=list)
    ssim_per_frame: list[float] = field(default_factory=list)
    code_counts: np.ndarray | None = None  # how often each codebook entry was used (None for latents)
    rdo: float = 0.0  # the rate-distortion tolerance the tokens were chosen with
    quality: dict = field(default_factory=dict)  # `metrics.VideoQuality.result()`: seams, judder, colour, ...
    compare: list[Path] = field(default_factory=list)  # side-by-side PNGs written for `compare`


def eval_file(
    src: str | os.PathLike, *, model: str | os.PathLike | None = None, coder: str = DEFAULTS.coder,
    gop: int | None = None, max_side: int | None = None, frames: int | None = None, device: str = "cpu",
    backend: str = "torch", engine_dir: str | os.PathLike | None = None, progress: Progress | None = None,
    tokenizer: Tokenizer | None = None, rdo: float | None = None, compare: str | os.PathLike | None = None,
) -> EvalResult:
    """Encode `src` to a real `.otok` file (in a temporary folder), decode it, and measure quality and rate.

    compare: a folder (made if missing) for side-by-side PNGs (source | decoded | |error| x4) of the worst
    frame (lowest PSNR) and a typical one (median PSNR); they cost a second decode up to the later of them.
    """
    import tempfile

    src = Path(src)
    check_input(src)
    check_seekable(src, "eval reads it twice (to encode it, then to compare with the decoded frames)")
    compare = Path(compare) if compare is not None else None
    if compare is not None and compare.exists() and not compare.is_dir():
        raise ArgumentError("compare", f"compare={compare}: exists and is not a folder")
    tok = tokenizer or load_model(model, device, backend, engine_dir)
    with tempfile.TemporaryDirectory(prefix="otok-eval-") as tmp:
        coded = Path(tmp) / "eval.otok"
        enc = encode_file(src, coded, coder=coder, gop=gop, max_side=max_side, frames=frames,
                          progress=progress, tokenizer=tok, rdo=rdo)
        info = file_info(coded)
        psnrs, ssims, timer = [], [], [0.0]
        with contextlib.closing(open_otok(coded, tok)) as reader, open_video(src, max_side, frames) as original:
            header = reader.header
            code_counts = None if header.is_latent else np.zeros(header.codebook_size, dtype=np.int64)

            def count(grid: np.ndarray) -> None:
                if code_counts is not None:
                    np.add(code_counts, np.bincount(grid.ravel(), minlength=len(code_counts)), out=code_counts)

            quality = VideoQuality(header.patch, header.temporal, header.gop)
            for reference, frame in zip(original, decoded_frames(reader, tok, timer, count)):
                psnrs.append(psnr(reference, frame))
                ssims.append(ssim(reference, frame))
                quality.add(reference, frame, psnrs[-1])
        written = _write_compare(coded, src, tok, max_side, frames, psnrs, compare) if compare is not None else []
    return EvalResult(
        frames=enc.frames, width=enc.width, height=enc.height, bytes=enc.bytes,
        psnr=finite_mean(psnrs), ssim=float(np.mean(ssims)),
        bpp=info["bpp"], bits_per_token=info["bits_per_token"],
        coded_bits_per_token=info["coded_bits_per_token"], encode_fps=enc.frames / enc.seconds,
        decode_fps=enc.frames / timer[0] if timer[0] else float("inf"), coder=info["coder"],
        model=tok.config.name, psnr_per_frame=psnrs, ssim_per_frame=ssims, code_counts=code_counts,
        rdo=rdo_for(tok, rdo), quality=quality.result(), compare=written,
    )


def compare_frames(psnrs: list[float]) -> dict[str, int]:
    """The frames `eval_file(compare=...)` shows: the worst (lowest PSNR, the first of equals) and a typical
    one (the median PSNR: the lower middle of the sorted frames)."""
    order = sorted(range(len(psnrs)), key=lambda i: (psnrs[i], i))
    return {"worst": order[0], "typical": order[(len(order) - 1) // 2]}


def _write_compare(coded: Path, src: Path, tok: Tokenizer, max_side: int | None, frames: int | None,
                   psnrs: list[float], folder: Path) -> list[Path]:
    """Decode `coded` again up to the frames `compare_frames` picks and write them side by side as
    SRC.worst.frameN.PSNRdB.png and SRC.typical.frameN.PSNRdB.png (N counts from 0; one frame may be both)."""
    wanted = compare_frames(psnrs)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with contextlib.closing(open_otok(coded, tok)) as reader, open_video(src, max_side, frames) as original:
        for index, (reference, frame) in enumerate(zip(original, decoded_frames(reader, tok))):
            for kind, i in wanted.items():
                if i == index:
                    path = folder / f"{src.stem}.{kind}.frame{i}.{psnrs[i]:.2f}dB.png"
                    image = side_by_side(reference, frame)
                    writer = VideoWriter(path, image.shape[1], image.shape[0], Fraction(1))
                    writer.write(image)
                    writer.close()
                    written.append(path)
            if index >= max(wanted.values()):
                break
    return sorted(written, key=lambda p: ("worst" not in p.name, p.name))
