"""A file from someone else (issue 29 A.4, D.16, D.17; SPEC §7.1): memory bombs stay within a small
multiple of the output, the fuzz harness holds on crafted and mutated files, the numba cache may be
unwritable, and atheris fuzzes the reader without instrumenting the numba kernels."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

from bitstream_helpers import Pipe
from otok.bitstream import OtokReader, OtokWarning, OtokWriter, read_tokens
from otok.bitstream import container as ct
from otok.tools.bench import fuzz_bitstream as fz

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20


def _peak(fn) -> tuple[object, int]:
    """(fn(), the peak bytes traced while it ran above what was traced before)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _read(data: bytes, pipe: bool = False) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OtokWarning)
        return read_tokens(Pipe(data) if pipe else io.BytesIO(data), allow_truncated=True)


# 8 M values (64 MiB of int64 tokens) from about a kilobyte: before issue 29 read_tokens peaked at 7 times
# its output on zstd (unpacking built 32 bytes a value), 3 times on ctx and cut files, 3.5 on f16z.
BOMBS = {
    "zstd": lambda: fz.zstd_bomb((512, 512), 16, 2),
    "zstd-cut": lambda: fz.zstd_bomb((512, 512), 16, 2, trailer=False),
    "f16z": lambda: fz.zstd_bomb((256, 256), 16, 2, latent_channels=8),
    "ctx": lambda: fz.ctx_bomb((512, 512), 16, 2),
    "ctx-cut": lambda: fz.ctx_bomb((512, 512), 16, 2, trailer=False),
}


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    fz.warm_up()  # numba's first load of the kernels is not the reader's memory
    return {name: make() for name, make in BOMBS.items()}


@pytest.mark.parametrize("name", sorted(BOMBS))
@pytest.mark.parametrize("pipe", [False, True], ids=["file", "pipe"])
def test_memory_bomb_peak_is_a_small_multiple_of_the_output(bombs, name, pipe):
    data = bombs[name]
    out, peak = _peak(lambda: _read(data, pipe))
    assert out.nbytes >= 32 * MIB and len(data) < 8192, (out.nbytes, len(data))  # a bomb: 10,000 times its size
    assert not out.any()
    bound = fz.memory_bound(out.nbytes, len(data))
    assert peak <= bound, f"{name}: peak {peak / MIB:.0f} MiB for {out.nbytes / MIB:.0f} MiB of output"
    assert peak <= 2.5 * out.nbytes  # (the bound's constant part is small against this output)


@pytest.mark.parametrize("name", ["zstd", "f16z", "ctx"])
def test_iterating_a_bomb_holds_one_chunk(bombs, name):
    """The reader itself holds one chunk's values and a few MiB of scratch, whatever the chunk declares."""
    data = bombs[name]
    reader = OtokReader(io.BytesIO(data))
    step = int(np.prod(reader.header.step_shape)) * (2 if reader.header.is_latent else 8)
    chunk = max(e.n_steps for e in reader.index) * step

    def iterate() -> int:
        found = 0
        for step in reader:
            found += int(step.any())
            del step  # (a step is a view of its chunk: one kept is its chunk kept through the next decode)
        return found + int(reader.verify().steps)

    _, peak = _peak(iterate)
    assert peak <= 1.25 * chunk + fz.SCRATCH_BYTES, f"{name}: peak {peak / MIB:.0f} MiB, chunk {chunk / MIB:.0f} MiB"


def test_bomb_declaring_the_largest_chunk_decodes_within_the_rule():
    """2**26 values of 14 bits (the most a chunk may hold) in 3.5 KB of zstd: issue 29's 3.6 GB peak. Now the
    output (512 MiB) and one chunk: measured as the process's resident peak, in a child process."""
    code = ("import io, resource, sys; from otok.tools.bench import fuzz_bitstream as fz; from otok.bitstream import "
            "read_tokens; data = fz.zstd_bomb((4096, 4096), 4); base = resource.getrusage(resource.RUSAGE_SELF)"
            ".ru_maxrss; out = read_tokens(io.BytesIO(data)); print(len(data), out.nbytes, "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base * 1024)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    size, output, grown = map(int, run.stdout.split())
    assert size < 4096 and output == 8 << 26
    assert grown <= fz.memory_bound(output, size), f"resident peak grew by {grown / MIB:.0f} MiB"


# ----- the fuzz harness: crafted files, mutations of them (CI's short fuzz run) -----------------------------
@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    golden = sorted((ROOT / "tests" / "golden" / "bitstream").glob("*.otok"))
    return list(fz.crafted_files().values()) + [p.read_bytes() for p in golden]


def test_crafted_files_pass_the_harness(seeds):
    fz.warm_up()
    for data in seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OtokWarning)  # (the cut bombs say where they stop)
            fz.check_memory(data)
        fz.test_one_input(data)


def test_crafted_metadata_is_printable_and_json():
    """Escapes in the model name and in the encoder settings, settings nested past Python's stack, NaN."""
    for name, data in fz.crafted_files().items():
        if name.startswith(("name_", "encd_")):
            fz._shown_metadata(OtokReader(io.BytesIO(data)))


def test_fuzz_harness_on_mutations(seeds):
    """A short, deterministic fuzz run of the harness: byte edits, cuts and splices of the seeds, read as they
    are and with their CRCs recomputed (what atheris does at length: tools/bench/fuzz_bitstream.py)."""
    rng = np.random.default_rng(29)
    small = [s for s in seeds if len(s) < 8192]
    for i in range(600):
        data = bytearray(small[i % len(small)])
        for _ in range(int(rng.integers(1, 6))):
            kind = rng.integers(0, 4)
            at = int(rng.integers(0, len(data)))
            if kind == 0:
                data[at] = int(rng.integers(0, 256))
            elif kind == 1:
                data[at:at + 4] = int(rng.integers(0, 1 << 32)).to_bytes(4, "little")
            elif kind == 2:
                data = data[:at] + data[at + int(rng.integers(1, 64)):]
            else:
                other = small[int(rng.integers(0, len(small)))]
                data = data[:at] + other[int(rng.integers(0, len(other))):]
        fz.test_one_input(bytes(data))


def test_fuzzer_leaves_every_numba_module_uninstrumented():
    """atheris rewrites the bytecode of what it instruments, which numba cannot compile (issue 29 D.17): every
    module of otok.bitstream that defines compiled kernels is excluded."""
    from numba.core.registry import CPUDispatcher

    with_kernels = []
    for path in sorted((ROOT / "bitstream").rglob("*.py")):
        name = "otok.bitstream." + ".".join(path.relative_to(ROOT / "bitstream").with_suffix("").parts)
        name = name.removesuffix(".__init__")
        module = importlib.import_module(name)
        if any(isinstance(v, CPUDispatcher) and v.__module__ == name for v in vars(module).values()):
            with_kernels.append(name)
    assert with_kernels and set(with_kernels) <= set(fz.UNINSTRUMENTED), with_kernels


def _atheris(tmp_path: Path, runs: int, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    seeds = tmp_path / "seeds"
    fz.write_seeds(seeds)
    for p in (ROOT / "tests" / "golden" / "bitstream").glob("*.otok"):
        (seeds / p.name).write_bytes(p.read_bytes())
    (tmp_path / "corpus").mkdir()
    cmd = [sys.executable, str(ROOT / "tools" / "bench" / "fuzz_bitstream.py"), f"-runs={runs}", "-rss_limit_mb=2048",
           "-timeout=60", f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus"), str(seeds)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                          env={**os.environ, **(env or {})})


def test_atheris_short_run(tmp_path):
    """CI's short coverage-guided run (a few seconds; the long runs are in the CHANGELOG)."""
    pytest.importorskip("atheris")
    run = _atheris(tmp_path, 2000)
    assert run.returncode == 0 and "Done 2000 runs" in run.stderr, run.stderr[-3000:]


@pytest.mark.slow
def test_atheris_with_a_fresh_numba_cache(tmp_path):
    """The first ctx seed with nothing cached: numba compiles the kernels (half a minute), uninstrumented."""
    pytest.importorskip("atheris")
    run = _atheris(tmp_path, 300, env={"NUMBA_CACHE_DIR": str(tmp_path / "numba")}, timeout=600)
    assert run.returncode == 0 and "Done 300 runs" in run.stderr, run.stderr[-3000:]


# ----- a read-only install: numba's cache (issue 29 D.16) ---------------------------------------------------
def _python(code: str, env: dict, user: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*user, sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd="/", env=env)


DECODE = ("import io, numpy as np; from otok.bitstream import Header, OtokWriter, read_tokens; "
          "from otok.bitstream.coders import ctx_kernels as kn; "
          "h = Header('m', bytes(32), 8, 4, 0, (2, 3), 24, 16, (30, 1), codebook_size=300, coder='ctx'); "
          "b = io.BytesIO(); w = OtokWriter(b, h); w.write(np.arange(12).reshape(2, 2, 3)); w.close(); "
          "print(kn.CACHING, read_tokens(io.BytesIO(b.getvalue())).sum())")


def test_no_writable_cache_folder_at_all_is_one_line(tmp_path):
    """Nothing this process may write (the package, NUMBA_CACHE_DIR, HOME, the temporary folder): the import
    works, says so in one line, and the kernels compile uncached (here one small kernel: all of them take
    half a minute)."""
    (tmp_path / "file").write_bytes(b"")
    nowhere = str(tmp_path / "file" / "x")  # under a file: no folder can be made there, even by root
    env = {**os.environ, "NUMBA_CACHE_DIR": nowhere, "HOME": nowhere, "XDG_CACHE_HOME": nowhere, "TMPDIR": nowhere}
    code = ("import os; os.access = lambda *a, **k: False\n"  # (as root, every real folder is writable)
            "from otok.bitstream.coders import ctx_kernels as kn; print(kn.CACHING, kn.lut_shift(300))")
    run = _python(code, env)
    assert run.returncode == 0 and run.stdout.split()[0] == "False", run.stderr[-3000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "no writable folder for numba's cache" in lines[0], run.stderr


def test_read_only_install_with_unwritable_numba_cache_and_home(tmp_path):
    """As another user, for whom the checkout, NUMBA_CACHE_DIR and HOME are read-only: no traceback; the cache
    goes to the temporary folder, and a ctx file decodes."""
    if os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists():
        pytest.skip("needs root and setpriv to act as an unprivileged user")
    user = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    locked = tmp_path / "locked"  # (pytest's tmp_path is the root user's alone)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(locked), "NUMBA_CACHE_DIR": str(locked / "numba")}
    if _python("import otok.bitstream", env, user).returncode != 0:
        pytest.skip("the checkout or its Python is not readable by an unprivileged user")
    run = _python(DECODE, env, user)
    assert run.returncode == 0 and run.stdout.split() == ["True", str(sum(range(12)))], run.stderr[-3000:]
    assert "Traceback" not in run.stderr


def test_sample_aspect_chunk():
    """`sasp` (SPEC §2.3): read where it parses, ignored where it does not (or where there is none)."""
    header = OtokReader(io.BytesIO(fz.metadata_file())).header
    for payload, want in [(ct.SASP_PAYLOAD.pack(16, 11), (16, 11)), (ct.SASP_PAYLOAD.pack(0, 1), None),
                          (b"\x01\x02", None), (None, None)]:
        buf = io.BytesIO()
        with OtokWriter(buf, header) as w:
            if payload is not None:
                w.write_ancillary(ct.SASP, payload)
            w.write(np.zeros((1,) + header.grid, dtype=np.int64))
        assert OtokReader(io.BytesIO(buf.getvalue())).sample_aspect == want
