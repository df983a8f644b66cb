"""Paths a user gives: inputs that can be read, outputs written atomically under a temporary name (a
failure never leaves a half-written file), pipes told from files, and `.otok` readers opened with the
model's prior tables."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from otok.bitstream import OtokError, OtokReader, OtokWarning
from otok.bitstream.container import MAGIC
from otok.codec import Tokenizer

from .errors import ArgumentError, InputError, at, printable
from .models import model_priors
from .video_io import VideoReader


def check_otok_output(dst: Path, force: bool = False) -> None:
    """An encode writes `.otok` files only: a name with another suffix is refused (`otok encode a.mp4 b.mp4`
    must not replace a video with token bytes), and so is an existing file that is not an `.otok` file,
    unless `force`."""
    if dst.suffix.lower() != ".otok":
        raise InputError(f"{printable(str(dst))}: an encode writes .otok files; name the output NAME.otok")
    if force or not dst.is_file():
        return
    with open(dst, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise ArgumentError("force", f"{printable(str(dst))} exists and is not an .otok file; replace it with force=True")


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
    """Yield a temporary path beside `dst`; rename it to `dst` on success. On any failure the temporary file
    goes, and so do the folders made for it. Partial files that killed runs left in the folder go first."""
    made = [p for p in (dst.parent, *dst.parent.parents) if not p.exists()]
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(dst.parent)
    tmp = dst.with_name(f".{partial_stem(dst.name)}.{os.getpid()}.partial")
    try:
        yield tmp
        check_writing(tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        for folder in made:  # the innermost first; one that now holds something else stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def partial_stem(name: str) -> str:
    """The output's name as a temporary name may hold it: printable ASCII (a name that is not UTF-8, or holds
    a newline, still gets a temporary file every library can open), short enough to fit where `name` fits."""
    return ascii(name)[1:-1].replace("/", "_")[:120]


def check_writing(tmp: Path) -> None:
    """Between steps: stop early when the output's folder has gone (a run would go to the end for nothing)."""
    if not tmp.parent.is_dir():
        raise InputError(f"the folder {tmp.parent} was removed while the output was written; stopped")


def is_stream(src: Path) -> bool:
    """True for an input that can be read only once: a pipe, a FIFO, /dev/stdin (anything not a regular file)."""
    try:
        return not stat.S_ISREG(os.stat(src).st_mode)
    except OSError:
        return False


def check_seekable(src: Path, why: str) -> None:
    if is_stream(src):
        raise InputError(f"{src}: {why}, so the input must be a seekable file, not a pipe or FIFO")


def remove_stale_partials(folder: Path) -> None:
    """Delete the `.NAME.PID.partial` files that killed otok runs left in `folder` (their PID no longer
    runs), whatever output they were for."""
    for path in folder.glob(".*.partial"):
        pid = path.name[: -len(".partial")].rpartition(".")[2]
        if pid.isdigit() and not _running(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


def check_input(src: Path) -> None:
    try:
        os.stat(src)
    except OSError as exc:
        raise InputError(f"{src}: {'no such file' if exc.errno == errno.ENOENT else exc.strerror}") from None
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


