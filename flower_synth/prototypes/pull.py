"""A feature-space pull towards the fused class mixtures (GMM prototypes)."""

from __future__ import annotations

import numpy as np
import torch

from flower_synth.prototypes.mixtures import ClassMixtures

VARIANCE_FLOOR = 1e-4  # keeps responsibilities finite for near-degenerate components


class MixturePull:
    """Per-example loss pulling a feature vector ``h`` of class ``y`` towards the fused
    mixture of its class: ``sum_k r_k * mean((h - mu_k)^2)``, where ``r_k`` is the
    responsibility of component ``k`` of class ``y`` for ``h`` (its posterior under
    that class's mixture, diagonal variances, computed without gradient). With one
    component per class it is FedProto's squared distance to the global prototype (per
    dimension); with several, each feature is pulled to the mode it already belongs
    to, so a class with several modes keeps them. Classes without a fused mixture
    cost nothing.

    Args:
        mixtures: the received global mixtures (full covariances use their diagonal).
        num_classes: number of classes.
    """

    def __init__(self, mixtures: ClassMixtures, num_classes: int) -> None:
        dim = mixtures.means.shape[1]
        per_class = np.bincount(mixtures.labels, minlength=num_classes)
        width = max(int(per_class.max(initial=0)), 1)
        variances = (
            mixtures.covariances
            if mixtures.diagonal
            else np.diagonal(mixtures.covariances, axis1=1, axis2=2)
        )
        means = np.zeros((num_classes, width, dim), np.float32)
        scales = np.ones((num_classes, width, dim), np.float32)
        log_weights = np.full((num_classes, width), -np.inf, np.float32)
        slot = np.zeros(num_classes, np.int64)
        for label, weight, mean, variance in zip(
            mixtures.labels, mixtures.weights, mixtures.means, variances, strict=True
        ):
            k = slot[label]
            means[label, k] = mean
            scales[label, k] = np.maximum(variance, VARIANCE_FLOOR)
            log_weights[label, k] = np.log(max(float(weight), 1e-12))
            slot[label] += 1
        log_weights[per_class == 0, 0] = 0.0  # a finite softmax; ``present`` zeroes it
        self.means = torch.from_numpy(means)
        self.variances = torch.from_numpy(scales)
        self.log_weights = torch.from_numpy(log_weights)
        self.present = torch.from_numpy(per_class > 0)

    def responsibilities(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` posterior of every component of each example's class."""
        with torch.no_grad():
            delta = features.detach()[:, None, :] - self.means[labels]
            variances = self.variances[labels]
            log_density = -0.5 * (delta.pow(2) / variances + variances.log()).sum(dim=2)
            return torch.softmax(self.log_weights[labels] + log_density, dim=1)

    def __call__(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-example pull, shape ``(N,)``."""
        labels = labels.cpu()
        weights = self.responsibilities(features.cpu(), labels).to(features.device)
        squared = (features[:, None, :] - self.means[labels].to(features.device)).pow(2)
        pull = (weights * squared.mean(dim=2)).sum(dim=1)
        return pull * self.present[labels].to(features.device)
