"""Classifiers, each split into ``features`` (extractor) and ``head`` (linear layer)."""

from __future__ import annotations

from torch import nn

from flower_synth.models.cnn import SimpleCNN
from flower_synth.models.dual_head import (
    DualHeadClassifier,
    ScaledNormalize,
    dot_regression_loss,
    simplex_etf,
)
from flower_synth.models.feature_split import HookedFeatures, SplitClassifier, require_feature_split
from flower_synth.models.fedavg_cnn import FedAvgCNN
from flower_synth.models.mlp import DigitsMLP

__all__ = [
    "DigitsMLP",
    "DualHeadClassifier",
    "FedAvgCNN",
    "MODELS",
    "HookedFeatures",
    "ScaledNormalize",
    "SimpleCNN",
    "SplitClassifier",
    "build_dual_head_model",
    "build_model",
    "count_parameters",
    "dot_regression_loss",
    "require_feature_split",
    "simplex_etf",
]


MODELS = ("default", "fedavg-cnn")


def build_model(
    image_shape: tuple[int, int, int],
    num_classes: int,
    feature_activation: bool = True,
    width: float = 1.0,
    architecture: str = "default",
) -> nn.Module:
    """A classifier for images of shape ``(C, H, W)``.

    ``architecture="default"``: 8x8 images get :class:`DigitsMLP`, 28x28 and 32x32
    images :class:`SimpleCNN` (NIID-Bench's, 44,426 parameters on Fashion-MNIST);
    ``"fedavg-cnn"``: :class:`FedAvgCNN` (McMahan et al.'s, 1.66 M parameters) for any
    size divisible by 4. ``feature_activation`` and ``width`` (1: the original size) as
    in those classes.
    """
    if architecture not in MODELS:
        raise ValueError(f"unknown model {architecture!r}; choose one of {', '.join(MODELS)}")
    channels, height, image_width = image_shape
    if height != image_width:
        raise ValueError(f"square images expected, got {height}x{image_width}")
    if architecture == "fedavg-cnn":
        return FedAvgCNN(channels, height, num_classes, feature_activation, width)
    if height <= 16:
        return DigitsMLP(channels * height * image_width, num_classes, feature_activation, width)
    return SimpleCNN(channels, height, num_classes, feature_activation, width)


def build_dual_head_model(
    image_shape: tuple[int, int, int],
    num_classes: int,
    etf_seed: int = 0,
    prediction: str = "ce",
    normalize_features: bool = True,
    architecture: str = "default",
) -> DualHeadClassifier:
    """The feature extractor of :func:`build_model`'s ``architecture`` (without its
    final ReLU, so features are signed) under a learnable head and a fixed simplex-ETF
    head; ``normalize_features`` as in :class:`DualHeadClassifier`, on by default here
    as in the app (``feature-norm``), off in the bare class."""
    base = build_model(
        image_shape, num_classes, feature_activation=False, architecture=architecture
    )
    return DualHeadClassifier(
        base.features,
        base.feature_dim,
        num_classes,
        etf_seed,
        prediction,
        normalize_features=normalize_features,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())
