"""A feature extractor with two heads: a learnable linear head (cross-entropy) and a
fixed simplex-ETF head (Dot-Regression), as in GFPL-style prototype learning."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PREDICTION_HEADS = ("ce", "etf", "both")


def simplex_etf(num_classes: int, dim: int, seed: int = 0) -> torch.Tensor:
    """A simplex equiangular tight frame: ``num_classes`` unit vectors in R^dim, shape
    ``(num_classes, dim)``, with pairwise cosine ``-1 / (num_classes - 1)``.

    ``M = sqrt(C / (C - 1)) * U (I - 11^T / C)`` with ``U`` a random ``dim x C``
    orthonormal basis drawn from ``seed``: the same seed gives the same frame on every
    client, which is what makes their feature spaces comparable.
    """
    if num_classes < 2 or dim < num_classes:
        raise ValueError(
            f"a simplex ETF needs 2 <= num_classes <= dim, got {num_classes} classes in {dim} dims"
        )
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, num_classes, generator=generator))
    centering = torch.eye(num_classes) - torch.full((num_classes, num_classes), 1 / num_classes)
    frame = math.sqrt(num_classes / (num_classes - 1)) * basis @ centering
    return frame.T.contiguous()


def dot_regression_loss(
    features: torch.Tensor, labels: torch.Tensor, etf: torch.Tensor
) -> torch.Tensor:
    """Per-example Dot-Regression loss (Yang et al., NeurIPS 2022):
    ``1/2 (w_y . h / ||h|| - 1)^2`` for fixed unit-norm class vectors ``etf`` (C, d)."""
    dots = (F.normalize(features, dim=1) * etf[labels]).sum(dim=1)
    return 0.5 * (dots - 1.0).pow(2)


class ScaledNormalize(nn.Module):
    """``scale * h / ||h||`` row by row: features on a sphere of radius ``scale``."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The rescaled unit vectors of ``features`` ``(N, d)``."""
        return self.scale * F.normalize(features, dim=1)


class DualHeadClassifier(nn.Module):
    """``features`` (any extractor) -> ``h``; ``head(h)``: learnable logits trained with
    cross-entropy; ``etf``: a fixed simplex ETF (a buffer, never trained) that
    Dot-Regression pulls normalised features towards.

    ``forward`` returns logits for prediction, chosen by ``prediction``: ``"ce"`` the
    learnable head; ``"etf"`` the cosines to the ETF vectors times ``etf_scale``;
    ``"both"`` logits whose softmax is the mean of the two heads' softmaxes.

    Args:
        features: the feature extractor, images -> ``(N, feature_dim)``.
        feature_dim: width of the features.
        num_classes: number of classes.
        etf_seed: seed of the ETF; clients that share it share the frame.
        prediction: the head that predicts (see above).
        etf_scale: inverse temperature of the ETF head's softmax.
        normalize_features: put the features on the sphere of radius
            ``sqrt(feature_dim)`` (:class:`ScaledNormalize` after the extractor), so
            that the learnable head, the clients' mixtures and the pull all see the
            directions Dot-Regression aligns, and no client's feature norm differs
            from another's.
    """

    def __init__(
        self,
        features: nn.Module,
        feature_dim: int,
        num_classes: int,
        etf_seed: int = 0,
        prediction: str = "ce",
        etf_scale: float = 10.0,
        normalize_features: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(features, nn.Module):
            raise TypeError(
                f"features must be an nn.Module so that it trains and is saved with the "
                f"model, got a {type(features).__name__}; pass the module (e.g. net.features "
                "where it is an nn.Sequential), or SplitClassifier(net).features for any "
                "classifier (flower_synth.models)"
            )
        if prediction not in PREDICTION_HEADS:
            raise ValueError(
                f"unknown prediction head {prediction!r}; choose one of {PREDICTION_HEADS}"
            )
        self.features = (
            nn.Sequential(features, ScaledNormalize(math.sqrt(feature_dim)))
            if normalize_features
            else features
        )
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)
        self.register_buffer("etf", simplex_etf(num_classes, feature_dim, etf_seed))
        self.prediction = prediction
        self.etf_scale = etf_scale

    def etf_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``etf_scale`` times the cosine of every feature vector to every ETF vector."""
        return self.etf_scale * F.normalize(features, dim=1) @ self.etf.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Prediction logits for a batch of images (see the class docstring)."""
        h = self.features(x)
        if self.prediction == "ce":
            return self.head(h)
        if self.prediction == "etf":
            return self.etf_logits(h)
        mean = 0.5 * (torch.softmax(self.head(h), dim=1) + torch.softmax(self.etf_logits(h), dim=1))
        return mean.log()
