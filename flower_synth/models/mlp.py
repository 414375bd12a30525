"""A small MLP for scikit-learn's 8x8 digits, as a feature extractor plus head."""

from __future__ import annotations

import torch
from torch import nn

from flower_synth.models.width import scaled_units


class DigitsMLP(nn.Module):
    """Flatten -> FC 128 -> FC 64 -> FC classes (17,226 parameters for 1x8x8, 10 classes).

    Args:
        in_features: pixels per image (64 for 8x8 digits).
        num_classes: number of output logits.
        feature_activation: end ``features`` with a ReLU (see :class:`SimpleCNN`).
        width: scale of the 128-unit hidden layer (at least 1 unit; see
            :class:`SimpleCNN`).
    """

    def __init__(
        self,
        in_features: int = 64,
        num_classes: int = 10,
        feature_activation: bool = True,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        (hidden,) = scaled_units(width, 128)
        self.feature_dim = 64
        self.features = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, self.feature_dim),
            *([nn.ReLU()] if feature_activation else []),
        )
        self.head = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images ``(N, 1, 8, 8)``."""
        return self.head(self.features(x))
