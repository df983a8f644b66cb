"""Loss terms: reconstruction, hinge GAN with VQGAN's adaptive weight, and an optional LPIPS loss.

The LPIPS network is built here and filled only from a weights file the user gives; nothing is
downloaded. The file is safetensors with torchvision VGG16 names (`features.{i}.weight|bias`) and the
LPIPS linear heads (`lin{k}.model.1.weight`, k = 0..4): merge the two published state dicts and save.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def reconstruction_loss(recon: Tensor, target: Tensor, kind: str = "l2") -> Tensor:
    """Mean L2 (the paper) or L1 over all pixels."""
    return F.mse_loss(recon, target) if kind == "l2" else F.l1_loss(recon, target)


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    return -fake_logits.mean()


def adaptive_weight(rec_loss: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """VQGAN's balance: |grad rec| / |grad gan| at the decoder's last layer (detached)."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's numbering
_CHANNELS = (64, 128, 256, 512, 512)


class LPIPS(nn.Module):
    """LPIPS-VGG (Zhang et al., 2018) on frames in [-1, 1]; frozen; use `LPIPS.from_file(path)`."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(width, v, 3, padding=1), nn.ReLU()]
                width = v
        self.features = nn.Sequential(*layers[: _TAPS[-1] + 1])
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_file(cls, path: str) -> "LPIPS":
        from safetensors.torch import load_file

        tensors = load_file(path)
        model = cls()
        state = {k: v for k, v in tensors.items() if k.startswith("features.")}
        for k in range(len(_CHANNELS)):
            state[f"lins.{k}.weight"] = tensors[f"lin{k}.model.1.weight"]
        model.load_state_dict(state, strict=True)
        return model.eval().requires_grad_(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """x, y: (N, 3, H, W) in [-1, 1] -> mean distance (scalar)."""
        h = torch.cat([x, y]).sub(self.shift).div(self.scale)
        total = h.new_zeros(())
        tap = 0
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i == _TAPS[tap]:
                fx, fy = F.normalize(h, dim=1, eps=1e-10).chunk(2)
                total = total + self.lins[tap]((fx - fy).pow(2)).mean()
                tap += 1
        return total

    def video(self, recon: Tensor, target: Tensor) -> Tensor:
        """(B, 3, T, H, W) pairs: LPIPS over every frame."""
        flat = lambda v: v.transpose(1, 2).flatten(0, 1)  # noqa: E731 - (B*T, 3, H, W)
        return self(flat(recon), flat(target))
