"""A small class-conditional U-Net: the velocity (or noise) network of the ODE
generators (:mod:`flower_synth.generative.flow`, :mod:`flower_synth.generative.score`)."""

from __future__ import annotations

import math

import torch
from torch import nn

MAX_GROUPS = 8


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(MAX_GROUPS, channels), channels)


def time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of times ``t`` in [0, 1], ``(N, dim)`` (``dim`` even)."""
    half = dim // 2
    frequencies = torch.exp(
        -math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    angles = 1000.0 * t.float()[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with group norm and SiLU; the embedding shifts every
    channel between them; a 1x1 convolution matches channels on the skip path."""

    def __init__(self, channels_in: int, channels_out: int, embedding_dim: int) -> None:
        super().__init__()
        self.first = nn.Sequential(
            _norm(channels_in), nn.SiLU(), nn.Conv2d(channels_in, channels_out, 3, padding=1)
        )
        self.shift = nn.Linear(embedding_dim, channels_out)
        self.second = nn.Sequential(
            _norm(channels_out), nn.SiLU(), nn.Conv2d(channels_out, channels_out, 3, padding=1)
        )
        self.skip = (
            nn.Identity()
            if channels_in == channels_out
            else nn.Conv2d(channels_in, channels_out, 1)
        )

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.first(x) + self.shift(embedding)[:, :, None, None]
        return self.second(h) + self.skip(x)


class ConditionalUNet(nn.Module):
    """Maps ``(x, t, label)`` to a tensor shaped like ``x``: two resolutions below the
    input's (sides divisible by 4), ``channels`` wide at the top and twice that below,
    one residual block per level on the way down and up, a sum of a sinusoidal time
    embedding and a learnt class embedding fed to every block. Label ``n_classes``
    is the "no class" token of classifier-free guidance.

    Args:
        image_shape: ``(C, H, W)``, ``H`` and ``W`` divisible by 4.
        n_classes: Number of classes.
        channels: Width at full resolution.
    """

    def __init__(self, image_shape: tuple[int, int, int], n_classes: int, channels: int) -> None:
        super().__init__()
        in_channels, height, width = image_shape
        if height % 4 or width % 4:
            raise ValueError(
                f"the U-Net halves the image twice: sides must be divisible by 4, got "
                f"{height}x{width}; pad the images or use generator='cvae'"
            )
        wide = 2 * channels
        embedding_dim = 4 * channels
        self.time_dim = channels if channels % 2 == 0 else channels + 1
        self.time = nn.Sequential(
            nn.Linear(self.time_dim, embedding_dim),
            nn.SiLU(),
            nn.Linear(embedding_dim, embedding_dim),
        )
        self.label = nn.Embedding(n_classes + 1, embedding_dim)
        self.enter = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down_top = ResidualBlock(channels, channels, embedding_dim)
        self.halve_top = nn.Conv2d(channels, wide, 3, stride=2, padding=1)
        self.down_middle = ResidualBlock(wide, wide, embedding_dim)
        self.halve_middle = nn.Conv2d(wide, wide, 3, stride=2, padding=1)
        self.bottom = ResidualBlock(wide, wide, embedding_dim)
        self.up_middle = ResidualBlock(2 * wide, wide, embedding_dim)
        self.up_top = ResidualBlock(wide + channels, channels, embedding_dim)
        self.leave = nn.Sequential(
            _norm(channels), nn.SiLU(), nn.Conv2d(channels, in_channels, 3, padding=1)
        )
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embedding = self.time(time_features(t, self.time_dim)) + self.label(labels)
        top = self.down_top(self.enter(x), embedding)
        middle = self.down_middle(self.halve_top(top), embedding)
        bottom = self.bottom(self.halve_middle(middle), embedding)
        up = self.up_middle(torch.cat([self.upsample(bottom), middle], dim=1), embedding)
        up = self.up_top(torch.cat([self.upsample(up), top], dim=1), embedding)
        return self.leave(up)
