"""Train an otok tokenizer: `python train/run.py --stage image|joint|kl --model NAME --data DIR ...`.

Runs as a script (one process, or one per rank under `torchrun --nproc_per_node N train/run.py ...`).
The package is `otok.train`; when this folder is not installed under that name yet, it is mapped here.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _import_main():
    try:
        from otok.train.cli import main
    except ModuleNotFoundError as exc:
        if exc.name not in ("otok", "otok.train"):
            raise
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "otok.train", os.path.join(HERE, "__init__.py"), submodule_search_locations=[HERE]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["otok.train"] = module
        spec.loader.exec_module(module)
        from otok.train.cli import main
    return main


if __name__ == "__main__":
    # A script's folder leads sys.path: drop it, so that siblings (config.py, data.py) never shadow other modules.
    if sys.path and os.path.abspath(sys.path[0] or ".") == HERE:
        sys.path.pop(0)
    # Idle OpenMP threads sleep instead of spinning: on a shared or small CPU, spinning threads slow
    # training down severely (train/README.md). Set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(_import_main()(sys.argv[1:]))
