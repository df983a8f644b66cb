"""otok.export: the tokenizer as ONNX graphs, run by ONNX Runtime or TensorRT behind the streaming API.

    from otok.codec import load
    from otok.export import export_onnx, build_trt_engines, load_engine
    export_onnx(load("otok-s"), "engines/otok-s")                        # four step graphs + manifest.json
    build_trt_engines("engines/otok-s", "engines/otok-s-trt", "fp16")    # needs tensorrt and a GPU
    tok = load_engine("engines/otok-s", backend="onnx")                  # a Tokenizer stand-in
    grids = tok.stream_encoder(1, H, W).push(frames)

onnx, onnxruntime and tensorrt are imported only when used.
"""

from .onnx_export import GRAPHS, export_onnx, otok_version
from .ops import UnsupportedOpError, check_graph
from .runtime import EngineError, EngineTokenizer, load_engine, read_manifest


def build_trt_engines(*args, **kwargs) -> dict:
    """See `otok.export.trt.build_trt_engines` (imported lazily: it needs tensorrt)."""
    from .trt import build_trt_engines as build

    return build(*args, **kwargs)


__all__ = [
    "GRAPHS", "EngineError", "EngineTokenizer", "UnsupportedOpError", "build_trt_engines", "check_graph",
    "export_onnx", "load_engine", "otok_version", "read_manifest",
]
