"""Exported engines behind the PyTorch tokenizer's streaming interface.

    from otok.export import load_engine
    tok = load_engine("engines/otok-s", backend="onnx")          # or backend="trt", device="cuda"
    enc = tok.stream_encoder(batch=1, height=H, width=W)
    grids = enc.push(frames) + enc.flush()                       # (B, h, w) int64 grids, as in PyTorch
    dec = tok.stream_decoder(batch=1, height=H, width=W)
    video = dec.push(grids[0])                                   # (B, 3, 1, H, W)

`EngineTokenizer` is a duck-typed stand-in for `otok.codec.Tokenizer` (config, weights_sha256, grid_size,
device, quantizer.code_dim, stream_encoder/stream_decoder, encode/decode); the streams subclass
`codec.streaming`'s, so frame buffering, padding, segments and input checks are the PyTorch ones. A
backend only runs graphs: `runner.run(graph, {input name: tensor}) -> {output name: tensor}`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Protocol

import torch
from torch import Tensor

from otok.bitstream.errors import OtokError
from otok.codec import StreamDecoder, StreamEncoder, Tokenizer, TokenizerConfig
from otok.codec.quantizers import build_quantizer
from otok.codec.rdo import choose_tokens
from otok.codec.tiling import Tiles, engine_crops

from .onnx_export import CODES, GRAPHS, MANIFEST
from .wrappers import STATE_IN, STATE_OUT, TOKEN_DTYPE


class EngineError(OtokError, RuntimeError):
    """An engine folder that is missing, incomplete, or does not match the weights it is used with (an
    `OtokError`, as every error of otok's library functions)."""


class Runner(Protocol):
    device: torch.device

    def run(self, graph: str, feeds: dict[str, Tensor]) -> dict[str, Tensor]: ...


@dataclass
class EngineState:
    """The engine twin of `TemporalCache`: stacked state tensors (None before a segment's first step)."""

    keys: Tensor | None  # (L, B, h, w, heads, W-1, hd)
    values: Tensor | None
    valid: Tensor | None  # (W-1,)
    step: int = 0

    def nbytes(self) -> int:
        tensors = [t for t in (self.keys, self.values, self.valid) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class TiledEngineState:
    """The state of a tiled engine stream: an `EngineState` per tile's crop, in the order of `Tiles.rects()`."""

    states: list[EngineState]
    step: int = 0

    def nbytes(self) -> int:
        return sum(state.nbytes() for state in self.states)


def io_shapes(config: TokenizerConfig, graph: str, batch: int, h: int, w: int) -> dict[str, tuple]:
    """Shapes of every input and output of `graph` for a (batch, h x w grid) step."""
    c = config
    frames = 1 if graph.endswith("image") else c.tubelet
    state = (c.temporal_layers, batch, h, w, c.heads, c.temporal_window - 1, c.dim // c.heads)
    code_dim = len(c.fsq_levels) if c.quantizer == "fsq" else c.latent_dim
    shapes = {
        "pixels": (batch, 3, frames, h * c.patch, w * c.patch),
        "tokens": (batch, h, w),
        "latents": (batch, code_dim, h, w),
        "valid": (c.temporal_window - 1,),
    }
    shapes.update({name: state for name in ("keys", "values", "keys_out", "values_out")})
    shapes["valid_out"] = shapes["valid"]
    return shapes


def step_geometry(config: TokenizerConfig, feeds: dict[str, Tensor]) -> tuple[int, int, int]:
    """(batch, grid h, grid w) of a step from its first input."""
    if "pixels" in feeds:
        b, _, _, height, width = feeds["pixels"].shape
        return b, height // config.patch, width // config.patch
    grid = feeds["tokens"] if "tokens" in feeds else feeds["latents"]
    return grid.shape[0], grid.shape[-2], grid.shape[-1]


def allocate_outputs(config: TokenizerConfig, graph: str, feeds: dict[str, Tensor], names: list[str],
                     device: torch.device) -> dict[str, Tensor]:
    """Empty output tensors of `graph` for the step `feeds` describe."""
    shapes = io_shapes(config, graph, *step_geometry(config, feeds))
    dtypes = {"tokens": TOKEN_DTYPE}
    return {n: torch.empty(shapes[n], dtype=dtypes.get(n, torch.float32), device=device) for n in names}


def _step_by_crops(step, x: Tensor, cache, config: TokenizerConfig, tiles, decoder: bool) -> tuple[Tensor, object]:
    """One engine step on each tile's crop (`tiling.engine_crops`), each with its own state, keeping each
    tile's part of the output: the encoder's input is pixels and its output tokens, the decoder's the reverse."""
    p, (h, w) = config.patch, tiles.grid
    into, out_of = (1, p) if decoder else (p, 1)  # pixels a token on the way in, and on the way out
    out, states = None, []
    for i, ((r0, r1, c0, c1), (a0, a1, b0, b1)) in enumerate(engine_crops(config, tiles, decoder)):
        part, state = step(x[..., a0 * into : a1 * into, b0 * into : b1 * into], cache.states[i])
        out = part.new_empty(*part.shape[:-2], h * out_of, w * out_of) if out is None else out
        out[..., r0 * out_of : r1 * out_of, c0 * out_of : c1 * out_of] = \
            part[..., (r0 - a0) * out_of : (r1 - a0) * out_of, (c0 - b0) * out_of : (c1 - b0) * out_of]
        states.append(state)
    return out, TiledEngineState(states, cache.step + 1)


class EngineStreamEncoder(StreamEncoder):
    """`StreamEncoder` whose step runs an engine; the engine returns tokens (quantization is in-graph).
    With a tile size, the engine runs on each tile's crop (`tiling.engine_crops`) with a state per crop;
    without one (tile None or 0) on whole frames."""

    auto_tile = False

    def _step(self, pixels: Tensor, cache) -> tuple[Tensor, object]:
        if self.tiles is None:
            return self.tokenizer.encode_step(pixels, cache)
        return _step_by_crops(self.tokenizer.encode_step, pixels, cache, self.tokenizer.config, self.tiles, False)

    def _choose(self, grid: Tensor, previous: Tensor | None) -> Tensor:
        self._chosen = choose_tokens(grid, previous, self.tokenizer.codes_from_indices, self.rdo)
        return self._chosen

    def _tokens(self, out: Tensor) -> Tensor:
        return out  # already a grid: push_quantized/flush_quantized return grids on an engine stream


class EngineStreamDecoder(StreamDecoder):
    """`StreamDecoder` whose step runs an engine on the token grid (the code lookup is in-graph); tiles as
    `EngineStreamEncoder`'s."""

    auto_tile = False

    def _step(self, grid: Tensor, cache) -> tuple[Tensor, object]:
        if self.tiles is None:
            return self.tokenizer.decode_step(grid, cache)
        return _step_by_crops(self.tokenizer.decode_step, grid, cache, self.tokenizer.config, self.tiles, True)

    def push_codes(self, codes: Tensor) -> Tensor:
        raise TypeError("an engine decodes token grids (push), not decoder codes")


class EngineTokenizer:
    """A Tokenizer stand-in that runs exported graphs. Build with `load_engine`."""

    dtype = torch.float32

    def __init__(self, manifest: dict, runner: Runner, engine_dir: Path, backend: str) -> None:
        self.manifest = manifest
        self.config = TokenizerConfig.from_dict(manifest["config"])
        self.runner = runner
        self.engine_dir = engine_dir
        self.backend = backend
        c = self.config
        code_dim = len(c.fsq_levels) if c.quantizer == "fsq" else c.latent_dim
        self.quantizer = SimpleNamespace(code_dim=code_dim, codebook_size=c.codebook_size)
        self._code = "tokens" if c.discrete else "latents"
        self._code_table: Tensor | None = None  # VQ: the codes of every token, loaded when first needed
        self._code_quantizer = None  # FSQ/LFQ: a quantizer built from the config, for its codes

    def __repr__(self) -> str:
        return f"EngineTokenizer({self.config.name}, backend={self.backend}, dir={self.engine_dir})"

    @property
    def device(self) -> torch.device:
        return self.runner.device

    def weights_sha256(self) -> str:
        """The SHA-256 of the weights the graphs were exported from (as `Tokenizer.weights_sha256`)."""
        return self.manifest["weights_sha256"]

    def check_weights(self, sha256: str, source: str) -> None:
        """Raise EngineError unless `sha256` (of a file's or a model's weights) is this engine's."""
        if sha256 != self.weights_sha256():
            raise EngineError(
                f"engine {self.engine_dir} was exported from {self.config.name} weights "
                f"{self.weights_sha256()[:12]}, but {source} has weights {sha256[:12]}; "
                f"re-export it with `otok export onnx --model <those weights>`"
            )

    padded_size = Tokenizer.padded_size
    grid_size = Tokenizer.grid_size
    encode = Tokenizer.encode
    decode = Tokenizer.decode

    def new_cache(self, batch: int, height: int, width: int,  # noqa: ARG002
                  tiles: Tiles | None = None) -> EngineState | TiledEngineState:
        if tiles is None:
            return EngineState(None, None, None, 0)
        return TiledEngineState([EngineState(None, None, None, 0) for _ in tiles.rects()])

    def stream_encoder(self, batch: int = 1, height: int | None = None, width: int | None = None,
                       gop: int | None = None, rdo: float = 0.0, tile: int | None = None):
        return EngineStreamEncoder(self, batch, height, width, self.config.gop if gop is None else gop, rdo, tile)

    def codes_from_indices(self, indices: Tensor) -> Tensor:
        """Tokens (...) -> their codes (..., C) float32 on the CPU, as `Tokenizer.quantizer.codes_from_indices`
        (VQ: the exported code table; FSQ/LFQ codes follow from the config)."""
        if self.config.quantizer != "vq":  # FSQ/LFQ: no learned codes, the config defines them
            if self._code_quantizer is None:
                self._code_quantizer = build_quantizer(self.config)
            return self._code_quantizer.codes_from_indices(indices.cpu())
        if self._code_table is None:
            path = self.engine_dir / self.manifest.get("codes", CODES)
            if "codes" not in self.manifest or not path.is_file():
                raise EngineError(f"engine {self.engine_dir} has no code table ({CODES}), which rate-distortion "
                                  "token choice needs: re-export it with `otok export onnx`, or encode with --rdo 0")
            from safetensors.torch import load_file

            table = load_file(str(path)).get("codes")
            if table is None or tuple(table.shape) != (self.config.codebook_size, self.quantizer.code_dim):
                raise EngineError(f"{path} does not hold a ({self.config.codebook_size}, {self.quantizer.code_dim}) "
                                  "code table; re-export the engine with `otok export onnx`")
            self._code_table = table.float()
        return torch.nn.functional.embedding(indices.cpu(), self._code_table)

    def stream_decoder(self, batch: int = 1, height: int | None = None, width: int | None = None,
                       gop: int | None = None, tile: int | None = None):
        return EngineStreamDecoder(self, batch, height, width, self.config.gop if gop is None else gop, tile)

    # ----- one step ------------------------------------------------------------------------------
    def encode_step(self, pixels: Tensor, cache: EngineState) -> tuple[Tensor, EngineState]:
        """Padded pixels (B, 3, 1|t, Hp, Wp) -> (tokens (B, h, w) int64 | latents (B, C, h, w), state)."""
        graph = "encoder_image" if cache.step == 0 else "encoder_video"
        feeds = {"pixels": pixels.to(self.device, torch.float32).contiguous(), **self._state_feeds(cache)}
        out = self.runner.run(graph, feeds)
        grid = out[self._code]
        return (grid.long() if self.config.discrete else grid), self._next_state(out, cache)

    def decode_step(self, grid: Tensor, cache: EngineState) -> tuple[Tensor, EngineState]:
        """Tokens (B, h, w) (KL: latents (B, C, h, w)) -> (padded pixels (B, 3, 1|t, Hp, Wp), state)."""
        graph = "decoder_image" if cache.step == 0 else "decoder_video"
        dtype = TOKEN_DTYPE if self.config.discrete else torch.float32
        feeds = {self._code: grid.to(self.device, dtype).contiguous(), **self._state_feeds(cache)}
        out = self.runner.run(graph, feeds)
        return out["pixels"], self._next_state(out, cache)

    def _state_feeds(self, cache: EngineState) -> dict[str, Tensor]:
        if cache.step == 0:
            return {}
        return dict(zip(STATE_IN, (cache.keys, cache.values, cache.valid)))

    @staticmethod
    def _next_state(out: dict[str, Tensor], cache: EngineState) -> EngineState:
        keys, values, valid = (out[name] for name in STATE_OUT)
        return EngineState(keys, values, valid, cache.step + 1)


# ----- loading --------------------------------------------------------------------------------------
def read_manifest(engine_dir: str | os.PathLike) -> dict:
    path = Path(engine_dir) / MANIFEST
    if not Path(engine_dir).is_dir():
        raise EngineError(f"engine folder {engine_dir} does not exist; make one with `otok export onnx`")
    if not path.is_file():
        raise EngineError(f"{engine_dir} has no {MANIFEST}; is it an `otok export` folder?")
    try:
        manifest = json.loads(path.read_text())
        manifest["graphs"], manifest["weights_sha256"], manifest["config"]  # noqa: B018 - presence
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"{path} is not a valid otok engine manifest ({exc})") from None
    missing = [g for g in GRAPHS if g not in manifest["graphs"]]
    if missing:
        raise EngineError(f"{path} lists no {', '.join(missing)} graph")
    return manifest


def load_engine(
    engine_dir: str | os.PathLike, backend: str = "onnx", device: str | torch.device = "cpu",
    expect_sha256: str | None = None, expect_source: str = "the model",
) -> EngineTokenizer:
    """An EngineTokenizer over the graphs in `engine_dir`.

    backend: "onnx" (ONNX Runtime; device cpu, or cuda with onnxruntime-gpu) or "trt" (TensorRT engines
    from `build_trt_engines`; device cuda). expect_sha256: raise EngineError unless the engine was
    exported from these weights (`expect_source` names them in the message).
    """
    if backend not in ("onnx", "trt", "tensorrt"):
        raise ValueError(f"backend must be 'onnx' or 'trt', got {backend!r}")
    engine_dir = Path(engine_dir)
    manifest = read_manifest(engine_dir)
    device = torch.device(device)
    if backend == "onnx":
        from .ort_backend import OrtRunner

        runner = OrtRunner(engine_dir, manifest, device)
    else:
        from .trt import TrtRunner

        runner = TrtRunner(engine_dir, manifest, device)
    tok = EngineTokenizer(manifest, runner, engine_dir, "trt" if backend == "tensorrt" else backend)
    if expect_sha256 is not None:
        tok.check_weights(expect_sha256, expect_source)
    return tok
