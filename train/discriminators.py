"""PatchGAN discriminators: 2D for images, 3D for clips (as OmniTokenizer, after VQGAN and TATS).

GroupNorm instead of BatchNorm: no batch statistics, so the result does not depend on the batch size and
DDP needs no SyncBatchNorm.
"""

from __future__ import annotations

from torch import Tensor, nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) or 1, channels)


class PatchDiscriminator(nn.Module):
    """`layers` stride-2 convolutions, then two stride-1 ones -> a grid of real/fake logits.

    dims=2: input (B, 3, H, W); dims=3: input (B, 3, T, H, W) (kernel 3 in time, so any T >= 1 works).
    """

    def __init__(self, dims: int = 2, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        kernel = 4 if dims == 2 else (3, 4, 4)
        pad = 1
        blocks: list[nn.Module] = [conv(3, channels, kernel, 2, pad), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [conv(width, out, kernel, stride, pad, bias=False), _norm(out), nn.LeakyReLU(0.2)]
            width = out
        blocks.append(conv(width, 1, kernel, 1, pad))
        self.net = nn.Sequential(*blocks)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Discriminators(nn.Module):
    """The pair the trainer uses: `image` for 1-frame batches, `video` for clips."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.image = PatchDiscriminator(2, channels)
        self.video = PatchDiscriminator(3, channels)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 3, T, H, W); T == 1 goes to the 2D discriminator."""
        if x.shape[2] == 1:
            return self.image(x[:, :, 0])
        return self.video(x)
