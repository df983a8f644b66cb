"""otok.codec: the OmniTokenizer-style video tokenizer.

    from otok.codec import load
    tok = load("otok-s")                          # registry name or weights path
    tokens = tok.encode(video)                    # (B, 3, T, H, W) in [-1, 1] -> (B, S, h, w) int64
    video = tok.decode(tokens, frames=T)          # -> (B, 3, T, H, W)
    enc = tok.stream_encoder(batch=1, height=H, width=W)
    grids = enc.push(frames) + enc.flush()        # constant memory, same tokens as tok.encode

Names are imported on first use, so `otok.codec.priors` (paths only) serves readers without PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import TokenizerConfig, get_config, list_models, register
    from .model import Tokenizer, TokenizerOutput, with_decoder
    from .pixels import from_uint8, to_uint8
    from .quantizers import QuantizerOutput
    from .state import TemporalCache
    from .streaming import StreamDecoder, StreamEncoder
    from .timeline import ONE_SEGMENT, frames_in_steps, num_steps
    from .weights import WeightsError, load, save

_EXPORTS = {
    "TokenizerConfig": "config", "get_config": "config", "list_models": "config", "register": "config",
    "Tokenizer": "model", "TokenizerOutput": "model", "with_decoder": "model",
    "from_uint8": "pixels", "to_uint8": "pixels", "QuantizerOutput": "quantizers", "TemporalCache": "state",
    "StreamDecoder": "streaming", "StreamEncoder": "streaming",
    "ONE_SEGMENT": "timeline", "frames_in_steps": "timeline", "num_steps": "timeline",
    "WeightsError": "weights", "load": "weights", "save": "weights",
}
__all__ = [
    "ONE_SEGMENT", "QuantizerOutput", "StreamDecoder", "StreamEncoder", "TemporalCache", "Tokenizer", "TokenizerConfig",
    "TokenizerOutput", "WeightsError", "frames_in_steps", "from_uint8", "get_config", "list_models", "load",
    "num_steps", "register", "save", "to_uint8", "with_decoder",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
