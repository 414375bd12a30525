"""Server-side fusion of Gaussian components: Bhattacharyya distance and
moment-matched merging (GFPL-style prototype fusion)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flower_synth.prototypes.mixtures import ClassMixtures


def bhattacharyya_distance(
    mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray
) -> float:
    """Bhattacharyya distance between two Gaussians:
    ``1/8 dmu^T S^-1 dmu + 1/2 ln(|S| / sqrt(|S1| |S2|))`` with ``S = (S1 + S2) / 2``.

    Covariances are variance vectors ``(d,)`` (diagonal) or matrices ``(d, d)``.
    """
    delta = np.asarray(mean1, np.float64) - np.asarray(mean2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    average = (cov1 + cov2) / 2
    if average.ndim == 1:
        mahalanobis = float(delta @ (delta / average))
        log_ratio = np.log(average).sum() - 0.5 * (np.log(cov1).sum() + np.log(cov2).sum())
    else:
        mahalanobis = float(delta @ np.linalg.solve(average, delta))
        log_ratio = np.linalg.slogdet(average)[1] - 0.5 * (
            np.linalg.slogdet(cov1)[1] + np.linalg.slogdet(cov2)[1]
        )
    return mahalanobis / 8 + float(log_ratio) / 2


def merge_moments(
    masses: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """One Gaussian with the total mass, mean and covariance of weighted components:
    ``mu = sum w_i mu_i``, ``S = sum w_i (S_i + (mu_i - mu)(mu_i - mu)^T)``, with
    ``w_i = mass_i / sum(mass)``. Diagonal inputs give the diagonal of ``S``."""
    total = float(masses.sum())
    w = masses / total
    mean = w @ means
    spread = means - mean
    if covariances.ndim == 2:
        covariance = w @ (covariances + spread**2)
    else:
        covariance = np.einsum("i,ijk->jk", w, covariances + spread[:, :, None] * spread[:, None])
    return total, mean, covariance


@dataclass(frozen=True)
class Merges:
    """How many component pairs a fusion merged: ``similar`` because their
    Bhattacharyya distance per dimension was below ``tau``, ``capped`` only to respect
    the component cap."""

    similar: int = 0
    capped: int = 0

    def __add__(self, other: Merges) -> Merges:
        return Merges(self.similar + other.similar, self.capped + other.capped)


@dataclass(frozen=True)
class FusedComponents:
    """One class's components after :func:`fuse_components`, and the merges made."""

    masses: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    merges: Merges


def fuse_components(
    masses: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    tau: float,
    max_components: int | None = None,
) -> FusedComponents:
    """Greedy agglomerative fusion of one class's components.

    Repeatedly merges (:func:`merge_moments`) the pair with the smallest Bhattacharyya
    distance while that distance *per feature dimension* is below ``tau`` or more than
    ``max_components`` components remain (None: no cap). ``tau = 0`` and no cap change
    nothing.

    The distance is divided by the dimension ``d`` because between diagonal Gaussians
    it is a sum of one term per dimension: two estimates of the same cluster differ a
    little in every dimension, so their distance grows with ``d`` and a fixed threshold
    would merge everything in 2 dimensions and nothing in 84. Per dimension, ``tau``
    means the same in any feature space: e.g. ``tau = 0.05`` merges equal-variance
    Gaussians whose means differ by less than ``0.63`` standard deviations per
    dimension on average (``D / d = mean(dmu^2 / sigma^2) / 8``).
    """
    masses = [float(m) for m in masses]
    means_list = [np.asarray(m, np.float64) for m in means]
    covs = [np.asarray(c, np.float64) for c in covariances]
    size = len(masses)
    dim = means_list[0].shape[-1] if size else 1
    distance = np.full((size, size), np.inf)
    for i in range(size):
        for j in range(i + 1, size):
            distance[i, j] = bhattacharyya_distance(means_list[i], covs[i], means_list[j], covs[j])
    alive = list(range(size))
    similar = capped = 0
    while len(alive) > 1:
        sub = distance[np.ix_(alive, alive)]
        a, b = np.unravel_index(np.argmin(sub), sub.shape)
        i, j = alive[a], alive[b]
        close = sub[a, b] / dim < tau
        if not (close or (max_components is not None and len(alive) > max_components)):
            break
        similar, capped = (similar + 1, capped) if close else (similar, capped + 1)
        masses[i], means_list[i], covs[i] = merge_moments(
            np.array([masses[i], masses[j]]),
            np.stack([means_list[i], means_list[j]]),
            np.stack([covs[i], covs[j]]),
        )
        alive.remove(j)
        distance[j, :] = distance[:, j] = np.inf
        for other in alive:
            if other != i:
                d = bhattacharyya_distance(means_list[i], covs[i], means_list[other], covs[other])
                distance[min(i, other), max(i, other)] = d
    return FusedComponents(
        np.array([masses[i] for i in alive]),
        np.stack([means_list[i] for i in alive]),
        np.stack([covs[i] for i in alive]),
        Merges(similar, capped),
    )


def fuse_mixtures(
    mixtures: Sequence[ClassMixtures], tau: float, max_components: int | None = None
) -> tuple[ClassMixtures, Merges]:
    """The global mixtures: per class, every client's components with mass
    ``n_c * pi_k`` pooled and fused by :func:`fuse_components`; weights renormalised
    within each class, ``class_counts`` summed. Also returns the merges of all classes."""
    if not mixtures:
        raise ValueError("nothing to fuse")
    counts = np.sum([m.class_counts for m in mixtures], axis=0)
    parts: dict[str, list[np.ndarray]] = {"labels": [], "weights": [], "means": [], "cov": []}
    merges = Merges()
    labels = np.unique(np.concatenate([m.labels for m in mixtures]))
    for label in labels:
        masses, means, covs = [], [], []
        for mixture in mixtures:
            members = mixture.labels == label
            masses.append(mixture.class_counts[label] * mixture.weights[members])
            means.append(mixture.means[members])
            covs.append(mixture.covariances[members])
        fused = fuse_components(
            np.concatenate(masses), np.concatenate(means), np.concatenate(covs), tau, max_components
        )
        merges += fused.merges
        parts["labels"].append(np.full(len(fused.masses), label))
        parts["weights"].append(fused.masses / fused.masses.sum())
        parts["means"].append(fused.means)
        parts["cov"].append(fused.covariances)
    fused_mixtures = ClassMixtures(
        np.concatenate(parts["labels"]).astype(np.int64),
        np.concatenate(parts["weights"]),
        np.concatenate(parts["means"]),
        np.concatenate(parts["cov"]),
        counts.astype(np.int64),
    )
    return fused_mixtures, merges
