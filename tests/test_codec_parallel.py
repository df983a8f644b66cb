"""The parallel training pass (`Tokenizer.forward`, every step of a clip at once) equals the step path
(`Tokenizer.forward_stepwise`, the streaming classes step after step): reconstruction, quantizer loss,
features and every parameter's gradient; and its number of dispatched ops does not grow with the clip."""

from __future__ import annotations

import pytest
import torch

from codec_helpers import random_video, tiny
from otok.tools.bench.train import CountOps


def _pass(tok, forward, video, **options):
    tok.zero_grad(set_to_none=True)
    out = forward(video, **options)
    ((out.reconstruction - video).square().mean() + out.quantizer_loss).backward()
    grads = {name: p.grad.clone() for name, p in tok.named_parameters() if p.grad is not None}
    return out, grads


CASES = {
    # name: (quantizer, model changes, training mode, frames, height, width, forward options)
    "one segment": ("vq", {}, True, 17, 32, 32, {}),
    "segments, short last group": ("vq", {}, True, 21, 32, 48, {"gop": 3}),
    "window slides": ("vq", {"temporal_layers": 2}, True, 29, 32, 32, {"gop": 0}),  # 8 steps, a 5-step window
    "one frame": ("vq", {}, True, 1, 40, 24, {}),
    "rdo": ("vq", {}, True, 13, 32, 32, {"rdo": 0.3, "gop": 2}),  # steps grouped out of time order
    "decoder parts": ("vq", {"refine": 8, "refine_blocks": 2, "upsample": 8, "tube_refine": 8}, True, 14, 32, 32,
                      {"gop": 3}),
    "kl": ("kl", {}, False, 17, 32, 32, {"gop": 3}),  # eval: the posterior's mean, not a sample
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_parallel_pass_equals_the_step_path(case):
    quantizer, changes, training, frames, height, width, options = CASES[case]
    tok = tiny(quantizer, **changes).train(training)
    with torch.no_grad():  # layers that start at zero (the identity) get weights, or their layout would go untested
        for param in tok.parameters():
            if param.dim() > 1 and not param.any():
                param.normal_(std=0.05)
    video = random_video(2, frames, height, width, seed=3)
    parallel, parallel_grads = _pass(tok, tok.forward, video, **options)
    stepwise, stepwise_grads = _pass(tok, tok.forward_stepwise, video, **options)
    assert parallel.reconstruction.shape == video.shape
    torch.testing.assert_close(parallel.reconstruction, stepwise.reconstruction, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(parallel.quantizer_loss, stepwise.quantizer_loss, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(torch.stack(parallel.latents), torch.stack(stepwise.latents), rtol=1e-5, atol=1e-5)
    assert parallel_grads.keys() == stepwise_grads.keys()
    for name, grad in stepwise_grads.items():
        scale = grad.abs().max().clamp_min(1e-12)
        torch.testing.assert_close(parallel_grads[name] / scale, grad / scale, rtol=0, atol=1e-4, msg=name)


def test_rdo_case_changes_tokens():
    """The rdo case above would prove nothing if the tolerance changed no token."""
    tok = tiny()
    video = random_video(2, 13, 32, 32, seed=3)
    assert not torch.equal(tok.encode(video, rdo=0.3), tok.encode(video))


def _ops(forward, video) -> int:
    with CountOps() as counter:
        out = forward(video)
        (out.reconstruction.square().mean() + out.quantizer_loss).backward()
    return counter.count


def test_dispatched_ops_do_not_grow_with_the_clip():
    tok = tiny(refine=8, refine_blocks=2, gop=100).train()
    short, long = random_video(2, 17, 32, 32), random_video(2, 33, 32, 32)
    parallel_short, parallel_long = _ops(tok.forward, short), _ops(tok.forward, long)
    assert parallel_long <= 1.3 * parallel_short
    assert parallel_short <= 0.5 * _ops(tok.forward_stepwise, short)
