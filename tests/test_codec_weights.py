"""Weights files: safetensors + JSON config round trip, identity hash, and clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from codec_helpers import random_video, tiny
from otok.codec import WeightsError, load, save
from otok.codec.weights import read_config


def test_round_trip_keeps_outputs_and_hash(tmp_path):
    tok = tiny("fsq", gop=3)
    path = save(tok, tmp_path / "m.safetensors")
    again = load(path)
    assert again.config == tok.config and not again.training
    assert again.weights_sha256() == tok.weights_sha256()
    video = random_video(1, 9, 32, 32)
    assert torch.equal(again.encode(video), tok.encode(video))
    assert not list(tmp_path.glob("*.tmp"))


def test_half_precision_file_loads_into_float32(tmp_path):
    tok = tiny()
    path = save(tok, tmp_path / "half.safetensors", dtype=torch.float16)
    assert path.stat().st_size < save(tok, tmp_path / "full.safetensors").stat().st_size * 0.6
    again = load(path)
    assert again.decoder.head_image.weight.dtype == torch.float32
    assert torch.allclose(again.decoder.head_image.weight, tok.decoder.head_image.weight, atol=1e-3)
    assert again.weights_sha256() == load(path).weights_sha256()


def test_hash_identifies_weights():
    a, b = tiny(seed=0), tiny(seed=1)
    assert a.weights_sha256() != b.weights_sha256()
    assert len(a.weights_sha256()) == 64
    with torch.no_grad():
        a.decoder.head_image.bias[0] += 1e-3
    assert a.weights_sha256() != tiny(seed=0).weights_sha256()


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(1)
    torch.manual_seed(7)
    a = load("otok-tiny", pretrained=False, seed=3)
    assert torch.equal(torch.rand(1), expected)
    assert a.weights_sha256() == load("otok-tiny", pretrained=False, seed=3).weights_sha256()


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load(tmp_path / "nope.safetensors")


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(WeightsError, match="not a valid safetensors"):
        load(path)


def test_file_without_otok_config(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsError, match="no otok config"):
        load(path)


def test_weights_that_do_not_fit_the_config(tmp_path):
    path = save(tiny(), tmp_path / "m.safetensors")
    tensors = load_file(str(path))
    config = read_config(path).replace(dim=64).to_dict()
    save_file(tensors, str(path), metadata={"otok_format": "1", "config": json.dumps(config)})
    with pytest.raises(WeightsError, match="does not fit the otok-tiny config"):
        load(path)


def test_newer_format_is_refused(tmp_path):
    path = save(tiny(), tmp_path / "m.safetensors")
    tensors = load_file(str(path))
    save_file(tensors, str(path), metadata={"otok_format": "99", "config": json.dumps(tiny().config.to_dict())})
    with pytest.raises(WeightsError, match="format 99"):
        load(path)


def test_unknown_name_and_unshipped_weights():
    with pytest.raises(WeightsError, match="unknown model 'otok-zz'"):
        load("otok-zz")
    with pytest.raises(WeightsError, match="no trained weights ship for 'otok-b'"):
        load("otok-b")


def test_precision_auto_keeps_the_encoder_in_fp32(monkeypatch):
    """`accelerate`: auto puts only the decoder in bf16 on CUDA (tokens equal on every machine), nothing on
    the CPU; bf16 puts both in bf16 (checked by which step functions it wrapped)."""
    import torch

    from otok.codec import Tokenizer, load
    from otok.codec.accelerate import accelerate

    cpu = load("otok-tiny", pretrained=False, seed=0)
    steps = cpu.encoder.step, cpu.decoder.step
    accelerate(cpu, "auto")
    assert (cpu.encoder.step, cpu.decoder.step) == steps
    monkeypatch.setattr(Tokenizer, "device", property(lambda self: torch.device("cuda")))
    for precision, wrapped in (("auto", (False, True)), ("bf16", (True, True)), ("fp32", (False, False))):
        tok = load("otok-tiny", pretrained=False, seed=0)
        steps = tok.encoder.step, tok.decoder.step
        accelerate(tok, precision)
        assert (tok.encoder.step != steps[0], tok.decoder.step != steps[1]) == wrapped, precision


def test_weights_split_into_parts_load_whole(tmp_path):
    """`save_parts` under a size limit: several files, none over it; `load` of the name or of any part joins
    them into the same weights; a missing part is a WeightsError that names it."""
    import pytest
    import torch

    from otok.codec import WeightsError, load
    from otok.codec.weights import save_parts

    tok = load("otok-tiny", pretrained=False, seed=3)
    limit = 2**16 + 120_000
    parts = save_parts(tok, tmp_path / "tiny.safetensors", dtype=torch.float16, max_bytes=limit)
    assert len(parts) > 1 and all(p.stat().st_size <= limit for p in parts)
    assert not (tmp_path / "tiny.safetensors").exists()
    expected = load(save_parts(tok, tmp_path / "whole.safetensors", dtype=torch.float16)[0]).weights_sha256()
    for spec in (tmp_path / "tiny.safetensors", parts[-1]):
        assert load(spec).weights_sha256() == expected
    parts[1].unlink()
    with pytest.raises(WeightsError, match=parts[1].name):
        load(parts[0])


@pytest.mark.parametrize("added", [{"refine_blocks": 1}, {"refine": 8, "refine_blocks": 1}])
def test_an_earlier_release_inside_the_current_weights(tmp_path, monkeypatch, added):
    """A release that only added a decoder part (the refinement's wide pass, or the whole refinement) holds the
    one before it: a file naming the earlier weights' hash gets the current weights without that part, bit for
    bit."""
    from otok.codec import weights, with_decoder

    earlier = tiny(refine=8) if "refine" not in added else tiny()
    if earlier.decoder.refine is not None:
        with torch.no_grad():
            earlier.decoder.refine.conv_out.weight.normal_(std=0.1)
    current = with_decoder(earlier, **added).eval()
    with torch.no_grad():
        current.decoder.refine.wide_out.weight.normal_(std=0.1)
    monkeypatch.setattr(weights, "PACKAGED_WEIGHTS", tmp_path)
    save(current, tmp_path / "otok-tiny.safetensors")
    found = load("otok-tiny", weights_sha256=earlier.weights_sha256())
    assert found.weights_sha256() == earlier.weights_sha256() and found.config == earlier.config
    assert found.weights_path == tmp_path / "otok-tiny.safetensors"
    video = random_video(1, 5, 32, 32)
    tokens = earlier.encode(video)
    assert torch.equal(found.decode(tokens, frames=5), earlier.decode(tokens, frames=5))
    assert load("otok-tiny", weights_sha256="00" * 32).weights_sha256() == current.weights_sha256()  # the caller refuses
