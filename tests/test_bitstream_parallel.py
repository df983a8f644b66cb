"""Segments coded in worker processes (bitstream.parallel): the same bytes, steps and damage reports as one
process."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from bitstream_helpers import Pipe
from otok.bitstream import CtxParams, Header, OtokReader, OtokWarning, OtokWriter, Prior, UsageError, read_tokens
from otok.bitstream import container as ct
from otok.bitstream import parallel
from otok.bitstream.synthetic import repetition_grids

GRID = (6, 8)
TOKENS = repetition_grids(23, GRID, 500, 0.7, 4, seed=3)  # 6 segments of 4 steps, the last one short
PRIOR = Prior.from_tokens([repetition_grids(8, GRID, 500, 0.7, 4, seed=4)[:4]], 500)


def header(coder: str = "ctx", gop: int = 4, literal_model: int = 1, k: int = 500, channels: int = 0) -> Header:
    h, w = GRID
    params = CtxParams(literal_model=literal_model) if coder == "ctx" else None
    return Header("otok-test", bytes(32), 8, 4, gop, GRID, 8 * w, 8 * h, (25, 1), codebook_size=k,
                  latent_channels=channels, coder=coder, coder_params=params)


def write(h: Header, values: np.ndarray, workers: int, prior: Prior | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    with OtokWriter(buf, h, prior=prior, workers=workers, **kw) as w:
        w.write(values[:7])
        w.write_ancillary(b"note", b"between steps")  # goes out after the steps written so far
        for step in values[7:]:
            w.write(step)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def small_jobs(monkeypatch):
    """Jobs of about two segments, so that several are in flight and the window fills."""
    monkeypatch.setattr(parallel, "JOB_VALUES", 2 * 4 * GRID[0] * GRID[1])


@pytest.mark.parametrize("coder, literal_model, steps_per_chunk", [
    ("ctx", 1, None), ("ctx", 0, 3), ("ctx", 1, 1), ("zstd", 0, None), ("raw", 0, 2)])
def test_workers_write_the_same_bytes_and_read_the_same_steps(coder, literal_model, steps_per_chunk):
    h = header(coder, literal_model=literal_model)
    prior = PRIOR if coder == "ctx" else None
    one = write(h, TOKENS, 1, prior, steps_per_chunk=steps_per_chunk)
    assert write(h, TOKENS, 2, prior, steps_per_chunk=steps_per_chunk) == one
    np.testing.assert_array_equal(read_tokens(io.BytesIO(one), workers=3), TOKENS)
    reader = OtokReader(io.BytesIO(one), workers=2)
    step = reader.seek(40)  # the fourth segment (frames 39..51, steps 12..15), its second step
    assert step == 13
    np.testing.assert_array_equal(np.stack(list(reader)), TOKENS[step:])


def test_latents_and_single_segment_files():
    latents = np.random.default_rng(0).standard_normal((9, 2) + GRID).astype(np.float16)
    h = header("f16z", k=0, channels=2)
    one = write(h, latents, 1)
    assert write(h, latents, 2) == one
    np.testing.assert_array_equal(read_tokens(io.BytesIO(one), workers=2), latents)
    whole = header(gop=0)  # one segment: coded in the calling process
    one = write(whole, TOKENS, 1, PRIOR)
    assert write(whole, TOKENS, 2, PRIOR) == one
    np.testing.assert_array_equal(read_tokens(io.BytesIO(one), workers=2), TOKENS)


def _read(data: bytes, workers: int, pipe: bool = False) -> tuple[list[np.ndarray], str | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OtokWarning)
        reader = OtokReader(Pipe(data) if pipe else io.BytesIO(data), prior=PRIOR, workers=workers)
        return list(reader), reader.damage


def test_damage_ends_a_parallel_read_where_it_ends_one_process():
    """Damage in the third of 16 segments, with jobs of two segments: more jobs than the 2 N in flight, so
    the damaged segment's result comes back while later segments are still being read."""
    tokens = repetition_grids(61, GRID, 500, 0.7, 4, seed=5)
    data = write(header(), tokens, 1, PRIOR)
    index = OtokReader(io.BytesIO(data)).index
    third = index[2].offset  # the first chunk of the third segment
    cases = {
        "cut": data[:third + 20],
        "crc": data[:third + 14] + bytes([data[third + 14] ^ 0xFF]) + data[third + 15:],
        # a chunk whose coder data is damaged but whose CRC holds: the worker's decode fails
        "payload": _rechunk_step(data, third),
    }
    for name, damaged in cases.items():
        steps, message = _read(damaged, 1)
        assert message and len(steps) < 12, name
        for workers, pipe in ((2, False), (3, False), (2, True)):
            got, got_message = _read(damaged, workers, pipe)
            assert got_message == message, (name, workers, pipe)
            assert len(got) == len(steps) and all(np.array_equal(a, b) for a, b in zip(got, steps)), name
    assert _read(data, 2, pipe=True)[1] is None


def _rechunk_step(data: bytes, offset: int) -> bytes:
    """The STEP chunk at `offset` with its coder data cut to 4 bytes, CRC recomputed."""
    chunk = ct.ChunkReader(io.BytesIO(data[offset:]), 0, None).next()
    payload = chunk.payload[:8] + chunk.payload[8:12]
    return data[:offset] + ct.chunk_bytes(ct.STEP, payload) + data[offset + chunk.end:]


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_workers_must_be_a_positive_integer(workers):
    with pytest.raises(UsageError):
        OtokWriter(io.BytesIO(), header(), workers=workers)
    data = write(header(), TOKENS, 1, PRIOR)
    with pytest.raises(UsageError):
        OtokReader(io.BytesIO(data), workers=workers)


def test_a_dead_worker_is_reported_and_the_next_read_starts_a_new_pool():
    from concurrent.futures.process import BrokenProcessPool

    from bitstream_helpers import die

    jobs = parallel.InOrder(2, die)
    jobs.add("tag", "item", parallel.JOB_VALUES)
    with pytest.raises(BrokenProcessPool):
        jobs.drain()
    data = write(header(), TOKENS, 1, PRIOR)
    np.testing.assert_array_equal(read_tokens(io.BytesIO(data), prior=PRIOR, workers=2), TOKENS)


def test_a_daemonic_process_is_told_to_use_one_worker(monkeypatch):
    import multiprocessing

    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)
    with pytest.raises(UsageError, match="daemonic"):
        OtokReader(io.BytesIO(write(header(), TOKENS, 1, PRIOR)), workers=2)


def test_coded_bytes_leave_an_iteration_where_it_was():
    """A truncated file has no index: measuring it scans the chunks, and the iteration goes on unharmed."""
    data = write(header(), TOKENS, 1, PRIOR)
    cut = data[:OtokReader(io.BytesIO(data)).index[-1].offset + 20]  # inside the last STEP chunk
    steps, message = _read(cut, 1)
    reader = OtokReader(io.BytesIO(cut), prior=PRIOR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OtokWarning)
        it = iter(reader)
        first = [next(it), next(it)]
        assert reader.coded_bytes > 0
        rest = list(it)
    assert reader.damage == message
    assert all(np.array_equal(a, b) for a, b in zip(first + rest, steps)) and len(first + rest) == len(steps)


def test_large_segments_are_coded_in_this_process(monkeypatch):
    """A job holds whole segments: segments above MAX_SEGMENT_VALUES are coded here, as they come."""
    monkeypatch.setattr(parallel, "MAX_SEGMENT_VALUES", 4 * GRID[0] * GRID[1] - 1)
    assert not parallel.in_parallel(2, 4, GRID[0] * GRID[1]) and parallel.in_parallel(2, 3, GRID[0] * GRID[1])
    buf = io.BytesIO()
    writer = OtokWriter(buf, header(), prior=PRIOR, workers=2)
    start = len(buf.getvalue())
    writer.write(TOKENS[:8])
    assert len(buf.getvalue()) > start  # two segments' chunks out already, not queued
    writer.write(TOKENS[8:])
    writer.close()
    one = io.BytesIO()
    with OtokWriter(one, header(), prior=PRIOR) as w:
        w.write(TOKENS)
    assert buf.getvalue() == one.getvalue()
    np.testing.assert_array_equal(read_tokens(io.BytesIO(buf.getvalue()), prior=PRIOR, workers=2), TOKENS)


def _read_in_a_forked_child(data: bytes, queue) -> None:
    try:
        read_tokens(io.BytesIO(data), prior=PRIOR, workers=2)
        queue.put("read")
    except UsageError as e:
        queue.put(str(e))


def test_a_forked_child_is_told_to_use_one_worker():
    """A child made by fork inherits pools and a fork server it cannot use: one clear error, no hang."""
    import multiprocessing

    data = write(header(), TOKENS, 1, PRIOR)
    np.testing.assert_array_equal(read_tokens(io.BytesIO(data), prior=PRIOR, workers=2), TOKENS)  # a pool here
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_a_forked_child, args=(data, queue))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0 and "made by fork" in queue.get(timeout=5)


def test_numpy_integers_count_as_workers():
    data = write(header(), TOKENS, 1, PRIOR)
    assert OtokReader(io.BytesIO(data), workers=np.int64(2)).workers == 2
