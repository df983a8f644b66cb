"""Coder registry: id (stored in the header) <-> name <-> class."""

from __future__ import annotations

from ..errors import UnsupportedError, UsageError
from .base import Coder
from .ctx import CtxCoder
from .latent import Float16ZstdCoder
from .raw import RawCoder
from .zstd import ZstdCoder

CODERS: tuple[type[Coder], ...] = (RawCoder, ZstdCoder, CtxCoder, Float16ZstdCoder)
_BY_ID = {c.coder_id: c for c in CODERS}
_BY_NAME = {c.name: c for c in CODERS}
# ids that named coders of earlier (pre-release) versions: refused with a message saying what to do
_RETIRED = {2: "coder id 2 was the pre-release ctx coder; re-encode the source"}


def coder_by_id(coder_id: int) -> type[Coder]:
    """The coder class stored under `coder_id`; UnsupportedError when this reader does not know it."""
    try:
        return _BY_ID[coder_id]
    except KeyError:
        if coder_id in _RETIRED:
            raise UnsupportedError(_RETIRED[coder_id]) from None
        raise UnsupportedError(f"unknown coder id {coder_id}: the file needs a newer otok") from None


def coder_by_name(name: str) -> type[Coder]:
    """The coder class called `name` ('raw', 'zstd', 'ctx', 'f16z')."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UsageError(f"unknown coder {name!r}; choose one of {sorted(_BY_NAME)}") from None
