"""Weights on disk: safetensors with the JSON config in its metadata (never pickle), and `load`.

A weights file is self-describing: `__metadata__` holds `otok_format` (this module's FORMAT_VERSION) and
`config` (the model's TokenizerConfig as JSON), so `load(path)` rebuilds the model from the file alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .config import TokenizerConfig, get_config, list_models
from .model import Tokenizer

FORMAT_VERSION = 1
PACKAGED_WEIGHTS = Path(__file__).parent / "weights"


class WeightsError(ValueError):
    """A weights file that is missing, corrupt, from a newer otok, or does not fit its config."""


def save(tokenizer: Tokenizer, path: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Write `tokenizer` to `path` (.safetensors) atomically: a crash never leaves a broken file.

    dtype: store floating-point tensors in this type (torch.float16 halves a shipped file); `load`
    casts them back to the model's float32, and the weights hash is taken after that cast.
    """
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {"otok_format": str(FORMAT_VERSION), "config": json.dumps(tokenizer.config.to_dict())}
    tensors = {}
    for name, value in tokenizer.state_dict().items():
        value = value.detach().cpu()
        tensors[name] = (value.to(dtype) if dtype is not None and value.is_floating_point() else value).contiguous()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_config(path: str | os.PathLike) -> TokenizerConfig:
    """The config stored in a weights file, without loading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for a corrupt header
        raise WeightsError(f"{path} is not a valid safetensors weights file ({exc})") from None
    version = metadata.get("otok_format")
    if version is None or "config" not in metadata:
        raise WeightsError(f"{path} has no otok config in its metadata; was it saved by otok.codec.save?")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise WeightsError(f"{path} has weights format {version}; this otok reads up to {FORMAT_VERSION}")
    try:
        return TokenizerConfig.from_dict(json.loads(metadata["config"]))
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{path} has an invalid config: {exc}") from None


def load_file(path: str | os.PathLike, device: torch.device | str = "cpu") -> Tokenizer:
    """A Tokenizer (eval mode) from a weights file."""
    from safetensors.torch import load_file as load_tensors

    config = read_config(path)
    try:
        tensors = load_tensors(str(path), device=str(device))
    except Exception as exc:
        raise WeightsError(f"{path} is corrupt: cannot read its tensors ({exc})") from None
    model = Tokenizer(config).to(device)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise WeightsError(f"{path} does not fit the {config.name} config: {' '.join(first[1:3]).strip()}") from None
    model.weights_path = Path(path)  # where it came from: files that ship beside it (a prior table) are found here
    return model.eval()


def load(
    name_or_path: str | os.PathLike, pretrained: bool = True, seed: int | None = None,
    device: torch.device | str = "cpu",
) -> Tokenizer:
    """A Tokenizer in eval mode.

    name_or_path: a registry name (`otok-s`; see `list_models()`) or a path to a .safetensors file.
    pretrained: load the weights that ship with the package; False gives a random init (seeded by
    `seed`), for tests and as the start of training.
    """
    name = str(name_or_path)
    looks_like_path = name.endswith(".safetensors") or os.sep in name or Path(name).is_file()
    if looks_like_path:
        return load_file(name, device)
    if name not in list_models():
        raise WeightsError(f"unknown model {name!r}: give a .safetensors path or one of {', '.join(list_models())}")
    if pretrained:
        packaged = PACKAGED_WEIGHTS / f"{name}.safetensors"
        if not packaged.is_file():
            raise WeightsError(
                f"no trained weights ship for {name!r}; use pretrained=False for a random init "
                "or train one with train/run.py"
            )
        return load_file(packaged, device)
    with torch.random.fork_rng(devices=[]):  # a seeded init leaves the caller's RNG untouched
        if seed is not None:
            torch.manual_seed(seed)
        model = Tokenizer(get_config(name))
    return model.to(device).eval()
