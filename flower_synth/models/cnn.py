"""The NIID-Bench simple CNN (Li et al., ICDE 2022), as a feature extractor plus head."""

from __future__ import annotations

import torch
from torch import nn

from flower_synth.models.width import scaled_units


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
        width: scale of the convolution channels (6, 16) and of the 120-unit layer
            (each at least 1); the 84-dimensional feature layer keeps its size. 1 is
            the original network; below 1, a smaller client (heterogeneous capacities).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        feature_activation: bool = True,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        conv1, conv2, hidden = scaled_units(width, 6, 16, 120)
        self.feature_dim = 84
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, conv1, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(conv1, conv2, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(conv2 * side * side, hidden),
            nn.ReLU(),
            nn.Linear(hidden, self.feature_dim),
            *([nn.ReLU()] if feature_activation else []),
        )
        self.head = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images ``(N, C, H, W)``."""
        return self.head(self.features(x))
