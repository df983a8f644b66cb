"""What each stage starts from: image from scratch (or --init), joint from the image stage's weights,
kl from the joint stage's weights with the quantizer swapped for a Gaussian posterior."""

from __future__ import annotations

import torch

from otok.codec import Tokenizer, TokenizerConfig, get_config, load, with_decoder

from .config import TrainConfig


def _base(name: str) -> str:
    return name[: -len("-kl")] if name.endswith("-kl") else name


def kl_name(model: str) -> str:
    return model if model.endswith("-kl") else model + "-kl"


def initial_tokenizer(config: TrainConfig) -> Tokenizer:
    """The model a fresh run of `config.stage` starts from (training mode, CPU, fp32)."""
    if config.init:
        tok = load(config.init)
        if _base(tok.config.name) != _base(config.model):
            raise ValueError(f"--init {config.init} holds {tok.config.name}, not {config.model}")
    elif config.stage == "image":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            tok = Tokenizer(get_config(config.model))
    else:
        raise ValueError(f"the {config.stage} stage needs --init")
    changes = {k: v for k, v in (("refine", config.refine), ("upsample", config.upsample),
                                 ("tube_refine", config.tube_refine))
               if v >= 0 and v != getattr(tok.config, k)}
    if changes:
        tok = with_decoder(tok, **changes)
    if config.stage == "kl" and tok.config.quantizer != "kl":
        tok = to_kl(tok, kl_name(config.model), config.kl_weight, config.seed)
    elif config.stage == "kl":
        tok = _with_config(tok, tok.config.replace(kl_weight=config.kl_weight))
    return tok.train()


def _with_config(tok: Tokenizer, cfg: TokenizerConfig) -> Tokenizer:
    new = Tokenizer(cfg)
    new.load_state_dict(tok.state_dict())
    return new


def to_kl(tok: Tokenizer, name: str, kl_weight: float = 1e-6, seed: int = 0) -> Tokenizer:
    """A KL tokenizer that keeps every weight of `tok` whose name and shape still fit.

    The encoder's output projection doubles (mean, log-variance): the mean half starts as the old
    projection, the log-variance half at a constant log(sigma^2) = -8, so the decoder first sees almost
    the codes it was trained on (VQ codes are l2-normalized; the fine-tuning absorbs the difference).
    """
    cfg = tok.config.replace(quantizer="kl", name=name, kl_weight=kl_weight)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new = Tokenizer(cfg)
    old = tok.state_dict()
    fits = {k: v for k, v in old.items() if k in new.state_dict() and new.state_dict()[k].shape == v.shape}
    new.load_state_dict(fits, strict=False)
    head, old_head = new.encoder.to_latent, tok.encoder.to_latent
    c = cfg.latent_dim
    with torch.no_grad():
        if old_head.out_features == c:
            head.weight[:c] = old_head.weight
            head.bias[:c] = old_head.bias
        head.weight[c:] = 0.0
        head.bias[c:] = -8.0
    return new
