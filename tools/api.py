"""The functions `import otok` gives beside `encode_file`, `decode_file` and `eval_file` (which live in
`otok.tools.encode`, `.decode` and `.evaluation.evaluate`): load, read_tokens, installed_priors, open_dataset.

PyTorch is imported only by the functions that run the model, so `read_tokens` serves a language-model
pipeline that has numpy and the bitstream's packages only.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

import numpy as np

from otok.bitstream import OtokError, OtokReader, Prior, UsageError
from otok.bitstream import read_tokens as _read_tokens
from otok.codec.priors import packaged_prior_files

from .errors import ArgumentError, InputError, MediaError, ModelError
from .options import DEFAULTS, EncodeDefaults

if TYPE_CHECKING:
    from otok.codec import Tokenizer
    from otok.tools.dataset.read import TokenDataset

__all__ = [
    "ArgumentError", "DEFAULTS", "EncodeDefaults", "InputError", "MediaError", "ModelError", "OtokError",
    "installed_priors", "load", "open_dataset", "read_tokens",
]


def load(model: str | os.PathLike = DEFAULTS.model, *, device: str = "cpu", pretrained: bool = True,
         seed: int | None = None) -> Tokenizer:
    """A tokenizer (a `torch.nn.Module` in eval mode): a registry name (`otok-s`, `otok-s-kl`, ...) or a
    weights file (`.safetensors` from `train/run.py`). pretrained=False: a random init seeded by `seed`.
    Raises ModelError (ArgumentError for a device PyTorch cannot use)."""
    from otok.tools.models import load_model

    return load_model(model, device, pretrained=pretrained, seed=seed)


def installed_priors() -> list[Prior]:
    """Every prior table that ships with the installed models, current and superseded
    (`otok.codec.priors`): the tables `ctx` files reference by hash. A table that does not load is
    skipped with a warning."""
    priors = []
    for path in packaged_prior_files():
        try:
            priors.append(Prior.load(path))
        except OtokError as exc:
            warnings.warn(f"{path}: {exc}; files that reference it cannot be read", stacklevel=2)
    return priors


TokenSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]
PriorArgument = Union[Prior, str, os.PathLike, Iterable[Union[Prior, str, os.PathLike]], None]


def read_tokens(source: TokenSource, *, prior: PriorArgument = None, allow_truncated: bool = False) -> np.ndarray:
    """The tokens of an `.otok` file: int64 (S, h, w) (S steps of an h x w grid; a KL model's file gives
    float16 latents (S, C, h, w)). source: a path, the file's bytes, or a binary file object (read from
    where it stands). The `ctx` coder's prior table the file names by hash is found among the installed
    models' tables, current and superseded; `prior` (a Prior, a .prior path, or a list of them) adds others,
    e.g. the table beside your own weights. allow_truncated: return the intact steps of a damaged file
    (with a warning) instead of raising."""
    source = _token_source(source)
    priors = _given_priors(prior) + installed_priors()
    start = None if isinstance(source, Path) else source.tell() if source.seekable() else None
    try:
        return _read_tokens(source, prior=priors, allow_truncated=allow_truncated)
    except UsageError:
        if not isinstance(source, Path) and start is None:
            raise
        if start is not None:
            source.seek(start)
        with OtokReader(source) as reader:  # the header, which names the table (opening reads no step)
            header = reader.header
        wanted = getattr(header.coder_params, "prior_sha256", b"")
        if not wanted or any(p.sha256 == wanted for p in priors):
            raise
        raise ArgumentError(
            "prior", f"{_name(source)} was coded with the prior table {wanted.hex()[:16]}... of {header.model} "
            f"weights {header.weights_sha256.hex()[:12]}, which is not installed; pass the .prior file that ships "
            "beside those weights, prior=FILE"
        ) from None


def _token_source(source: object) -> Path | BinaryIO:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
        return path
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if isinstance(source, io.TextIOBase) or not callable(getattr(source, "read", None)):
        raise ArgumentError("source", f"read_tokens takes a path, bytes or a binary file object, not {type(source).__name__}")
    return source  # type: ignore[return-value]


def _given_priors(prior: object) -> list[Prior]:
    if prior is None:
        return []
    items = [prior] if isinstance(prior, (Prior, str, os.PathLike)) else prior
    if isinstance(items, (bytes, bytearray, memoryview, int)) or not isinstance(items, Iterable):
        raise ArgumentError("prior", f"prior must be a Prior, a .prior path or a list of them, not {type(prior).__name__}")
    priors = []
    for item in items:
        if isinstance(item, Prior):
            priors.append(item)
        elif isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if not path.is_file():
                raise InputError(f"prior {path}: no such file" if not path.exists() else f"prior {path}: is not a file")
            priors.append(Prior.load(path))
        else:
            raise ArgumentError("prior", f"prior must be a Prior, a .prior path or a list of them; got a {type(item).__name__} in it")
    return priors


def _name(source: Path | BinaryIO) -> str:
    return str(source) if isinstance(source, Path) else str(getattr(source, "name", "the file"))


def open_dataset(folder: str | os.PathLike) -> TokenDataset:
    """The shards `otok dataset SRC --out DIR` writes, as a PyTorch IterableDataset of (tokens, metadata):
    tokens int64 (S, h, w) as `read_tokens` gives them (KL: float16 latents), metadata the row's other
    columns (path, start, frames, ...); dealt out across DataLoader workers and DDP ranks
    (`otok.tools.dataset.read.TokenDataset`)."""
    from otok.tools.dataset.read import TokenDataset

    return TokenDataset(folder)
