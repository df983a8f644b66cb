"""Golden files: the exact bytes of each coder's output are pinned (regenerate: pytest --regen-golden)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from otok.bitstream import CtxParams, Header, OtokReader, OtokWriter, Prior, read_tokens
from otok.bitstream.synthetic import repetition_grids

GOLDEN = Path(__file__).parent / "golden" / "bitstream"
SHA = bytes.fromhex("5d" * 32)


def _tokens(k: int) -> np.ndarray:
    return repetition_grids(7, (4, 6), k, 0.75, 3, seed=11)


def _latents() -> np.ndarray:
    return np.linspace(-3, 3, 5 * 2 * 4 * 6, dtype=np.float32).reshape(5, 2, 4, 6)


# The golden ctx files of format 1.1 were written with the parameters that were the API's defaults then.
V11 = CtxParams(literal_increment=1, literal_model=0)


def _header(coder: str, k: int = 0, channels: int = 0, params=None) -> Header:
    params = V11 if coder == "ctx" and params is None else params
    return Header("otok-golden", SHA, 16, 4, 3, (4, 6), 90, 60, (24000, 1001), codebook_size=k,
                  latent_channels=channels, coder=coder, coder_params=params)


def _version_2(prior: Prior) -> Prior:
    return Prior(prior.codebook_size, prior.mode_counts, prior.part_counts)


CASES = {
    "raw_k1000": lambda: (_header("raw", 1000), _tokens(1000), {}),
    "zstd_k1000": lambda: (_header("zstd", 1000), _tokens(1000), {}),
    "ctx_k1000": lambda: (_header("ctx", 1000), _tokens(1000), {}),
    # a small codebook: every mode (T, U, L, literal) and passes in several rounds
    "ctx_k3": lambda: (_header("ctx", 3), _tokens(3), {}),
    # format 1.1 with a version-2 prior (the mode and literal counts of Prior.from_tokens, no code order)
    "ctx_k262144_prior": lambda: (
        _header("ctx", 1 << 18), _tokens(1 << 18),
        {"prior": _version_2(Prior.from_tokens([repetition_grids(3, (4, 6), 1 << 18, 0.5, 3, seed=12)], 1 << 18))},
    ),
    # format 1.2: literal model 1 with a prior whose code order is a permutation (embedded in the file)
    "ctx_k1000_grouped_prior": lambda: (
        _header("ctx", 1000, params=CtxParams(literal_increment=4, literal_model=1)), _tokens(1000),
        {"prior": Prior.from_tokens([repetition_grids(3, (4, 6), 1000, 0.5, 3, seed=13)], 1000,
                                    order=np.random.default_rng(14).permutation(1000))},
    ),
    "f16z_c2": lambda: (_header("f16z", channels=2), _latents(), {}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_bytes(name, regen_golden):
    header, values, kw = CASES[name]()
    buf = io.BytesIO()
    with OtokWriter(buf, header, steps_per_chunk=2, **kw) as w:
        w.write(values)
    w.close(frames=len(values) * 4 - 5)  # already closed: a no-op
    data = buf.getvalue()
    path = GOLDEN / f"{name}.otok"
    if regen_golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    golden = path.read_bytes()
    assert data == golden, f"{name}: encoder output changed; if intended, bump the format and --regen-golden"
    np.testing.assert_array_equal(read_tokens(path), values.astype(golden_dtype(header)))
    assert OtokReader(path).verify().steps == len(values)


def golden_dtype(header: Header):
    return np.float16 if header.is_latent else np.int64


def test_golden_header_fields():
    """Every header field of a golden file reads back as written."""
    r = OtokReader(GOLDEN / "ctx_k1000.otok")
    h = r.header
    assert (h.model, h.weights_sha256, h.patch, h.temporal, h.gop) == ("otok-golden", SHA, 16, 4, 3)
    assert (h.grid, h.width, h.height, h.padded_width, h.padded_height) == ((4, 6), 90, 60, 96, 64)
    assert (h.fps, h.codebook_size, h.latent_channels, h.coder) == ((24000, 1001), 1000, 0, "ctx")
    assert r.frames == (1 + 4 * 2) * 2 + 1 and r.steps == 7 and r.complete
