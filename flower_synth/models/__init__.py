"""Classifiers, each split into ``features`` (extractor) and ``head`` (linear layer)."""

from __future__ import annotations

from torch import nn

from flower_synth.models.cnn import SimpleCNN
from flower_synth.models.mlp import DigitsMLP

__all__ = ["DigitsMLP", "SimpleCNN", "build_model", "count_parameters"]


def build_model(image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The default classifier for images of shape ``(C, H, W)``.

    8x8 images get :class:`DigitsMLP`, 28x28 and 32x32 images :class:`SimpleCNN`.
    """
    channels, height, width = image_shape
    if height != width:
        raise ValueError(f"square images expected, got {height}x{width}")
    if height <= 16:
        return DigitsMLP(in_features=channels * height * width, num_classes=num_classes)
    return SimpleCNN(in_channels=channels, image_size=height, num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())
