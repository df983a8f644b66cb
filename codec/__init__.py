"""otok.codec: the OmniTokenizer-style video tokenizer.

    from otok.codec import load
    tok = load("otok-s")                          # registry name or weights path
    tokens = tok.encode(video)                    # (B, 3, T, H, W) in [-1, 1] -> (B, S, h, w) int64
    video = tok.decode(tokens, frames=T)          # -> (B, 3, T, H, W)
    enc = tok.stream_encoder(batch=1, height=H, width=W)
    grids = enc.push(frames) + enc.flush()        # constant memory, same tokens as tok.encode
"""

from .config import TokenizerConfig, get_config, list_models, register
from .model import Tokenizer, TokenizerOutput, with_decoder
from .pixels import from_uint8, to_uint8
from .quantizers import QuantizerOutput
from .state import TemporalCache
from .streaming import StreamDecoder, StreamEncoder
from .timeline import ONE_SEGMENT, frames_in_steps, num_steps
from .weights import WeightsError, load, save

__all__ = [
    "QuantizerOutput", "StreamDecoder", "StreamEncoder", "TemporalCache", "Tokenizer", "TokenizerConfig",
    "TokenizerOutput", "WeightsError", "from_uint8", "get_config", "list_models", "load", "num_steps",
    "frames_in_steps", "ONE_SEGMENT", "register", "save", "to_uint8", "with_decoder",
]
