"""Per-class Gaussians of features released with the Gaussian mechanism: what a private
GMM-prototype client uploads in place of its fitted mixtures."""

from __future__ import annotations

import numpy as np

from flower_synth.privacy.dp_sgd import PrivacyLedger
from flower_synth.prototypes.mixtures import ClassMixtures

RELEASES = 3  # Gaussian mechanisms a round: per class a count, a sum, a sum of squares
VARIANCE_FLOOR = 1e-3  # what scikit-learn's reg_covar adds to the fitted mixtures' too
KEPT = 3.0  # a class is released when its noised count exceeds this many noise units


def private_class_gaussians(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    noise_multiplier: float,
    radius: float,
    ledger: PrivacyLedger,
    rng: np.random.Generator,
) -> ClassMixtures:
    """One diagonal Gaussian per class, differentially private in the features.

    Every feature vector is clipped to norm ``radius``; per class, its count, sum and
    sum of squares (L2 sensitivities 1, ``radius`` and ``radius**2`` when one example
    is added or removed) get Gaussian noise of ``noise_multiplier`` times their
    sensitivity. The classes are disjoint, so a round spends :data:`RELEASES` Gaussian
    mechanisms (recorded in ``ledger``) whatever the number of classes. From the noised
    statistics (post-processing): classes whose count exceeds :data:`KEPT` noise units,
    their mean (clipped to the ball of ``radius``) and variances (at least
    :data:`VARIANCE_FLOOR`, together at most ``radius**2``): what features on that
    sphere can have.
    """
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    clipped = features * np.minimum(1.0, radius / np.maximum(norms, 1e-12))
    dim = features.shape[1]
    parts: dict[str, list] = {"labels": [], "means": [], "variances": []}
    counts = np.zeros(num_classes, np.int64)
    for label in range(num_classes):
        members = clipped[labels == label]
        count = len(members) + rng.normal(0.0, noise_multiplier)
        total = members.sum(axis=0) + rng.normal(0.0, noise_multiplier * radius, dim)
        squares = (members**2).sum(axis=0) + rng.normal(0.0, noise_multiplier * radius**2, dim)
        if count <= KEPT * noise_multiplier:
            continue
        mean = total / count
        mean *= min(1.0, radius / max(float(np.linalg.norm(mean)), 1e-12))
        variances = np.maximum(squares / count - mean**2, VARIANCE_FLOOR)
        variances *= min(1.0, radius**2 / float(variances.sum()))
        parts["labels"].append(label)
        parts["means"].append(mean)
        parts["variances"].append(np.maximum(variances, VARIANCE_FLOOR))
        counts[label] = max(1, round(count))
    ledger.spend(noise_multiplier, 1.0, RELEASES)
    if counts.sum() > len(features):  # the training-set size travels anyway: keep within it
        counts = np.maximum(1, np.floor(counts * len(features) / counts.sum())).astype(np.int64)
        counts[np.setdiff1d(np.arange(num_classes), parts["labels"])] = 0
    released = len(parts["labels"])
    return ClassMixtures(
        np.asarray(parts["labels"], np.int64),
        np.ones(released),
        np.asarray(parts["means"]).reshape(released, dim),
        np.asarray(parts["variances"]).reshape(released, dim),
        counts,
    )
