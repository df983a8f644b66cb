"""The `.otok` header: model identity, tokenizer and video geometry, frame rate, coder (SPEC.md, "HEAD")."""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Any

from . import limits
from .coders import coder_by_id, coder_by_name
from .errors import CorruptError, UsageError

# weights_sha256, p, t, gop, K, C, grid_h, grid_w, width, height, padded_w, padded_h, fps_num, fps_den,
# coder_id, name_len, params_len
_FIXED = struct.Struct("<32sHHIIHHHIIIIIIBBH")


@dataclass(frozen=True)
class Header:
    """Everything a reader needs before the first step.

    `grid` is the token grid of one step, (h, w) = (padded_height / patch, padded_width / patch).
    Discrete tokenizers set `codebook_size` (K >= 2) and leave `latent_channels` at 0; KL tokenizers set
    `latent_channels` (C >= 1), leave `codebook_size` at 0 and use the `f16z` coder. `gop` is the segment
    length in steps (0: one segment). `fps` is a rational (numerator, denominator). `coder_params` is the
    coder's parameter object (None: the coder's defaults).
    """

    model: str
    weights_sha256: bytes
    patch: int
    temporal: int
    gop: int
    grid: tuple[int, int]
    width: int
    height: int
    fps: tuple[int, int]
    codebook_size: int = 0
    latent_channels: int = 0
    coder: str = "ctx"
    coder_params: Any = None

    def __post_init__(self) -> None:
        coder = coder_by_name(self.coder)
        object.__setattr__(self, "grid", tuple(int(x) for x in self.grid))
        object.__setattr__(self, "fps", tuple(int(x) for x in self.fps))
        if self.coder_params is None:
            object.__setattr__(self, "coder_params", coder.Params())
        _validate(self, coder)

    @property
    def padded_width(self) -> int:
        return self.grid[1] * self.patch

    @property
    def padded_height(self) -> int:
        return self.grid[0] * self.patch

    @property
    def is_latent(self) -> bool:
        """True for KL latents (float16 values), False for discrete token indices."""
        return self.latent_channels > 0

    @property
    def step_shape(self) -> tuple[int, ...]:
        """Shape of one step: (h, w) for tokens, (C, h, w) for latents."""
        return ((self.latent_channels,) if self.is_latent else ()) + self.grid

    def with_params(self, params: Any) -> Header:
        return dataclasses.replace(self, coder_params=params)

    def pack(self) -> bytes:
        """The HEAD chunk payload (SPEC.md table "HEAD payload")."""
        name = self.model.encode("utf-8")
        params = self.coder_params.pack()
        fixed = _FIXED.pack(
            self.weights_sha256, self.patch, self.temporal, self.gop, self.codebook_size,
            self.latent_channels, self.grid[0], self.grid[1], self.width, self.height,
            self.padded_width, self.padded_height, self.fps[0], self.fps[1],
            coder_by_name(self.coder).coder_id, len(name), len(params),
        )
        return fixed + name + params

    @classmethod
    def unpack(cls, payload: bytes) -> Header:
        """Parse and validate a HEAD payload; raises CorruptError / UnsupportedError."""
        if len(payload) < _FIXED.size:
            raise CorruptError(f"header is {len(payload)} bytes, shorter than its {_FIXED.size} fixed bytes")
        (sha, p, t, gop, k, c, gh, gw, width, height, pw, ph, fn, fd, coder_id, name_len,
         params_len) = _FIXED.unpack_from(payload)
        if len(payload) != _FIXED.size + name_len + params_len:
            raise CorruptError("header length does not match its name and coder-parameter lengths")
        coder = coder_by_id(coder_id)  # raises UnsupportedError
        name_end = _FIXED.size + name_len
        try:
            name = payload[_FIXED.size:name_end].decode("utf-8")
            params = coder.Params.unpack(payload[name_end:])
            header = cls(name, sha, p, t, gop, (gh, gw), width, height, (fn, fd), k, c, coder.name, params)
        except (UsageError, UnicodeDecodeError) as e:
            raise CorruptError(f"invalid header: {e}") from None
        if (pw, ph) != (header.padded_width, header.padded_height):
            raise CorruptError(f"header padded size {pw}x{ph} is not grid {gw}x{gh} times patch {p}")
        return header


def _validate(h: Header, coder: Any) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise UsageError(f"invalid header: {msg}")

    need(isinstance(h.weights_sha256, bytes) and len(h.weights_sha256) == 32, "weights_sha256 must be 32 bytes")
    need(len(h.model.encode("utf-8")) <= limits.MAX_NAME_BYTES, "model name longer than 255 UTF-8 bytes")
    need(1 <= h.patch <= limits.MAX_PATCH and 1 <= h.temporal <= limits.MAX_PATCH, "patch sizes out of range")
    need(0 <= h.gop < 2**32, "gop out of range")
    need(all(1 <= x <= limits.MAX_GRID_SIDE for x in h.grid), f"grid {h.grid} outside 1..{limits.MAX_GRID_SIDE}")
    need(1 <= h.width <= h.padded_width and 1 <= h.height <= h.padded_height,
         f"video {h.width}x{h.height} must fit the padded size {h.padded_width}x{h.padded_height}")
    need(h.padded_width < 2**32 and h.padded_height < 2**32, "padded size out of range")
    need(0 < h.fps[0] < 2**32 and 0 < h.fps[1] < 2**32, "frame rate must be a positive rational")
    need(coder.latent == h.is_latent, f"coder {h.coder!r} does not fit {'latents' if h.is_latent else 'tokens'}")
    if h.is_latent:
        need(h.codebook_size == 0 and h.latent_channels <= limits.MAX_LATENT_CHANNELS, "latent channels out of range")
    else:
        need(2 <= h.codebook_size <= limits.MAX_CODEBOOK, f"codebook size outside 2..{limits.MAX_CODEBOOK}")
    need(isinstance(h.coder_params, coder.Params), f"coder_params must be {coder.__name__}.Params")
    h.coder_params.validate(h)
