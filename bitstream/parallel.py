"""Segments coded in parallel processes (`OtokWriter(workers=N)`, `OtokReader(workers=N)`).

Every segment starts from fresh coder state (SPEC §6: counts reset at a segment start), so N processes can
code N segments at once: the bytes are those one process writes, and the steps those it reads. The main
process keeps the file's order and reads and writes every chunk itself. At most 2 N jobs are in flight,
each of about JOB_VALUES values or one segment, and a file whose segments hold more than MAX_SEGMENT_VALUES
values (a long `gop` on a large grid), or has a single segment (`gop` 0), is coded in the calling process,
so memory stays bounded. Pools are started on first use (the "forkserver" method where the platform has
it, else "spawn": never "fork", which is unsafe in a process that runs threads, such as PyTorch's) and
kept for the life of the process; a process forked from it codes with workers=1. As with any process
pool, a script that uses workers runs its work under `if __name__ == "__main__":`, since the workers
import its module.
"""

from __future__ import annotations

import multiprocessing
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from .coders import coder_by_name
from .errors import OtokError, UsageError
from .header import Header
from .prior import Prior

# A job takes segments until they hold this many values: a 360p segment of 5 steps holds 18,000, and a
# job of one such segment would cost the pool more in messages than it saves.
JOB_VALUES = 1 << 16
# Segments larger than this (values) are coded in the calling process: a job holds whole segments.
MAX_SEGMENT_VALUES = 1 << 21

_POOLS: dict[int, ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
_FORKED = [False]  # whether this process was forked from the one that imported this module


def _after_fork_in_child() -> None:
    """A forked child inherits its parent's pools and fork server, which it cannot use (a read there hung
    or failed in our tests): it codes with workers=1."""
    _POOLS.clear()
    _FORKED[0] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def check_workers(workers: int) -> int:
    """workers as an int, or UsageError: an integer >= 1, and 1 inside a daemonic process."""
    try:
        value = operator.index(workers)
    except TypeError:
        value = 0
    if isinstance(workers, bool) or value < 1:
        raise UsageError(f"workers must be an integer >= 1, got {workers!r}")
    if value > 1 and multiprocessing.current_process().daemon:
        raise UsageError("workers > 1 needs child processes, which a daemonic process (e.g. a PyTorch "
                         "DataLoader worker) cannot start: use workers=1 there")
    if value > 1 and _FORKED[0]:
        raise UsageError("workers > 1 cannot start processes in a process made by fork from one that "
                         "imported otok.bitstream: use workers=1 there, or the spawn or forkserver start method")
    return value


def in_parallel(workers: int, gop: int, step_values: int) -> bool:
    """Whether a file of segments of `gop` steps of `step_values` values each is coded in workers."""
    return workers > 1 and 0 < gop and gop * step_values <= MAX_SEGMENT_VALUES


def _pool(workers: int) -> ProcessPoolExecutor:
    with _POOLS_LOCK:
        if workers not in _POOLS:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            _POOLS[workers] = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        return _POOLS[workers]


def warm_up(workers: int) -> None:
    """Start all `workers` processes of the pool now (a pool starts them as jobs arrive), e.g. before
    timing."""
    pool = _pool(workers)
    for job in [pool.submit(time.sleep, 0.2) for _ in range(workers)]:
        job.result()


class InOrder:
    """Items (segments) coded by fn(*args, items) -> one result per item, in a pool of `workers`
    processes: items go out in jobs of about JOB_VALUES values, results come back in order, each with the
    tag it was added with, at most 2 * workers jobs in flight (adding waits for the oldest when full)."""

    def __init__(self, workers: int, fn: Callable, *args) -> None:
        self.workers, self._fn, self._args = workers, fn, args
        self._jobs: deque[tuple[list, Future, ProcessPoolExecutor]] = deque()
        self._tags: list = []
        self._items: list = []
        self._values = 0

    def add(self, tag: object, item: object, values: int) -> list[tuple[object, object]]:
        """Queue an item of `values` values -> (tag, result) of the oldest items that had to finish."""
        self._tags.append(tag)
        self._items.append(item)
        self._values += values
        return self._submit() if self._values >= JOB_VALUES else []

    def drain(self) -> list[tuple[object, object]]:
        """(tag, result) of every item still due, in order."""
        done = self._submit() if self._items else []
        while self._jobs:
            done += self._pop()
        return done

    def cancel(self) -> None:
        """Drop what is still due (a job already running finishes in its process; its result is dropped)."""
        self._tags, self._items, self._values = [], [], 0
        while self._jobs:
            self._jobs.popleft()[1].cancel()

    def _submit(self) -> list[tuple[object, object]]:
        done = []
        while len(self._jobs) >= 2 * self.workers:
            done += self._pop()
        pool = _pool(self.workers)  # a new one if an earlier job broke the last
        self._jobs.append((self._tags, pool.submit(self._fn, *self._args, self._items), pool))
        self._tags, self._items, self._values = [], [], 0
        return done

    def _pop(self) -> list[tuple[object, object]]:
        tags, job, pool = self._jobs.popleft()
        try:
            return list(zip(tags, job.result()))
        except BrokenProcessPool:  # a worker died (killed, out of memory): the next job starts a new pool
            with _POOLS_LOCK:
                if _POOLS.get(self.workers) is pool:
                    del _POOLS[self.workers]
            raise


# -- in the worker processes: a fresh coder per segment, so that no state carries over from another file
def encode_segments(header: Header, prior: Prior | None, segments: list[list[tuple[int, np.ndarray]]]
                    ) -> list[list[bytes]]:
    """Per segment, the coder data of its chunks [(first step, steps), ...], the first at its start."""
    out = []
    for chunks in segments:
        coder = coder_by_name(header.coder)(header, prior)
        out.append([coder.encode(steps, first) for first, steps in chunks])
    return out


def decode_segments(header: Header, prior: Prior | None, segments: list[list[tuple[int, int, bytes]]]
                    ) -> list[tuple[list[np.ndarray], OtokError | None]]:
    """Per segment [(first step, steps, coder data), ...]: (the values of each chunk that decoded, the error
    that stopped it or None). A damaged chunk ends the read, as it ends a sequential one: no segment after
    it is decoded."""
    out = []
    for chunks in segments:
        coder = coder_by_name(header.coder)(header, prior)
        values = []
        try:
            for first, n, data in chunks:
                values.append(coder.decode(data, first, n))
        except OtokError as e:
            out.append((values, e))
            break
        out.append((values, None))
    return out
