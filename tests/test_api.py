"""`import otok`: the one entry point (load, encode_file, decode_file, read_tokens) and its error family."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import otok
from otok.bitstream import CtxParams, Header, OtokWriter, Prior
from otok.tools.cli import main

WEIGHTS = Path(otok.__file__).parent / "codec" / "weights"
SAMPLE = Path(__file__).parents[1] / "tools" / "samples" / "bigbuckbunny_2s.mp4"


def ctx_file(path: Path, prior: Prior, steps: int = 3, seed: int = 0) -> np.ndarray:
    """An otok-s-shaped ctx file that references `prior` by hash without embedding it; returns its tokens."""
    tokens = np.random.default_rng(seed).integers(0, 8192, size=(steps, 4, 6))
    header = Header(model="otok-s", weights_sha256=bytes(32), patch=8, temporal=4, gop=5, grid=(4, 6), width=48,
                    height=32, fps=(25, 1), codebook_size=8192, latent_channels=0, coder="ctx",
                    coder_params=CtxParams(literal_increment=4, literal_model=1))
    with OtokWriter(path, header, prior=prior, embed_prior=False) as writer:
        for grid in tokens:
            writer.write(grid)
        writer.close(frames=1 + 4 * (steps - 1))
    return tokens


def test_import_otok_does_not_load_torch():
    code = "import otok, otok.bitstream, sys; otok.read_tokens; otok.OtokError; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_public_names():
    for name in ("load", "encode_file", "decode_file", "read_tokens", "OtokError", "DEFAULTS", "__version__"):
        assert hasattr(otok, name), name
    assert {"load", "read_tokens", "OtokError"} <= set(dir(otok))
    for error in (otok.ArgumentError, otok.InputError, otok.MediaError, otok.ModelError):
        assert issubclass(error, otok.OtokError)
    with pytest.raises(AttributeError):
        otok.nothing_here  # noqa: B018


@pytest.mark.parametrize("table", sorted(p.name for p in WEIGHTS.glob("*.prior")))
def test_read_tokens_finds_shipped_and_superseded_priors(tmp_path, table):
    """A file names its prior table by hash; read_tokens finds it among the installed tables (the current
    one and those kept from earlier releases) with no argument."""
    path = tmp_path / "clip.otok"
    tokens = ctx_file(path, Prior.load(WEIGHTS / table))
    got = otok.read_tokens(path)
    assert got.dtype == np.int64 and np.array_equal(got, tokens)


def test_read_tokens_unknown_prior_is_one_clear_error(tmp_path):
    own = Prior.uniform(8192)
    path = tmp_path / "mine.otok"
    tokens = ctx_file(path, own)
    with pytest.raises(otok.ArgumentError, match="prior=FILE"):
        otok.read_tokens(path)
    own.save(tmp_path / "mine.prior")
    assert np.array_equal(otok.read_tokens(path, prior=tmp_path / "mine.prior"), tokens)
    with pytest.raises(otok.InputError, match="no such file"):
        otok.read_tokens(tmp_path / "missing.otok")
    (tmp_path / "junk.otok").write_bytes(b"not an otok file")
    with pytest.raises(otok.OtokError):
        otok.read_tokens(tmp_path / "junk.otok")


def test_otok_tokens_writes_npy(tmp_path, capsys):
    path = tmp_path / "clip.otok"
    tokens = ctx_file(path, Prior.load(WEIGHTS / "otok-s.prior"))
    assert main(["tokens", str(path), str(tmp_path / "out" / "tokens.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "out" / "tokens.npy"), tokens)
    own = Prior.uniform(8192)
    ctx_file(tmp_path / "mine.otok", own)
    own.save(tmp_path / "mine.prior")
    assert main(["tokens", str(tmp_path / "mine.otok"), str(tmp_path / "mine.npy")]) == 2
    assert "--prior FILE" in capsys.readouterr().err
    assert main(["tokens", str(tmp_path / "mine.otok"), str(tmp_path / "mine.npy"), "--prior",
                 str(tmp_path / "mine.prior")]) == 0


def test_load_errors_are_otok_errors():
    with pytest.raises(otok.ModelError, match="unknown model"):
        otok.load("otok-nope")
    tok = otok.load("otok-tiny", pretrained=False, seed=0)
    assert not tok.training


def test_encode_decode_read_tokens_round_trip(tmp_path):
    """The README's Python example: the file otok.encode_file writes is the file `otok encode` writes."""
    result = otok.encode_file(SAMPLE, tmp_path / "clip.otok", max_side=64, frames=5)
    assert result.frames == 5
    assert main(["encode", str(SAMPLE), str(tmp_path / "cli.otok"), "--max-side", "64", "--frames", "5", "-q"]) == 0
    assert (tmp_path / "clip.otok").read_bytes() == (tmp_path / "cli.otok").read_bytes()
    tokens = otok.read_tokens(tmp_path / "clip.otok")
    assert tokens.dtype == np.int64 and tokens.shape[0] == 2  # 5 frames: an image step and one tube
    back = otok.decode_file(tmp_path / "clip.otok", tmp_path / "back.mp4")
    assert back.frames == 5
    with pytest.raises(otok.ArgumentError, match="rdo"):
        otok.encode_file(SAMPLE, tmp_path / "bad.otok", rdo=-1)
