"""Weights on disk: safetensors with the JSON config in its metadata (never pickle), and `load`.

A weights file is self-describing: `__metadata__` holds `otok_format` (this module's FORMAT_VERSION) and
`config` (the model's TokenizerConfig as JSON), so `load(path)` rebuilds the model from the file alone.
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path

import torch

from .config import TokenizerConfig, get_config, list_models
from .model import Tokenizer, with_decoder
from .priors import PACKAGED_WEIGHTS

FORMAT_VERSION = 1


class WeightsError(ValueError):
    """A weights file that is missing, corrupt, from a newer otok, or does not fit its config."""


def save(tokenizer: Tokenizer, path: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Write `tokenizer` to `path` (.safetensors) atomically: a crash never leaves a broken file.

    dtype: store floating-point tensors in this type (torch.float16 halves a shipped file); `load`
    casts them back to the model's float32, and the weights hash is taken after that cast.
    """
    path = Path(path)
    _write(_stored_state(tokenizer, dtype), path, _metadata(tokenizer))
    return path


def _stored_state(tokenizer: Tokenizer, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """The tensors as a file stores them: on the CPU, floating point ones in `dtype` if given."""
    state = {}
    for name, value in tokenizer.state_dict().items():
        value = value.detach().cpu()
        state[name] = (value.to(dtype) if dtype is not None and value.is_floating_point() else value).contiguous()
    return state


def _metadata(tokenizer: Tokenizer) -> dict[str, str]:
    return {"otok_format": str(FORMAT_VERSION), "config": json.dumps(tokenizer.config.to_dict())}


def _write(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """One safetensors file, written atomically (a crash never leaves a broken file)."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


PART_PATTERN = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.safetensors$")


def save_parts(tokenizer: Tokenizer, path: str | os.PathLike, dtype: torch.dtype | None = None,
               max_bytes: int = 2**62) -> list[Path]:
    """`save`, split into files of at most `max_bytes` when one would be larger: STEM-00001-of-0000N.safetensors
    and so on beside `path`, each with the config (so any part names the model), whole tensors in each.
    `load` takes `path` or any part and joins them. Returns the files written."""
    path = Path(path)
    state = _stored_state(tokenizer, dtype)
    budget = max_bytes - 2**16  # room for each file's JSON header
    if sum(t.numel() * t.element_size() for t in state.values()) <= budget:
        return [save(tokenizer, path, dtype)]
    groups: list[dict] = [{}]
    used = 0
    for name in sorted(state):
        size = state[name].numel() * state[name].element_size()
        if size > budget:
            raise ValueError(f"tensor {name} ({size} bytes) alone is larger than {max_bytes} bytes")
        if used + size > budget:
            groups.append({})
            used = 0
        groups[-1][name] = state[name]
        used += size
    paths = []
    for i, group in enumerate(groups, 1):
        paths.append(path.with_name(f"{path.stem}-{i:05d}-of-{len(groups):05d}.safetensors"))
        _write(group, paths[-1], _metadata(tokenizer))
    path.unlink(missing_ok=True)  # a single file from an earlier save would shadow the parts
    return paths


def part_files(path: str | os.PathLike) -> list[Path]:
    """The files that hold the weights of `path`: [path] when it exists whole, else its parts in order
    (`path` may name the whole file or any part). Raises WeightsError when a part is missing."""
    path = Path(path)
    match = PART_PATTERN.match(path.name)
    if match is None:
        if path.is_file():
            return [path]
        found = sorted(path.parent.glob(f"{glob.escape(path.stem)}-00001-of-*.safetensors"))
        if not found:
            return [path]
        match = PART_PATTERN.match(found[0].name)
    stem, count = match["stem"], int(match["count"])
    parts = [path.with_name(f"{stem}-{i:05d}-of-{count:05d}.safetensors") for i in range(1, count + 1)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise WeightsError(f"weights {stem} come in {count} parts; missing {', '.join(missing)}")
    return parts


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

    parts = part_files(path)
    config = read_config(parts[0])
    try:
        tensors = {}
        for part in parts:
            tensors.update(load_tensors(str(part), device=str(device)))
    except Exception as exc:
        raise WeightsError(f"{path} is corrupt: cannot read its tensors ({exc})") from None
    model = Tokenizer(config).to(device)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise WeightsError(f"{path} does not fit the {config.name} config: {' '.join(first[1:3]).strip()}") from None
    model.weights_path = parts[0]  # where it came from: files that ship beside it (a prior table) are found here
    return model.eval()


def release_file(name: str, weights_sha256: str) -> Path:
    """Where an earlier release of `name`'s shipped weights is kept: NAME.<first 16 hex digits of its
    weights hash>.safetensors beside the current NAME.safetensors (so that its files still decode)."""
    return PACKAGED_WEIGHTS / f"{name}.{weights_sha256[:16]}.safetensors"


# Decoder parts a release may add on top of the one before it, training nothing else: the earlier release is
# then the current weights without them, and needs no file of its own.
ADDED_PARTS = ({"refine_blocks": 0}, {"refine": 0, "refine_blocks": 0}, {"upsample": 0}, {"tube_refine": 0})


def earlier_within(model: Tokenizer, weights_sha256: str) -> Tokenizer | None:
    """The earlier release held inside `model`: `model` without a decoder part listed in ADDED_PARTS, when
    that has the weights hash `weights_sha256` (a prefix of it is enough); else None."""
    for change in ADDED_PARTS:
        if all(getattr(model.config, name) == value for name, value in change.items()):
            continue
        earlier = with_decoder(model, **change).to(model.device).eval()
        if earlier.weights_sha256().startswith(weights_sha256):
            earlier.weights_path = model.weights_path
            return earlier
    return None


def load(
    name_or_path: str | os.PathLike, pretrained: bool = True, seed: int | None = None,
    device: torch.device | str = "cpu", weights_sha256: str | None = None,
) -> Tokenizer:
    """A Tokenizer in eval mode.

    name_or_path: a registry name (`otok-s`; see `list_models()`) or a path to a .safetensors file.
    pretrained: load the weights that ship with the package; False gives a random init (seeded by
    `seed`), for tests and as the start of training.
    weights_sha256: with a registry name, the release of its shipped weights with this hash when an
    earlier one is kept (`release_file`) or is the current one without a decoder part added since
    (`earlier_within`); otherwise the current weights (the caller compares hashes).
    """
    name = str(name_or_path)
    looks_like_path = name.endswith(".safetensors") or os.sep in name or Path(name).is_file()
    if looks_like_path:
        return load_file(name, device)
    if name not in list_models():
        raise WeightsError(f"unknown model {name!r}: give a .safetensors path or one of {', '.join(list_models())}")
    if pretrained:
        packaged = PACKAGED_WEIGHTS / f"{name}.safetensors"
        if weights_sha256 and release_file(name, weights_sha256).is_file():
            packaged = release_file(name, weights_sha256)
        if not packaged.is_file():
            raise WeightsError(
                f"no trained weights ship for {name!r}; use pretrained=False for a random init "
                "or train one with train/run.py"
            )
        model = load_file(packaged, device)
        if weights_sha256 and not model.weights_sha256().startswith(weights_sha256):
            return earlier_within(model, weights_sha256) or model
        return model
    with torch.random.fork_rng(devices=[]):  # a seeded init leaves the caller's RNG untouched
        if seed is not None:
            torch.manual_seed(seed)
        model = Tokenizer(get_config(name))
    return model.to(device).eval()
