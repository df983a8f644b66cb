"""otok: a streaming video tokenizer that works like a codec.

    import otok
    tok = otok.load()                                   # the default model, otok-s (a torch.nn.Module)
    otok.encode_file("clip.mp4", "clip.otok")           # what `otok encode` does, with the same defaults
    otok.decode_file("clip.otok", "back.mp4")
    otok.eval_file("clip.mp4").psnr                     # what `otok eval` measures
    tokens = otok.read_tokens("clip.otok")              # (S, h, w) int64 for a language model; no PyTorch
    rows = otok.open_dataset("shards/")                 # (tokens, metadata) of `otok dataset`'s Parquet shards

Every error these raise is an `otok.OtokError`. The subpackages: `otok.codec` (the model),
`otok.bitstream` (the `.otok` format), `otok.export` (ONNX / TensorRT), `otok.train`, `otok.tools`.

This file is the repository root's `__init__.py`: pyproject.toml maps the root folder to the `otok`
package and each top-level folder to its subpackage, so the checkout has the installed package's shape.
Everything here is imported on first use, so `import otok.bitstream` never loads PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otok.bitstream import OtokError
    from otok.tools.api import DEFAULTS, ArgumentError, InputError, MediaError, ModelError
    from otok.tools.api import installed_priors, load, open_dataset, read_tokens
    from otok.tools.decode import DecodeResult, decode_file
    from otok.tools.encode import EncodeResult, encode_file
    from otok.tools.evaluation.evaluate import EvalResult, eval_file

_EXPORTS = {
    "load": "otok.tools.api", "read_tokens": "otok.tools.api", "installed_priors": "otok.tools.api",
    "DEFAULTS": "otok.tools.api", "open_dataset": "otok.tools.api",
    "encode_file": "otok.tools.encode", "EncodeResult": "otok.tools.encode",
    "decode_file": "otok.tools.decode", "DecodeResult": "otok.tools.decode",
    "eval_file": "otok.tools.evaluation.evaluate", "EvalResult": "otok.tools.evaluation.evaluate",
    "OtokError": "otok.bitstream.errors", "ArgumentError": "otok.tools.errors", "InputError": "otok.tools.errors",
    "MediaError": "otok.tools.errors", "ModelError": "otok.tools.errors",
}
__all__ = [
    "DEFAULTS", "ArgumentError", "DecodeResult", "EncodeResult", "EvalResult", "InputError", "MediaError",
    "ModelError", "OtokError", "__version__", "decode_file", "encode_file", "eval_file", "installed_priors", "load",
    "open_dataset", "read_tokens",
]


def __getattr__(name: str):
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("otok-codec")
        except PackageNotFoundError:  # a checkout that is not installed
            return "unknown"
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'otok' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
