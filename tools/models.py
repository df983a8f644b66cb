"""Which model codes a file: a registry name, weights path or engine folder made into a Tokenizer, the
model that wrote a given `.otok` header, and the prior tables that travel with a model
(`otok.codec.priors` finds them; this module loads them)."""

from __future__ import annotations

import os
import warnings

import torch

from otok.bitstream import CorruptError, Header, OtokError, Prior
from otok.codec import Tokenizer, WeightsError, list_models, load
from otok.codec.accelerate import accelerate as codec_accelerate
from otok.codec.priors import prior_files

from .errors import ArgumentError, ModelError, install_hint, printable
from .limits import check_frame_size
from .options import DEFAULTS


def load_model(
    spec: str | os.PathLike | None = None, device: str = "cpu", backend: str = "torch",
    engine_dir: str | os.PathLike | None = None, precision: str = "auto", compile: bool = False,
    weights_sha256: str | None = None, *, pretrained: bool = True, seed: int | None = None,
) -> Tokenizer:
    """A tokenizer from a registry name or weights path (backend torch), or an exported engine folder
    (backend onnx/trt; `spec`, when given, must be the weights it was exported from). weights_sha256: the
    release of a registry model's shipped weights a file names; pretrained=False: a random init seeded by
    `seed` (`otok.codec.load`). User errors raise ModelError or ArgumentError."""
    check_device(device)
    if backend != "torch":
        return _load_engine(spec, device, backend, engine_dir)
    try:
        tok = load(spec or DEFAULTS.model, device=device, weights_sha256=weights_sha256, pretrained=pretrained, seed=seed)
    except WeightsError as exc:
        if pretrained and str(spec) in list_models() and "no trained weights ship" in str(exc):
            raise ArgumentError("model", f"no trained weights ship for {spec}: train them (train/run.py) and pass "
                                "the file, model=PATH") from None
        raise ModelError(str(exc)) from None
    return accelerate(tok, precision, compile)


def load_for(options) -> Tokenizer:
    """`load_model` with the model, place and precision of an options object (`otok.tools.options.RunOptions`)."""
    o = options
    return load_model(o.model, o.device, o.backend, o.engine_dir, o.precision, o.compile)


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
        raise ModelError(f"backend={backend!r} needs {exc.name or 'its runtime'}: {install_hint(extra)}") from None


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


def _load_prior(path) -> Prior:
    try:
        return Prior.load(path)
    except OtokError as exc:
        raise ModelError(f"{path}: {exc}") from None


def model_prior(tok: Tokenizer) -> Prior | None:
    """The ctx coder's prior table that new files of `tok` reference (`otok.codec.priors`), if one ships."""
    current = prior_files(tok).current
    return _load_prior(current) if current is not None else None


def model_priors(tok: Tokenizer) -> list[Prior]:
    """Every prior table a file of this model may reference: the current one, then those kept from its
    earlier releases, so that older files still decode. An earlier table that does not load is left out
    with a warning (only files that reference it need it)."""
    files = prior_files(tok)
    priors = [_load_prior(files.current)] if files.current is not None else []
    for earlier in files.earlier:
        try:
            priors.append(Prior.load(earlier))
        except OtokError as exc:
            warnings.warn(f"{earlier}: {exc}; files that reference it cannot be decoded", stacklevel=2)
    return priors
