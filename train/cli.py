"""`python train/run.py ...` / `torchrun ... train/run.py ...`: parse, train, exit status."""

from __future__ import annotations

import sys

from .checkpoint import CheckpointError
from .config import parse_args
from .data import DataError


def main(argv: list[str] | None = None) -> int:
    """Returns 0 on success, 2 on a user error (one line on stderr)."""
    try:
        config = parse_args(argv)
        from .loop import train

        train(config)
    except (ValueError, KeyError, DataError, CheckpointError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"train/run.py: error: {message}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("train/run.py: interrupted (the last checkpoint is intact; continue with --resume)", file=sys.stderr)
        return 130
    return 0
