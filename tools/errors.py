"""The errors of otok's library functions: one family under `otok.bitstream.OtokError`.

Messages speak about data and Python arguments (`rdo`, `model=PATH`); the CLI (`otok.tools.cli`) turns
them into its one-line messages and names its flags instead (`--rdo`, `--model PATH`).
"""

from __future__ import annotations

from otok.bitstream.errors import OtokError, UsageError


class ArgumentError(UsageError):
    """An argument that does not fit. `argument` is its Python name; the message writes it as `rdo` or
    `rdo=VALUE`, which the CLI rewrites to `--rdo` / `--rdo VALUE`."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


class InputError(OtokError):
    """An input or output path that cannot be used: missing, a folder, unreadable, the input itself."""


class ModelError(OtokError):
    """Weights that do not load, an unknown model name, or weights that did not write the file at hand."""


class MediaError(OtokError, ValueError):
    """A file that cannot be read or written as video or image; the message says why, in one line."""


# What each optional extra installs: the distribution is not on PyPI, so the hint names the packages (and the
# extra, for a checkout).
EXTRAS = {"onnx": "onnx onnxruntime", "gpu": "onnx onnxruntime-gpu tensorrt", "ray": "'ray[data]'"}


def install_hint(extra: str) -> str:
    """How to install an optional extra: its packages, or the extra itself from a checkout."""
    return f"pip install {EXTRAS[extra]} (in a checkout of otok: pip install -e '.[{extra}]')"


def at(where: object, exc: OtokError) -> OtokError:
    """`exc` with its message starting `WHERE: ` (once), same type and attributes, to re-raise."""
    prefix = f"{where}: "
    if not str(exc).startswith(prefix):
        exc.args = (prefix + str(exc), *exc.args[1:])
    return exc


def printable(text: str) -> str:
    """Text from a file, safe for a terminal and one line: every character that does not print (ESC, BEL, CR,
    newlines) written as its escape, e.g. \\x1b."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
