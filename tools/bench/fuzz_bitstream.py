"""Coverage-guided fuzzing of the `.otok` reader with atheris, and the crafted files it starts from.

    pip install atheris
    python tools/bench/fuzz_bitstream.py --write-seeds fuzz-seeds/        # crafted files: bombs, metadata
    OMP_WAIT_POLICY=PASSIVE nice -n 10 python tools/bench/fuzz_bitstream.py -runs=1000000 -rss_limit_mb=2048 \\
        -timeout=20 -artifact_prefix=fuzz-crashes/ fuzz-corpus/ fuzz-seeds/ tests/golden/bitstream/

Every input must either raise an `OtokError` or read cleanly; any other exception, a failed check, a crash,
a hang (-timeout) or a blow-up in memory is a bug. What is checked per input (`test_one_input`):
- the reader: iteration, seek, verify, `read_tokens(allow_truncated=True)`, `coded_bytes`;
- memory (SPEC §7.2): the peak traced allocation of `read_tokens` stays within `memory_bound` of its
  output and the file's size (tracemalloc sees numpy's and Python's allocations), checked where the output
  is large against the file and on one input in 8 otherwise (`check_memory`);
- metadata as `otok info` shows it: the model name and the `encd` settings come out as JSON without NaN or
  Infinity, and `printable` leaves no character that does not print (ESC, BEL, CR, newlines).
Each input is read as it is and, where that differs, with every chunk's CRC-32 recomputed, so that
mutations reach the payloads (header fields, coder data, prior tables, index, trailer) instead of
stopping at the CRC check.

The kernels of `otok.bitstream.coders.ctx_kernels` are left out of atheris's instrumentation: numba cannot
compile bytecode that atheris has rewritten (issue 29 D.17: the first ctx seed crashed the fuzzer with a
fresh numba cache). `tests/test_untrusted_files.py` runs this harness on the seeds and on mutations of
them in CI, and runs atheris itself for a few thousand executions when it is installed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import zstandard

UNINSTRUMENTED = ["otok.bitstream.coders.ctx_kernels"]  # numba compiles these from their bytecode
FUZZING = __name__ == "__main__" and "--write-seeds" not in sys.argv
if FUZZING:
    import atheris
# Run as the fuzzer, the reader is instrumented as it is imported here (the package `otok`, less the kernels).
with atheris.instrument_imports(include=["otok"], exclude=UNINSTRUMENTED) if FUZZING else contextlib.nullcontext():
    from otok.bitstream import Header, OtokError, OtokReader, OtokWarning, OtokWriter, Prior, read_tokens
    from otok.bitstream import bitpack, limits
    from otok.bitstream import container as ct
    from otok.bitstream.reader import KEPT_ANCILLARY_BYTES
SHA = bytes(32)
TRACE_ONE_IN = 8
SCRATCH_BYTES = 8 << 20  # the coders' block scratch, the prior and coder tables, Python's own small objects


def memory_bound(output_bytes: int, file_bytes: int) -> int:
    """The most `read_tokens` may allocate at once (SPEC §7.2): twice its output (the output and one chunk's
    decoded values, or the gathered steps and their copy into one array), what the file's size backs
    (`PREALLOCATE_PER_BYTE` per byte, plus `PREALLOCATE_MIN`), and a few MiB of scratch."""
    return (2 * output_bytes + limits.PREALLOCATE_PER_BYTE * file_bytes + limits.PREALLOCATE_MIN
            + SCRATCH_BYTES)


# -- crafted files --------------------------------------------------------------------------------------
def assemble(header: Header, steps: list[tuple[int, int, bytes]], *, prior: Prior | None = None,
             ancillary: list[tuple[bytes, bytes]] = (), trailer: bool = True) -> bytes:
    """A file from coder data written by hand: (first_step, n_steps, coder bytes) per STEP chunk, with an
    index and a trailer that agree with them (`trailer` False: cut before the index)."""
    minor = 2 if header.coder == "ctx" and header.coder_params.literal_model else 1 if header.coder == "ctx" else 0
    out = bytearray(ct.preamble(minor) + ct.chunk_bytes(ct.HEAD, header.pack()))
    if prior is not None:
        out += ct.chunk_bytes(ct.PRIO, prior.to_bytes())
    for ctype, payload in ancillary:
        out += ct.chunk_bytes(ctype, payload)
    index = []
    for first, n, data in steps:
        info = ct.StepInfo(first, n, first % header.gop == 0 if header.gop else first == 0, len(out))
        index.append(info)
        out += ct.chunk_bytes(ct.STEP, info.pack() + data)
    if trailer:
        total = sum(n for _, n, _ in steps)
        index_offset = len(out)
        frames = 1 + (total - 1) * header.temporal if total else 0
        out += ct.chunk_bytes(ct.INDX, ct.pack_index(index))
        out += ct.chunk_bytes(ct.TAIL, ct.TAIL_PAYLOAD.pack(frames, total, index_offset))
    return bytes(out)


def _header(coder: str, grid: tuple[int, int], *, k: int = 1 << 14, channels: int = 0, model: str = "otok-test",
            params=None) -> Header:
    return Header(model, SHA, 8, 4, 0, grid, grid[1] * 8, grid[0] * 8, (30, 1), codebook_size=0 if channels else k,
                  latent_channels=channels, coder=coder, coder_params=params)


def zstd_bomb(grid: tuple[int, int], steps: int, chunks: int = 1, *, latent_channels: int = 0,
              trailer: bool = True) -> bytes:
    """zstd (or, with latent channels, f16z) chunks of all-zero values: each zstd frame of zeros is some
    30,000 times smaller than what it declares (2**26 values of 14 bits in 3.5 KB)."""
    header = _header("f16z" if latent_channels else "zstd", grid, channels=latent_channels)
    count = steps * int(np.prod(header.step_shape))
    size = 2 * count if latent_channels else bitpack.packed_size(count, bitpack.bits_for(header.codebook_size))
    compressor = zstandard.ZstdCompressor(level=19, write_content_size=True)
    frame = compressor.compress(bytes(size))
    return assemble(header, [(i * steps, steps, frame) for i in range(chunks)], trailer=trailer)


def ctx_bomb(grid: tuple[int, int], steps: int, chunks: int = 1, *, ordered: bool = True,
             trailer: bool = True) -> bytes:
    """ctx chunks of all-zero tokens (a few bytes per chunk once the modes have learnt that every token
    repeats), with an embedded prior that has a code order (as the shipped models' do: the decoder maps
    ranks to tokens) when `ordered`."""
    k = 1 << 10
    prior = None
    if ordered:
        base = Prior.uniform(k)
        prior = Prior(k, base.mode_counts, base.part_counts, order=np.random.default_rng(0).permutation(k))
    header = _header("ctx", grid, k=k)
    buf = io.BytesIO()
    with OtokWriter(buf, header, prior=prior, steps_per_chunk=steps) as w:
        for _ in range(chunks):
            w.write(np.zeros((steps,) + grid, dtype=np.int64))
    data = buf.getvalue()
    return data if trailer else _cut_after_steps(data)


def _cut_after_steps(data: bytes) -> bytes:
    """The file cut right after its last STEP chunk (no index, no trailer)."""
    entry = OtokReader(io.BytesIO(data)).index[-1]
    length = int.from_bytes(data[entry.offset:entry.offset + 4], "little")
    return data[:entry.offset + ct.CHUNK_OVERHEAD + length]


def metadata_file(model: str = "otok-test", encd: bytes | None = None, coder: str = "zstd") -> bytes:
    """A small valid file whose header names `model` and whose `encd` chunk holds `encd` (any bytes)."""
    header = _header(coder, (2, 3), k=300, model=model)
    buf = io.BytesIO()
    with OtokWriter(buf, header) as w:
        if encd is not None:
            w.write_ancillary(ct.ENCD, encd)
        w.write(np.arange(3 * 6).reshape(3, 2, 3) % 300)
    return buf.getvalue()


def crafted_files() -> dict[str, bytes]:
    """What issue 29 crafted, small enough to fuzz from: memory bombs, terminal escapes in the model name
    and in the encoder settings, settings nested past Python's stack, NaN and Infinity."""
    nested = b"[" * 100_000 + b"]" * 100_000
    return {
        "bomb_zstd.otok": zstd_bomb((32, 32), 8, 2),
        "bomb_zstd_cut.otok": zstd_bomb((32, 32), 8, 2, trailer=False),
        "bomb_f16z.otok": zstd_bomb((16, 16), 8, 2, latent_channels=4),
        "bomb_ctx.otok": ctx_bomb((32, 32), 8, 2),
        "bomb_ctx_cut.otok": ctx_bomb((32, 32), 8, 2, trailer=False),
        "name_escapes.otok": metadata_file("\x1b[2J\x1b]0;owned\x07otok-s\r\n\u202e"),
        "name_path.otok": metadata_file("../../../../etc/passwd"),
        "encd_escapes.otok": metadata_file(encd=json.dumps({"model": "\x1b[31mred\x07", "crf": "\r\n"}).encode()),
        "encd_nested.otok": metadata_file(encd=nested[:KEPT_ANCILLARY_BYTES // 2] + nested[-KEPT_ANCILLARY_BYTES // 2:]),
        "encd_nan.otok": metadata_file(encd=b'{"rdo": NaN, "crf": Infinity, "x": -Infinity}'),
        "encd_not_utf8.otok": metadata_file(encd=b'{"a": "\xff\xfe"}'),
    }


def write_seeds(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in crafted_files().items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


# -- the harness ----------------------------------------------------------------------------------------
def fix_crcs(data: bytes) -> bytes:
    """Every chunk's CRC-32 recomputed, walking the length fields from the preamble on (as far as they fit)."""
    out = bytearray(data)
    at = len(ct.PREAMBLE)
    while at + 12 <= len(out):
        end = at + 8 + int.from_bytes(out[at:at + 4], "little")
        if end + 4 > len(out):
            break
        out[end:end + 4] = zlib.crc32(bytes(out[at + 4:end])).to_bytes(4, "little")
        at = end + 4
    return bytes(out)


def _shown_metadata(reader: OtokReader) -> None:
    """What `otok info` takes from a file: JSON-safe, and printable once escaped."""
    from otok.tools.errors import printable
    from otok.tools.info import encoder_settings
    settings = encoder_settings(reader)
    text = json.dumps({"model": reader.header.model, "encoder_settings": settings}, allow_nan=False)
    for shown in (printable(reader.header.model), printable(text)):
        assert shown.isprintable(), repr(shown)


def check_reader(data: bytes) -> None:
    """One input through the reader; raises anything but OtokError on a bug."""
    try:
        reader = OtokReader(io.BytesIO(data))
    except OtokError:
        return
    try:
        _shown_metadata(reader)
        try:
            assert 0 <= reader.coded_bytes <= len(data)
        except OtokError:
            pass
        if reader.complete and reader.frames:
            reader.seek(reader.frames - 1)
            for _ in reader:
                pass
        reader.verify()
    except OtokError:
        pass
    del reader
    try:
        out = read_tokens(io.BytesIO(data), allow_truncated=True)
    except OtokError:
        return
    if out.nbytes > limits.PREALLOCATE_PER_BYTE * len(data) or zlib.crc32(data) % TRACE_ONE_IN == 0:
        check_memory(data)


def check_memory(data: bytes) -> None:
    """read_tokens again under tracemalloc: its peak within `memory_bound` (done for the inputs that decode
    to much more than their size, and one in TRACE_ONE_IN of the rest: tracing slows reading 4 times)."""
    tracemalloc.start()
    try:
        out = read_tokens(io.BytesIO(data), allow_truncated=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= memory_bound(out.nbytes, len(data)), (peak, out.nbytes, len(data))


def test_one_input(data: bytes) -> None:
    """The fuzz target: the input as it is, then (where that differs) with its chunks' CRCs recomputed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OtokWarning)
        check_reader(data)
        fixed = fix_crcs(data)
        if fixed != data:
            check_reader(fixed)


def warm_up() -> None:
    """Compile (or load from numba's cache) the ctx kernels of both literal models before fuzzing: with a
    fresh cache that takes half a minute, which libFuzzer would count against the first ctx input (-timeout)."""
    from otok.bitstream import CtxParams
    for model in (0, 1):
        header = _header("ctx", (2, 3), k=300, params=CtxParams(literal_model=model))
        buf = io.BytesIO()
        with OtokWriter(buf, header) as w:
            w.write(np.arange(3 * 6).reshape(3, 2, 3) % 300)
        read_tokens(io.BytesIO(buf.getvalue()))


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--write-seeds":
        for path in write_seeds(argv[2]):
            print(path)
        return
    warm_up()
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
