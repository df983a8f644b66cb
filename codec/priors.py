"""Where a model's prior tables lie, and how they travel with it.

The `ctx` coder codes tokens with a prior table measured on the model's tokens; a file names the table it
was coded with by hash and does not embed it, so the table must go wherever the weights go (as CompressAI
keeps its entropy tables with the model). This module is the one place that knows the file names:

- beside weights `STEM.safetensors`: `STEM.prior`, the table new files reference, and `STEM.<hash>.prior`
  or `NAME.<hash>.prior` (NAME the registry name), tables of earlier releases that older files reference;
- in an engine folder (`otok export`): `model.prior` and `model.<hash>.prior`.

`<hash>` is the first 16 hex digits of the table's SHA-256 (`otok.bitstream.Prior.sha256`). Paths only:
no PyTorch and no bitstream here, so `otok.read_tokens`, the exporters and the CLI share it.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".prior"
ENGINE_STEM = "model"  # an engine folder's tables: model.prior, model.<hash>.prior
PACKAGED_WEIGHTS = Path(__file__).parent / "weights"  # the models this installation ships, with their tables
_EARLIER = re.compile(r"^(?P<stem>.+)\.(?P<hash>[0-9a-f]{16})\.prior$")


@dataclass(frozen=True)
class PriorFiles:
    """A model's prior table files: `current` (None when none ships) and `earlier` releases' tables."""

    current: Path | None
    earlier: tuple[Path, ...] = ()

    def all(self) -> list[Path]:
        return ([self.current] if self.current is not None else []) + list(self.earlier)


def earlier_name(stem: str, sha256_hex: str) -> str:
    """The file name under which `stem` keeps a table it no longer writes: STEM.<hash>.prior."""
    return f"{stem}.{sha256_hex[:16]}{SUFFIX}"


def prior_files(model) -> PriorFiles:
    """The prior tables of a loaded model: beside the weights it was read from (`weights_path`), or in its
    engine folder (`engine_dir`). A model built in memory has none."""
    weights, engine = getattr(model, "weights_path", None), getattr(model, "engine_dir", None)
    if weights is not None:
        return _files_beside(Path(weights).with_suffix(SUFFIX), model.config.name)
    if engine is not None:
        return engine_prior_files(engine)
    return PriorFiles(None)


def engine_prior_files(engine_dir: str | os.PathLike) -> PriorFiles:
    """The prior tables in an engine folder."""
    return _files_beside(Path(engine_dir) / f"{ENGINE_STEM}{SUFFIX}", ENGINE_STEM)


def _files_beside(current: Path, name: str) -> PriorFiles:
    folder = current.parent
    found = {*folder.glob(f"{glob.escape(current.stem)}.*{SUFFIX}"), *folder.glob(f"{glob.escape(name)}.*{SUFFIX}")}
    earlier = sorted(p for p in found - {current} if _EARLIER.match(p.name) and p.is_file())
    return PriorFiles(current if current.is_file() else None, tuple(earlier))


def copy_prior_files(files: PriorFiles, out_dir: str | os.PathLike) -> list[Path]:
    """Copy a model's tables into an engine folder under the engine's names (model.prior, model.<hash>.prior);
    returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = [(files.current, f"{ENGINE_STEM}{SUFFIX}")] if files.current is not None else []
    pairs += [(p, earlier_name(ENGINE_STEM, _EARLIER.match(p.name)["hash"])) for p in files.earlier]
    written = []
    for source, name in pairs:
        target = out_dir / name
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        written.append(target)
    return written


def packaged_prior_files() -> list[Path]:
    """Every table that ships with the installed models, current and earlier: those `ctx` files may name."""
    return sorted(PACKAGED_WEIGHTS.glob(f"*{SUFFIX}")) if PACKAGED_WEIGHTS.is_dir() else []
