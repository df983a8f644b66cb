"""The functions `import otok` gives: load, encode_file, decode_file, read_tokens, open_dataset.

PyTorch is imported only by the functions that run the model, so `read_tokens` serves a language-model
pipeline that has numpy and the bitstream's packages only.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from otok.bitstream import OtokError, Prior, UsageError, read_header
from otok.bitstream import read_tokens as _read_tokens

from .defaults import DEFAULTS, EncodeDefaults
from .errors import ArgumentError, InputError, MediaError, ModelError

if TYPE_CHECKING:
    from otok.codec import Tokenizer
    from otok.tools.dataset.read import TokenDataset
    from otok.tools.pipeline import DecodeResult, EncodeResult

__all__ = [
    "ArgumentError", "DEFAULTS", "DecodeResult", "EncodeDefaults", "EncodeResult", "InputError", "MediaError",
    "ModelError", "OtokError", "decode_file", "encode_file", "installed_priors", "load", "open_dataset", "read_tokens",
]


def load(model: str | os.PathLike = DEFAULTS.model, *, device: str = "cpu", pretrained: bool = True,
         seed: int | None = None) -> Tokenizer:
    """A tokenizer (a `torch.nn.Module` in eval mode): a registry name (`otok-s`, `otok-s-kl`, ...) or a
    weights file (`.safetensors` from `train/run.py`). pretrained=False: a random init seeded by `seed`.
    Raises ModelError."""
    from otok.codec import WeightsError
    from otok.codec import load as codec_load

    try:
        return codec_load(model, pretrained=pretrained, seed=seed, device=device)
    except WeightsError as exc:
        raise ModelError(str(exc)) from None


def encode_file(src: str | os.PathLike, dst: str | os.PathLike, *, model: str | os.PathLike | None = None,
                **options) -> EncodeResult:
    """Encode a video or image file into `dst` (an `.otok` file), streaming, with `otok encode`'s defaults
    (`otok.DEFAULTS`). options: coder, gop, rdo, max_side, frames, device, tokenizer, progress, ...
    (`otok.tools.pipeline.encode_file`). Returns frames, steps, size and bytes (an EncodeResult)."""
    from otok.tools import pipeline

    return pipeline.encode_file(src, dst, model=model, **options)


def decode_file(src: str | os.PathLike, dst: str | os.PathLike, *, model: str | os.PathLike | None = None,
                **options) -> DecodeResult:
    """Decode an `.otok` file into a video (.mp4/.mkv/.mov/.webm) or, for one frame, an image (.png/.jpg)
    of the source's size and frame rate. model: the weights that wrote the file when they are not the
    installed release it names (files name their weights by hash). options: device, codec, crf, ..."""
    from otok.tools import pipeline

    return pipeline.decode_file(src, dst, model=model, **options)


def _weights_folder() -> Path | None:
    """The installed models' folder (`otok/codec/weights`), found without importing otok.codec (PyTorch)."""
    spec = importlib.util.find_spec("otok.codec")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "weights"


def installed_priors() -> list[Prior]:
    """Every prior table that ships with the installed models, current and superseded (NAME.<hash>.prior):
    the tables `ctx` files reference by hash. A table that does not load is skipped with a warning."""
    folder = _weights_folder()
    priors = []
    for path in sorted(folder.glob("*.prior")) if folder is not None and folder.is_dir() else []:
        try:
            priors.append(Prior.load(path))
        except OtokError as exc:
            warnings.warn(f"{path}: {exc}; files that reference it cannot be read", stacklevel=2)
    return priors


def read_tokens(path: str | os.PathLike, *, prior: Prior | str | os.PathLike | Iterable | None = None,
                allow_truncated: bool = False) -> np.ndarray:
    """The tokens of an `.otok` file: int64 (S, h, w) (S steps of an h x w grid; a KL model's file gives
    float16 latents (S, C, h, w)). The `ctx` coder's prior table the file names by hash is found among the
    installed models' tables, current and superseded; `prior` (a Prior, a .prior path, or a list) adds
    others, e.g. the table beside your own weights. allow_truncated: return the intact steps of a damaged
    file (with a warning) instead of raising."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
    given = [] if prior is None else [prior] if isinstance(prior, (Prior, str, os.PathLike)) else list(prior)
    priors = [p if isinstance(p, Prior) else Prior.load(p) for p in given] + installed_priors()
    try:
        return _read_tokens(path, prior=priors, allow_truncated=allow_truncated)
    except UsageError:
        header = read_header(path)
        wanted = getattr(header.coder_params, "prior_sha256", b"")
        if not wanted or any(p.sha256 == wanted for p in priors):
            raise
        raise ArgumentError(
            "prior", f"{path} was coded with the prior table {wanted.hex()[:16]}... of {header.model} weights "
            f"{header.weights_sha256.hex()[:12]}, which is not installed; pass the .prior file that ships beside "
            "those weights, prior=FILE"
        ) from None


def open_dataset(folder: str | os.PathLike) -> TokenDataset:
    """The shards `otok dataset SRC --out DIR` writes, as a PyTorch IterableDataset of (tokens, metadata):
    tokens int64 (S, h, w) as `read_tokens` gives them (KL: float16 latents), metadata the row's other
    columns (path, start, frames, ...); dealt out across DataLoader workers and DDP ranks
    (`otok.tools.dataset.read.TokenDataset`)."""
    from otok.tools.dataset.read import TokenDataset

    return TokenDataset(folder)
