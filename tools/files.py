"""Paths a user gives: inputs that can be read, outputs written atomically under a temporary name (a
failure never leaves a half-written file), pipes told from files, and `.otok` readers opened with the
model's prior tables."""

from __future__ import annotations

import contextlib
import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from otok.bitstream import OtokError, OtokReader, OtokWarning
from otok.codec import Tokenizer

from .errors import InputError, at
from .models import model_priors
from .video_io import VideoReader


def check_output(dst: Path, sources: Iterable[Path] = ()) -> None:
    """An output file name that can be written: not a folder, not an input. Missing folders are made when
    the output is written (`atomic_output`)."""
    if dst.is_dir():
        raise InputError(f"{dst} is a folder; give a file name")
    for parent in dst.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"cannot write {dst}: {parent} is a file, not a folder")
            break
    for src in sources:
        if dst.exists() and src.exists() and os.path.samefile(src, dst):
            raise InputError(f"output {dst} is the input file; choose another name")
    if dst.exists() and not dst.is_file():  # /dev/null, a FIFO: never replaced by a regular file
        raise InputError(f"{dst} is not a regular file (a device or FIFO); otok writes its outputs as files")


@contextlib.contextmanager
def atomic_output(dst: Path) -> Iterator[Path]:
    """Yield a temporary path beside `dst`; rename it to `dst` on success, delete it on any failure."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    stem = dst.name.encode()[:160].decode("utf-8", "ignore")  # the temporary name fits where `dst`'s does
    remove_stale_partials(dst.parent, stem)
    tmp = dst.with_name(f".{stem}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def is_stream(src: Path) -> bool:
    """True for an input that can be read only once: a pipe, a FIFO, /dev/stdin (anything not a regular file)."""
    try:
        return not stat.S_ISREG(os.stat(src).st_mode)
    except OSError:
        return False


def check_seekable(src: Path, why: str) -> None:
    if is_stream(src):
        raise InputError(f"{src}: {why}, so the input must be a seekable file, not a pipe or FIFO")


def remove_stale_partials(folder: Path, stem: str) -> None:
    """Delete `.STEM.PID.partial` files that a killed otok left (its PID no longer runs)."""
    for path in folder.glob(f".{glob_escape(stem)}.*.partial"):
        pid = path.name[len(stem) + 2:-len(".partial")]
        if pid.isdigit() and not _running(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


def check_input(src: Path) -> None:
    if not src.exists():
        raise InputError(f"{src}: no such file")
    if src.is_dir():
        raise InputError(f"{src}: is a folder, not a file")
    if not os.access(src, os.R_OK):
        raise InputError(f"{src}: permission denied")


def open_video(src: Path, max_side: int | None = None, frames: int | None = None) -> VideoReader:
    return VideoReader(src, max_side=max_side, max_frames=frames)


@contextlib.contextmanager
def damage_reported_by_caller() -> Iterator[None]:
    """Silence the reader's OtokWarning: where a file stops early, `reader.damage` says why and the caller
    reports it once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OtokWarning)
        yield


def open_otok(src: Path, tok: Tokenizer | None = None) -> OtokReader:
    """A reader; `tok` supplies the prior table that a ctx file may reference without embedding."""
    check_input(src)
    try:
        return OtokReader(src, prior=model_priors(tok) if tok is not None else None)
    except OtokError as exc:
        raise at(src, exc) from None


