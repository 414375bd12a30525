"""The NIID-Bench simple CNN (Li et al., ICDE 2022), as a feature extractor plus head."""

from __future__ import annotations

import torch
from torch import nn


class SimpleCNN(nn.Module):
    """conv(6, 5x5) -> pool -> conv(16, 5x5) -> pool -> FC 120 -> FC 84 -> FC classes.

    For 1x28x28 inputs and 10 classes it has 44,426 parameters (177,704 bytes in
    float32). ``features`` maps an image to its 84-dimensional feature vector and
    ``head`` maps features to logits, so later strategies can work on features.

    Args:
        in_channels: image channels (1 for (Fashion-)MNIST, 3 for CIFAR-10).
        image_size: height = width of the input images (28 or 32).
        num_classes: number of output logits.
        feature_activation: end ``features`` with a ReLU (the original network). Without
            it, features are the signed outputs of the 84-unit layer, which a fixed ETF
            head with negative entries can align and Gaussians describe well.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        feature_activation: bool = True,
    ) -> None:
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        self.feature_dim = 84
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.ReLU(),
            nn.Linear(120, self.feature_dim),
            *([nn.ReLU()] if feature_activation else []),
        )
        self.head = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images ``(N, C, H, W)``."""
        return self.head(self.features(x))
