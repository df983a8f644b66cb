"""PyTorch speed-ups of a tokenizer's step functions: bf16 autocast and torch.compile.

Both wrap `encoder.step` and `decoder.step` in place, so whole clips, streams and training all use them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .model import Tokenizer

PRECISIONS = ("auto", "fp32", "bf16")


def accelerate(tok: Tokenizer, precision: str = "auto", compile: bool = False) -> Tokenizer:
    """bf16 autocast on CUDA (precision auto or bf16) and torch.compile of the step functions. On the CPU,
    auto means fp32, so files are bit-exact across machines. Returns `tok`, changed in place."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    bf16 = precision == "bf16" or (precision == "auto" and tok.device.type == "cuda")
    if compile:
        tok.encoder.step = torch.compile(tok.encoder.step, dynamic=True)
        tok.decoder.step = torch.compile(tok.decoder.step, dynamic=True)
    if bf16:
        for module in (tok.encoder, tok.decoder):
            module.step = _autocast(module.step, tok.device.type)
    return tok


def _autocast(step: Callable, device_type: str) -> Callable:
    def step_in_bf16(*args):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out, cache = step(*args)
        return out.float(), cache

    return step_in_bf16
