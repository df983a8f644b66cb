"""The models that ship in codec/weights: each loads by name, has a model card, a VQ model has its ctx prior,
and each reconstructs real footage far better than an untrained network would (a trained-weights check,
not a quality benchmark: the measured figures are in the model cards)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from otok.bitstream import Prior
from otok.codec import load
from otok.codec.weights import PACKAGED_WEIGHTS
from otok.tools.evaluation.metrics import psnr
from otok.tools.video_io import frames_to_video, video_to_frames
from otok.tools.video_io import VideoReader

SAMPLE = Path(__file__).parents[1] / "tools" / "samples" / "bigbuckbunny_2s.mp4"
SHIPPED = sorted(p.stem for p in PACKAGED_WEIGHTS.glob("*.safetensors") if "." not in p.stem)  # current releases
EARLIER = sorted(PACKAGED_WEIGHTS.glob("*.*.safetensors"))  # NAME.<hash>.safetensors: kept so old files decode
RELEASES = Path(__file__).parent / "golden" / "releases"
CARDS = {name: PACKAGED_WEIGHTS / f"{name}.md" for name in SHIPPED}


def test_the_default_model_ships():
    assert "otok-s" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_has_card_and_prior(name):
    tok = load(name)
    assert tok.config.name == name
    card = CARDS[name].read_text()
    assert tok.weights_sha256() in card, "the model card names the weights it describes"
    if tok.config.discrete:
        prior = Prior.load(PACKAGED_WEIGHTS / f"{name}.prior")
        assert prior.codebook_size == tok.config.codebook_size
        assert prior.sha256.hex() in card, "the model card names the prior table it ships"
        # Tables of earlier releases stay, named by their hash, so that older files still decode.
        for path in PACKAGED_WEIGHTS.glob(f"{name}.*.prior"):
            assert Prior.load(path).sha256.hex().startswith(path.name.split(".")[1])


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reconstructs_real_footage(name):
    with VideoReader(SAMPLE, max_frames=9) as reader:
        frames = list(reader)
    tok = load(name)
    with torch.inference_mode():
        video = frames_to_video(frames, tok.device)
        code = tok.encode(video)
        decoded = video_to_frames(tok.decode(code, frames=len(frames), height=video.shape[-2], width=video.shape[-1]))
    scores = [psnr(a, b) for a, b in zip(frames, decoded)]
    assert len(decoded) == len(frames)
    assert np.mean(scores) > 20.0, scores  # a random init gives about 10 dB here


def test_default_rdo_buys_bytes_for_little_quality(tmp_path):
    """`otok encode`'s default tolerance on real footage with the default model: a clearly smaller file for
    a small PSNR loss (the measured trade-off over the held-out set is in the README)."""
    from otok.tools.evaluation.evaluate import eval_file
    from otok.tools.options import DEFAULTS

    tok = load("otok-s")
    nearest = eval_file(SAMPLE, tokenizer=tok, frames=17, rdo=0.0)
    chosen = eval_file(SAMPLE, tokenizer=tok, frames=17)
    assert chosen.rdo == DEFAULTS.rdo > 0
    assert chosen.bytes < 0.92 * nearest.bytes
    assert chosen.psnr > nearest.psnr - 0.3


@pytest.mark.parametrize("path", EARLIER, ids=lambda p: p.name)
def test_earlier_weights_are_named_by_their_hash(path):
    name, short = path.stem.split(".")
    tok = load(name, weights_sha256=short)
    assert tok.weights_path == path and tok.weights_sha256().startswith(short)


@pytest.mark.parametrize("otok_file", sorted(RELEASES.glob("*.otok")), ids=lambda p: p.name)
def test_files_of_earlier_releases_still_decode(otok_file, tmp_path):
    """A file written by an earlier release (its weights and prior table are kept beside the current ones):
    `otok decode` picks the weights and prior it names and gives back the clip it was made from."""
    from otok.tools.decode import decode_file

    out = decode_file(otok_file, tmp_path / "back.mkv", codec="ffv1")
    assert out.frames == 9
    with VideoReader(SAMPLE, max_side=96, max_frames=9) as reader:
        source = list(reader)
    with VideoReader(tmp_path / "back.mkv") as reader:
        decoded = list(reader)
    assert np.mean([psnr(a, b) for a, b in zip(source, decoded)]) > 21.5  # the card's figure, less a margin
