"""`otok.open_dataset`: the rows of an `otok dataset` folder as a PyTorch IterableDataset."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import InputError
from .build import SHARDS


class TokenDataset(IterableDataset):
    """(tokens, metadata) for each row of the folder's shards. tokens: int64 (S, h, w), the values
    `otok.read_tokens` gives (a KL model's rows: float16 latents (S, C, h, w)); metadata: the row's other
    columns (path, start, frames, fps, width, height, shape, model, weights_sha256, otok).

    The shards' row groups are dealt out to DDP ranks (torch.distributed, else RANK and WORLD_SIZE) and
    DataLoader workers, so each row comes once per epoch across them all, in shard order within each part.
    Rows differ in shape: use batch_size=None, or a collate_fn of your own."""

    def __init__(self, folder: str | os.PathLike) -> None:
        shards = sorted((Path(folder) / SHARDS).glob("shard-*.parquet"))
        if not shards:
            raise InputError(f"{folder}: holds no shards (written by `otok dataset SRC --out {folder}`)")
        self.parts = [(shard, group) for shard in shards for group in range(pq.ParquetFile(shard).num_row_groups)]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict]]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, ranks = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, ranks = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        worker = get_worker_info()
        index, count = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for shard, group in self.parts[rank * count + index::ranks * count]:
            table = pq.ParquetFile(shard).read_row_group(group)
            column = "tokens" if "tokens" in table.column_names else "latents"
            values = table.column(column)
            for i, metadata in enumerate(table.drop_columns([column]).to_pylist()):
                array = values[i].values.to_numpy().astype(np.int64 if column == "tokens" else np.float16)
                yield torch.from_numpy(array.reshape(metadata["shape"])), metadata
