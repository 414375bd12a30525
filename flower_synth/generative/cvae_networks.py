"""The encoder/decoder networks of :class:`~flower_synth.generative.cvae.ConditionalVAE`."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class CVAENetwork(nn.Module):
    """Encoder ``q(z | x, y)`` and decoder ``p(x | z, y)``: one-hidden-layer MLPs.

    Both take the flattened image (or latent code) with the one-hot label appended.

    Args:
        n_features: Pixels per image, ``C * H * W``.
        n_classes: Length of the one-hot label.
        latent_dim: Dimension of ``z``.
        hidden_dim: Width of the hidden layers.
    """

    def __init__(self, n_features: int, n_classes: int, latent_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(n_features + n_classes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim + n_classes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, n_features),
        )

    def encode(self, x: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``q(z | x, y)``, each ``(N, latent_dim)``."""
        mean, log_var = self.encoder(torch.cat([x, onehot], dim=1)).chunk(2, dim=1)
        return mean, log_var

    def decode(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of ``p(x | z, y)``, ``(N, n_features)``."""
        return self.decoder(torch.cat([z, onehot], dim=1))


class ConvCVAENetwork(nn.Module):
    """Encoder and decoder with two stride-2 convolutions each (DCGAN-style), for
    images whose side is divisible by 4; same interface as :class:`CVAENetwork`.

    Args:
        image_shape: ``(C, H, W)`` of the images.
        n_classes: Length of the one-hot label.
        latent_dim: Dimension of ``z``.
        hidden_dim: Width of the fully connected layer between convolutions and ``z``.
    """

    def __init__(
        self, image_shape: tuple[int, int, int], n_classes: int, latent_dim: int, hidden_dim: int
    ) -> None:
        super().__init__()
        channels, height, width = image_shape
        if height % 4 or width % 4:
            raise ValueError(f"the conv CVAE needs H and W divisible by 4, got {height}x{width}")
        self.image_shape = image_shape
        self.grid = (64, height // 4, width // 4)
        flat = int(np.prod(self.grid))
        self.encoder_conv = nn.Sequential(
            nn.Conv2d(channels, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.encoder_head = nn.Sequential(
            nn.Linear(flat + n_classes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 2 * latent_dim),
        )
        self.decoder_head = nn.Sequential(
            nn.Linear(latent_dim + n_classes, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, flat),
            nn.ReLU(),
        )
        self.decoder_conv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1),
            nn.Flatten(),
        )

    def encode(self, x: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``q(z | x, y)`` for flattened images ``x``."""
        features = self.encoder_conv(x.view(len(x), *self.image_shape))
        mean, log_var = self.encoder_head(torch.cat([features, onehot], dim=1)).chunk(2, dim=1)
        return mean, log_var

    def decode(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of ``p(x | z, y)``, flattened to ``(N, C * H * W)``."""
        grid = self.decoder_head(torch.cat([z, onehot], dim=1)).view(len(z), *self.grid)
        return self.decoder_conv(grid)
