"""The `otok` console script: imports the CLI (PyTorch and numba load for a second or more) where Ctrl-C
ends it with one line, not a traceback."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from otok.tools.cli import main as cli_main
    except KeyboardInterrupt:
        print("otok: error: interrupted", file=sys.stderr)
        return 130
    return cli_main()
