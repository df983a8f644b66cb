"""The one set of encoding defaults, shared by `otok encode`, `otok.encode_file` and the tools."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncodeDefaults:
    """The one set of encoding defaults: `otok encode`, `otok.encode_file` and the tools all read these.

    rdo: the rate-distortion tolerance for token models (`otok.codec.rdo`; KL models use 0); the measured
    trade-off is in docs/BENCHMARKS.md. The `ctx` coder's own parameters are `otok.bitstream.CtxParams()`'s
    defaults, the same for every writer.
    """

    model: str = "otok-s"
    coder: str = "ctx"
    rdo: float = 0.01


DEFAULTS = EncodeDefaults()
