"""The CNN of FedAvg's paper (McMahan et al., AISTATS 2017), as a feature extractor plus
head."""

from __future__ import annotations

import torch
from torch import nn

from flower_synth.models.width import scaled_units


class FedAvgCNN(nn.Module):
    """conv(32, 5x5, same) -> pool -> conv(64, 5x5, same) -> pool -> FC 512 -> FC classes.

    McMahan et al.'s "CNN" for 28x28 images: for 1x28x28 inputs and 10 classes it has
    1,663,370 parameters (6.65 MB in float32), the model size at which the paper
    compares communication. ``features`` maps an image to the 512-unit layer and
    ``head`` maps it to logits, as in :class:`~flower_synth.models.cnn.SimpleCNN`.

    Args:
        in_channels: image channels.
        image_size: height = width of the input images (divisible by 4).
        num_classes: number of output logits.
        feature_activation: end ``features`` with a ReLU (the original network);
            without it, features are signed (for a fixed ETF head).
        width: scale of the convolution channels (32, 64) and of the 512-unit layer
            (each at least 1); 1 is the original network.
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
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {image_size}")
        conv1, conv2, hidden = scaled_units(width, 32, 64, 512)
        side = image_size // 4
        self.feature_dim = hidden
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, conv1, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(conv1, conv2, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(conv2 * side * side, hidden),
            *([nn.ReLU()] if feature_activation else []),
        )
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images ``(N, C, H, W)``."""
        return self.head(self.features(x))
