"""PyTorch speed-ups of a tokenizer's step functions: bf16 autocast and torch.compile.

Both wrap `encoder.step` and `decoder.step` in place, so whole clips, streams and training all use them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .model import Tokenizer

PRECISIONS = ("auto", "fp32", "bf16")


def accelerate(tok: Tokenizer, precision: str = "auto", compile: bool = False) -> Tokenizer:
    """bf16 autocast and torch.compile of the step functions. Returns `tok`, changed in place.

    precision: "fp32" nothing in bf16; "bf16" the encoder and the decoder (fastest; bf16 moves features enough
    to flip near-tied codes, so some tokens differ from fp32's: docs/BENCHMARKS.md); "auto" the decoder only on
    CUDA and nothing on the CPU, so tokens are the same on every machine, which a tokenizer that feeds a
    language model needs, and decoding still runs in bf16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if compile:
        tok.encoder.step = torch.compile(tok.encoder.step, dynamic=True)
        tok.decoder.step = torch.compile(tok.decoder.step, dynamic=True)
    in_bf16 = {"fp32": (), "bf16": (tok.encoder, tok.decoder),
               "auto": (tok.decoder,) if tok.device.type == "cuda" else ()}[precision]
    for module in in_bf16:
        module.step = _autocast(module.step, tok.device.type)
    return tok


def _autocast(step: Callable, device_type: str) -> Callable:
    def step_in_bf16(*args):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out, cache = step(*args)
        return out.float(), cache

    return step_in_bf16
