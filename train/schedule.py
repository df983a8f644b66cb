"""Learning-rate schedule: linear warm-up, then cosine decay to 0 at the last step.

A pure function of the step, so resuming needs no scheduler state beyond the step itself.
"""

from __future__ import annotations

import math


def learning_rate(step: int, base_lr: float, warmup: int, total: int) -> float:
    """LR for optimizer step `step` (0-based) of `total`."""
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
