"""`train/refine.py`: the decoder's refinement trained alone on frozen decodes, on a bank the tests build."""

from __future__ import annotations

import torch

from codec_helpers import random_video, tiny
from otok.codec import load, save, with_decoder
from otok.codec.weights import earlier_within
from otok.train import refine
from test_make_dataset import bank_path, sources  # noqa: F401 - fixtures: a tiny bank built from generated footage


def test_wide_only_training_keeps_the_earlier_model_inside(bank_path, tmp_path, capsys):  # noqa: F811
    start = with_decoder(tiny(), refine=4).eval()
    with torch.no_grad():
        start.decoder.refine.conv_out.weight.normal_(std=0.05)
    save(start, tmp_path / "start.safetensors", dtype=torch.float16)  # as weights ship: what --out stores
    start = load(tmp_path / "start.safetensors")
    out = tmp_path / "out" / "refined.safetensors"
    assert refine.main(["--init", str(tmp_path / "start.safetensors"), "--bank", str(bank_path), "--out", str(out),
                        "--refine-blocks", "1", "--wide-only", "--clips", "2", "--photos", "1", "--steps", "4",
                        "--batch", "2", "--crop", "32", "--lr", "1e-2"]) == 0
    assert '"heldout_after"' in capsys.readouterr().out
    trained = load(out)
    assert trained.config.refine_blocks == 1 and torch.count_nonzero(trained.decoder.refine.wide_out.weight) > 0
    inside = earlier_within(trained, start.weights_sha256())  # the pair and everything else untouched
    assert inside is not None and inside.weights_sha256() == start.weights_sha256()
    video = random_video(1, 5, 32, 32)
    assert torch.equal(trained.encode(video), start.encode(video))  # the tokens, and so the prior, stay valid


def test_a_model_without_refinement_is_one_line(bank_path, tmp_path, capsys):  # noqa: F811
    save(tiny(), tmp_path / "plain.safetensors")
    assert refine.main(["--init", str(tmp_path / "plain.safetensors"), "--bank", str(bank_path),
                        "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "no refinement to train" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_a_negative_mean_weight_is_one_line(bank_path, tmp_path, capsys):  # noqa: F811
    save(with_decoder(tiny(), refine=4), tmp_path / "start.safetensors")
    assert refine.main(["--init", str(tmp_path / "start.safetensors"), "--bank", str(bank_path),
                        "--out", str(tmp_path / "x.safetensors"), "--mean-weight", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--mean-weight must be at least 0" in err and err.count("\n") == 1
    assert not (tmp_path / "x.safetensors").exists()


def test_bad_settings_are_one_line(bank_path, tmp_path, capsys):  # noqa: F811
    save(with_decoder(tiny(), refine=4), tmp_path / "start.safetensors", dtype=torch.float16)
    base = ["--init", str(tmp_path / "start.safetensors"), "--bank", str(bank_path), "--out", str(tmp_path / "x.safetensors")]
    for extra, says in ((["--wide-only"], "needs a refinement with a wide pass"), (["--crop", "30"], "multiple of"),
                        (["--crop", "4096"], "larger than the bank's frames")):
        assert refine.main(base + extra) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.safetensors").exists()


def test_the_mean_term_keeps_the_filter_from_moving_colours():
    """Pairs whose source is the decode plus a colour offset: plain L1 teaches the filter the offset; with the
    mean term, the filter leaves the 2x2-patch means where they were (a colour learnt from training footage
    cannot be carried to other footage)."""
    torch.manual_seed(0)
    decoded = [torch.rand(2, 3, 32, 32, dtype=torch.float16) * 1.2 - 0.6]
    offset = torch.tensor([0.3, -0.2, 0.0]).view(1, 3, 1, 1)
    source = [((decoded[0].float() + offset + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)]
    moved = {}
    for weight in (0.0, 4.0):
        tok = with_decoder(tiny(), refine=4).eval()
        refine.train_refine(tok, decoded, source, steps=150, batch=4, crop=16, lr=1e-2, seed=0,
                            mean_weight=weight, log=lambda line: None)
        with torch.no_grad():
            x = decoded[0].float()
            moved[weight] = (tok.decoder.refine.filter(x) - x).mean((0, 2, 3))
    assert moved[0.0][0] > 0.15 and moved[0.0][1] < -0.1  # learnt the offset
    assert moved[4.0].abs().max() < 0.3 * moved[0.0].abs().max()  # held the means


def test_tube_refinement_trains_alone_and_keeps_the_earlier_model_inside(bank_path, tmp_path, capsys):  # noqa: F811
    save(with_decoder(tiny(), refine=4), tmp_path / "start.safetensors", dtype=torch.float16)
    start = load(tmp_path / "start.safetensors")
    out = tmp_path / "tube.safetensors"
    assert refine.main(["--init", str(tmp_path / "start.safetensors"), "--bank", str(bank_path), "--out", str(out),
                        "--tube-refine", "4", "--clips", "2", "--clip-frames", "9", "--photos", "0", "--steps", "4",
                        "--batch", "2", "--crop", "32", "--lr", "1e-2"]) == 0
    assert '"heldout_after"' in capsys.readouterr().out
    trained = load(out)
    assert trained.config.tube_refine == 4 and torch.count_nonzero(trained.decoder.tube_refine.conv_out.weight) > 0
    inside = earlier_within(trained, start.weights_sha256())
    assert inside is not None and inside.weights_sha256() == start.weights_sha256()
    assert torch.equal(trained.decoder.refine.conv_out.weight, start.decoder.refine.conv_out.weight)


def test_the_tube_refinement_sees_the_tube_frames_together():
    """Pairs whose source frame is the decode of the frame before it in the tube: no filter of one frame can
    learn that, a filter of the tube's frames together can."""
    torch.manual_seed(0)
    decoded = torch.rand(9, 3, 32, 32) * 1.6 - 0.8
    source = decoded.clone()
    source[2:5], source[6:9] = decoded[1:4], decoded[5:8]  # frame f of a tube shows frame f - 1
    target = ((source + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    tok = with_decoder(tiny(), tube_refine=16).eval()
    refine.train_refine(tok, [decoded.half()], [target], steps=300, batch=4, crop=16, lr=3e-3, seed=0,
                        log=lambda line: None, part="tube_refine")
    tubes = torch.stack([decoded[1:5], decoded[5:9]]).transpose(1, 2)  # (2, 3, 4, H, W)
    wanted = torch.stack([source[1:5], source[5:9]]).transpose(1, 2)
    with torch.no_grad():
        after = (tok.decoder.tube_refine(tubes) - wanted).abs().mean()
    assert after < 0.5 * (tubes - wanted).abs().mean()


def test_the_mean_term_of_a_wide_pass_leaves_the_frozen_pair_alone():
    """With --wide-only the mean term holds what the wide pass changes, not what the frozen pair does: a pair
    that corrects a colour offset on its own (as the shipped one corrects the heads' means) keeps doing so."""
    torch.manual_seed(0)
    decoded = [torch.rand(2, 3, 32, 32, dtype=torch.float16) * 1.2 - 0.6]
    offset = torch.tensor([0.3, -0.2, 0.0])
    source = [((decoded[0].float() + offset.view(1, 3, 1, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)]
    tok = with_decoder(tiny(), refine=4, refine_blocks=1).eval()
    with torch.no_grad():
        tok.decoder.refine.conv_out.bias.copy_(offset)  # the pair alone turns the decode into the source
    refine.train_refine(tok, decoded, source, steps=150, batch=4, crop=16, lr=1e-2, seed=0, wide_only=True,
                        mean_weight=4.0, log=lambda line: None)
    with torch.no_grad():
        x = decoded[0].float()
        moved = (tok.decoder.refine.filter(x) - x).mean((0, 2, 3))
    torch.testing.assert_close(moved, offset, atol=0.05, rtol=0)
