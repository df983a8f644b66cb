"""The one set of encoding defaults, shared by `otok encode`, `otok.encode_file` and the tools."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncodeDefaults:
    """The one set of encoding defaults: `otok encode`, `otok.encode_file` and the tools all read these.

    rdo: the rate-distortion tolerance for token models (`otok.codec.rdo`; KL models use 0); the measured
    trade-off is in docs/BENCHMARKS.md. literal_increment, literal_model: the `ctx` coder's parameters for
    model tokens (a coded literal adds 4 to its count, so what a clip uses becomes likely fast; literals
    coded by group of the prior's code order; bitstream/SPEC.md).
    """

    model: str = "otok-s"
    coder: str = "ctx"
    rdo: float = 0.01
    literal_increment: int = 4
    literal_model: int = 1


DEFAULTS = EncodeDefaults()
