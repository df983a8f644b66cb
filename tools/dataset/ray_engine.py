"""engine="ray": Ray Data reads the path list and tokenizes it in a pool of actors that each load the model
once (`FileTokenizer`); the rows stream back to the driver, which writes the shards (`build_dataset`), so
a killed actor never leaves part of a shard. On a cluster, the inputs (and DIR, for also_otok) must be at
the same paths on every node, and otok installed there.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import ray
import ray.data

from ..models import load_model
from ..errors import ModelError
from .build import FileTokenizer, Options


MAX_RETRIES = 2  # a file whose actor dies this many times more (a decoder crash, say) is listed as failed


class RayTokenizer(FileTokenizer):
    """A Ray Data actor: loads the model once, then tokenizes each batch of paths it is given."""

    def __init__(self, model, device: str, options: Options, out: str, coder: str, also_otok: bool, cwd: str):
        with contextlib.suppress(OSError):  # relative paths mean what they meant to the command
            os.chdir(cwd)
        tok = load_model(model, device)
        if tok.weights_sha256() != options.weights_sha256:
            raise ModelError(f"model={model} on this node has weights {tok.weights_sha256()[:12]}, not the "
                             f"{options.weights_sha256[:12]} the command loaded")
        super().__init__(tok, options, Path(out), coder, also_otok)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.concat_tables([self.table(path) for path in batch["path"].to_pylist()])


def tokenize(paths: list[str], model, options: Options, out: Path, coder: str, also_otok: bool,
             workers: int | None, gpus_per_worker: float, address: str | None) -> Iterator[pa.Table]:
    """Tables of rows (with the `error` column) as the actors finish them, in any order: one per file.
    Without `address`, a local Ray instance is started for the call and shut down after it."""
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="error")
    context, data_logger = ray.data.DataContext.get_current(), logging.getLogger("ray.data")
    saved = context.enable_progress_bars, context.max_errored_blocks, data_logger.level
    context.enable_progress_bars = False  # the command's own bar counts files
    context.max_errored_blocks = -1  # a file whose actor died MAX_RETRIES + 1 times is listed, not fatal
    data_logger.setLevel(logging.CRITICAL)  # no INFO lines, nor a traceback for a file failures.jsonl lists
    try:
        resources = ray.cluster_resources()
        if workers is None:  # one actor per CPU of the instance, or per gpus_per_worker GPUs
            workers = int(resources.get("GPU", 0) // gpus_per_worker if gpus_per_worker else resources.get("CPU", 1))
        device = "cuda" if gpus_per_worker else "cpu"
        items = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=len(paths))
        settings = (None if model is None else str(model), device, options, str(out), coder, also_otok, os.getcwd())
        rows = items.map_batches(RayTokenizer, fn_constructor_args=settings, batch_size=1, batch_format="pyarrow",
                                 compute=ray.data.ActorPoolStrategy(size=max(1, workers)), num_cpus=1,
                                 num_gpus=gpus_per_worker or None, max_task_retries=MAX_RETRIES)
        yield from rows.iter_batches(batch_size=None, batch_format="pyarrow")
    finally:
        context.enable_progress_bars, context.max_errored_blocks = saved[:2]
        data_logger.setLevel(saved[2])
        if started:
            ray.shutdown()
