"""Per-class Gaussian mixtures of feature vectors: fitting (scikit-learn) and sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.mixture import GaussianMixture

COVARIANCE_TYPES = ("diag", "full", "spherical", "tied")


@dataclass(frozen=True)
class ClassMixtures:
    """Gaussian mixtures of features, one per class, as a flat list of components.

    Attributes:
        labels: class of each component, ``(M,)``.
        weights: mixing weight of each component within its class (a class's weights
            sum to 1), ``(M,)``.
        means: ``(M, d)``.
        covariances: ``(M, d)`` diagonal variances, or ``(M, d, d)`` full matrices.
        class_counts: examples behind each class's mixture, ``(num_classes,)``; 0 for
            classes without a mixture.
    """

    labels: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    class_counts: np.ndarray

    @property
    def diagonal(self) -> bool:
        """Whether covariances are diagonal (stored as variance vectors)."""
        return self.covariances.ndim == 2

    @property
    def classes(self) -> np.ndarray:
        """Classes that have a mixture, ascending."""
        return np.unique(self.labels)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def sample(
        self, counts: dict[int, int], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``counts[c]`` feature vectors of every class ``c`` (classes without a
        mixture are skipped): float32 ``(N, d)`` and int64 labels ``(N,)``."""
        features, labels = [], []
        for label, count in sorted(counts.items()):
            members = np.flatnonzero(self.labels == label)
            if count <= 0 or members.size == 0:
                continue
            weights = self.weights[members] / self.weights[members].sum()
            chosen = members[rng.choice(members.size, size=count, p=weights)]
            noise = rng.standard_normal((count, self.means.shape[1]))
            if self.diagonal:
                draws = self.means[chosen] + noise * np.sqrt(self.covariances[chosen])
            else:
                factors = np.linalg.cholesky(self.covariances[chosen])
                draws = self.means[chosen] + np.einsum("nij,nj->ni", factors, noise)
            features.append(draws)
            labels.append(np.full(count, label))
        if not features:
            return np.zeros((0, self.means.shape[1]), np.float32), np.zeros(0, np.int64)
        return np.concatenate(features).astype(np.float32), np.concatenate(labels).astype(np.int64)


def fit_class_mixtures(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    n_components: int = 3,
    covariance_type: str = "diag",
    min_samples: int = 10,
    reg_covar: float = 1e-3,
    random_state: int = 0,
) -> ClassMixtures:
    """Fit scikit-learn's ``GaussianMixture`` to the features of every class with at
    least ``min_samples`` examples.

    A class gets ``min(n_components, n_c // 2)`` components, so small classes are not
    over-fitted. ``"spherical"`` covariances are returned as diagonal variances and
    ``"tied"`` as one full matrix per component, so every mixture is ``"diag"`` or
    ``"full"``. ``reg_covar`` (added to variances) keeps them positive after float16
    encoding.
    """
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"unknown covariance type {covariance_type!r}; choose one of {COVARIANCE_TYPES}"
        )
    if n_components < 1 or min_samples < 2:
        raise ValueError("n_components must be >= 1 and min_samples >= 2")
    dim = features.shape[1]
    diagonal = covariance_type in ("diag", "spherical")
    parts: dict[str, list[np.ndarray]] = {"labels": [], "weights": [], "means": [], "cov": []}
    counts = np.zeros(num_classes, np.int64)
    for label in range(num_classes):
        members = features[labels == label]
        if len(members) < min_samples:
            continue
        k = max(1, min(n_components, len(members) // 2))
        mixture = GaussianMixture(
            k, covariance_type=covariance_type, reg_covar=reg_covar, random_state=random_state
        ).fit(members)
        parts["labels"].append(np.full(k, label))
        parts["weights"].append(mixture.weights_)
        parts["means"].append(mixture.means_)
        parts["cov"].append(_as_diag_or_full(mixture.covariances_, covariance_type, k, dim))
        counts[label] = len(members)
    if not parts["labels"]:
        shape = (0, dim) if diagonal else (0, dim, dim)
        return ClassMixtures(
            np.zeros(0, np.int64), np.zeros(0), np.zeros((0, dim)), np.zeros(shape), counts
        )
    return ClassMixtures(
        np.concatenate(parts["labels"]).astype(np.int64),
        np.concatenate(parts["weights"]),
        np.concatenate(parts["means"]),
        np.concatenate(parts["cov"]),
        counts,
    )


def _as_diag_or_full(covariances: np.ndarray, kind: str, k: int, dim: int) -> np.ndarray:
    if kind == "spherical":
        return np.repeat(covariances[:, None], dim, axis=1)
    if kind == "tied":
        return np.repeat(covariances[None], k, axis=0)
    return covariances


def top_up_counts(
    class_counts: np.ndarray, available: np.ndarray, per_class: int
) -> dict[int, int]:
    """How many pseudo-features to draw per class so that every class in ``available``
    reaches ``per_class`` examples (real plus pseudo); ``per_class = 0`` means the
    client's largest class count (full class balance)."""
    target = per_class or int(class_counts.max(initial=0))
    return {int(c): max(0, target - int(class_counts[c])) for c in available}
