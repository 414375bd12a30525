"""Local class-conditional generative models behind one scikit-learn-style interface."""

from __future__ import annotations

from typing import Any

from flower_synth.generative.base import DensityModel, GenerativeModel
from flower_synth.generative.cvae import ConditionalVAE
from flower_synth.generative.flow import FlowMatching
from flower_synth.generative.gaussian import ClassConditionalGaussian
from flower_synth.generative.gmm import ClassConditionalGMM
from flower_synth.generative.mean_embedding import MeanEmbedding
from flower_synth.generative.ode_model import ODEImageModel
from flower_synth.generative.score import ScoreModel
from flower_synth.generative.symvae import SymmetricVAE

__all__ = [
    "DENSITY_GENERATORS",
    "GENERATORS",
    "IMAGE_GENERATORS",
    "ODE_GENERATORS",
    "PRIVATE_GENERATORS",
    "ClassConditionalGMM",
    "ClassConditionalGaussian",
    "ConditionalVAE",
    "DensityModel",
    "FlowMatching",
    "GenerativeModel",
    "MeanEmbedding",
    "ODEImageModel",
    "ScoreModel",
    "SymmetricVAE",
    "build_generator",
]

GENERATORS = (
    "gaussian",
    "gaussian-full",
    "gmm",
    "cvae",
    "cvae-conv",
    "symvae",
    "flow",
    "score",
    "mean-embedding",
)
# torch, images only
IMAGE_GENERATORS = ("cvae", "cvae-conv", "symvae", "flow", "score", "mean-embedding")
ODE_GENERATORS = ("flow", "score")
# Trained by one optimizer over TorchImageModel's batches: they can train by DP-SGD.
DP_GENERATORS = ("cvae", "cvae-conv", "flow", "score")
# What a client can share with differential privacy: DP-SGD, or one private release.
PRIVATE_GENERATORS = (*DP_GENERATORS, "mean-embedding")
DENSITY_GENERATORS = ("gaussian", "gaussian-full", "gmm")  # with a class posterior


def build_generator(
    kind: str, n_classes: int, sample_shape: tuple[int, ...], **params: Any
) -> GenerativeModel:
    """The unfitted generative model named ``kind`` (one of :data:`GENERATORS`).

    Args:
        kind: ``"gaussian"`` (diagonal covariances), ``"gaussian-full"``, ``"gmm"``,
            ``"cvae"`` (MLP encoder/decoder), ``"cvae-conv"`` (convolutional) or
            ``"symvae"`` (:class:`SymmetricVAE`, binary latents), ``"flow"``
            (:class:`FlowMatching`) or ``"score"`` (:class:`ScoreModel`), these two
            for image sides divisible by 4, or ``"mean-embedding"``
            (:class:`MeanEmbedding`).
        n_classes: Number of classes.
        sample_shape: Shape of one sample; the CVAE and the SymmetricVAE need images
            ``(C, H, W)``, the other models take the shape from the data when fitted.
        **params: Further constructor parameters of the model.

    Returns:
        The model.

    Raises:
        ValueError: If ``kind`` is unknown, or an image model gets a non-image shape.
    """
    if kind == "gaussian":
        return ClassConditionalGaussian(n_classes, covariance_type="diag", **params)
    if kind == "gaussian-full":
        return ClassConditionalGaussian(n_classes, covariance_type="full", **params)
    if kind == "gmm":
        return ClassConditionalGMM(n_classes, **params)
    if kind in IMAGE_GENERATORS:
        if len(sample_shape) != 3:
            raise ValueError(
                f"the {kind} generates images: sample_shape must be (C, H, W), got "
                f"{tuple(sample_shape)}; use 'gaussian' or 'gmm' for feature vectors"
            )
        channels, height, width = (int(d) for d in sample_shape)
        shape = (channels, height, width)
        if kind == "symvae":
            return SymmetricVAE(n_classes, image_shape=shape, **params)
        if kind == "flow":
            return FlowMatching(n_classes, image_shape=shape, **params)
        if kind == "score":
            return ScoreModel(n_classes, image_shape=shape, **params)
        if kind == "mean-embedding":
            return MeanEmbedding(n_classes, image_shape=shape, **params)
        architecture = "conv" if kind == "cvae-conv" else "mlp"
        return ConditionalVAE(n_classes, image_shape=shape, architecture=architecture, **params)
    raise ValueError(f"unknown generator {kind!r}; choose one of {GENERATORS}")
