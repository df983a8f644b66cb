"""The options of encoding, decoding and evaluating: one frozen object each, validated once when made.

`otok encode/decode/eval` build them from their flags, `otok.encode_file/decode_file/eval_file` from
their keyword arguments (the same names, types and defaults, tested), and everything below takes the
object as it is. A bad value raises `ArgumentError` naming the argument (`rdo`), which the CLI writes as
its flag (`--rdo`). What depends on the model (rdo of a KL model, a coder for latents) is checked where the
model is known (`otok.tools.encode`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

from otok.codec.config import DEFAULT_RDO

from .errors import ArgumentError

BACKENDS = ("torch", "onnx", "trt")
CODERS = ("ctx", "zstd", "raw")  # token coders; a KL model's latents are always stored as f16z
PRECISIONS = ("auto", "fp32", "bf16")
MAX_CRF = {"h264": 51, "h265": 51, "vp9": 63}  # the encoders' own ranges (ffv1 is lossless: no crf)


@dataclass(frozen=True)
class EncodeDefaults:
    """The one set of encoding defaults: `otok encode`, `otok.encode_file` and the tools all read these.

    rdo: the rate-distortion tolerance for token models (`otok.codec.rdo`; KL models use 0); the measured
    trade-off is in docs/BENCHMARKS.md. The `ctx` coder's own parameters are `otok.bitstream.CtxParams()`'s
    defaults, the same for every writer.
    """

    model: str = "otok-s"
    coder: str = "ctx"
    rdo: float = DEFAULT_RDO


DEFAULTS = EncodeDefaults()


@dataclass(frozen=True)
class RunOptions:
    """Which model runs, and where. model: a registry name or weights path (None: the default model, or for
    decoding the release the file names); backend onnx/trt run the engine folder `engine_dir`; precision
    and compile apply to the torch backend (auto: bf16 autocast on CUDA, fp32 on the CPU). tile: code large
    frames in tiles of this many pixels, with the same tokens and pixels as whole frames (`otok.codec.tiling`;
    0: never; None: auto, from the frame size and the free memory)."""

    model: str | os.PathLike | None = None
    device: str = "cpu"
    backend: str = "torch"
    engine_dir: str | os.PathLike | None = None
    precision: str = "auto"
    compile: bool = False
    tile: int | None = None

    def __post_init__(self) -> None:
        _choice("backend", self.backend, BACKENDS)
        if self.tile is not None and (isinstance(self.tile, bool) or not isinstance(self.tile, int) or self.tile < 0):
            raise ArgumentError("tile", f"tile must be a number of pixels >= 0 (0: no tiling), got {self.tile!r}")
        _choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.device, str):
            raise ArgumentError("device", f"device must be a string such as 'cpu' or 'cuda', got {self.device!r}")
        if self.backend != "torch" and self.engine_dir is None:
            raise ArgumentError("engine_dir", f"backend={self.backend!r} needs engine_dir=DIR (a folder made by `otok export`)")
        if self.backend != "torch" and (self.compile or self.precision != "auto"):
            raise ArgumentError("precision", "precision and compile apply to backend='torch' (engines fix theirs at export)")


@dataclass(frozen=True)
class EncodeOptions(RunOptions):
    """How to encode. coder: the entropy coder; gop: segment length in steps (None: the model's); rdo: the
    rate-distortion tolerance (None: `DEFAULTS.rdo` for token models, 0 for KL); max_side: scale frames down
    so the longer side is at most this; frames: code only the first N frames."""

    coder: str = DEFAULTS.coder
    gop: int | None = None
    rdo: float | None = None
    max_side: int | None = None
    frames: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("coder", self.coder, CODERS)
        for name in ("gop", "max_side", "frames"):
            _count(name, getattr(self, name))
        if self.rdo is not None and (isinstance(self.rdo, bool) or not isinstance(self.rdo, (int, float))
                                     or not math.isfinite(self.rdo) or self.rdo < 0):
            raise ArgumentError("rdo", f"rdo must be a number >= 0, got {self.rdo!r}")


@dataclass(frozen=True)
class DecodeOptions(RunOptions):
    """How to write the decoded video. codec: h264, h265, ffv1 or vp9 (None: by the output's suffix);
    crf: the video codec's quality (None: its default)."""

    codec: str | None = None
    crf: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.codec is not None:
            _choice("codec", self.codec, (*MAX_CRF, "ffv1"))
        if self.crf is None:
            return
        if isinstance(self.crf, bool) or not isinstance(self.crf, int):
            raise ArgumentError("crf", f"crf must be a whole number, got {self.crf!r}")
        if self.codec == "ffv1":
            raise ArgumentError("crf", "crf does not apply to codec='ffv1', which is lossless")
        top = MAX_CRF.get(self.codec, max(MAX_CRF.values()))
        if not 0 <= self.crf <= top:
            raise ArgumentError("crf", f"crf must lie in 0-{top}{f' for {self.codec}' if self.codec else ''}, got {self.crf}")


def option_names(kind: type[RunOptions]) -> list[str]:
    """The fields of an options class, in order: the keyword arguments its functions take."""
    return [f.name for f in fields(kind)]


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ArgumentError(name, f"{name}={value!r} is not one of {', '.join(allowed)}")


def _count(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(name, f"{name} must be a whole number, got {value!r}")
    if value < 1:
        raise ArgumentError(name, f"{name} must be positive, got {value}")
