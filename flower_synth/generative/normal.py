"""Multivariate normal log-densities and sampling, shared by the Gaussian models.

Covariances are ``(M, D)`` variances for ``"diag"`` and ``(M, D, D)`` matrices for
``"full"``, as in :class:`sklearn.mixture.GaussianMixture`.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular

COVARIANCE_TYPES = ("diag", "full")


def log_normal_density(
    X: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str
) -> np.ndarray:
    """``log N(x_i; mean_m, cov_m)`` for every row ``x_i`` of ``X`` and component ``m``.

    Args:
        X: ``(N, D)`` points.
        means: ``(M, D)`` component means.
        covariances: Component covariances (see the module docstring).
        covariance_type: ``"diag"`` or ``"full"``.

    Returns:
        ``(N, M)`` float64 log-densities.
    """
    n_features = X.shape[1]
    out = np.empty((len(X), len(means)))
    for m, (mean, covariance) in enumerate(zip(means, covariances, strict=True)):
        diff = X - mean
        if covariance_type == "diag":
            mahalanobis = np.sum(diff**2 / covariance, axis=1)
            log_det = np.sum(np.log(covariance))
        else:
            cholesky = np.linalg.cholesky(covariance)
            mahalanobis = np.sum(solve_triangular(cholesky, diff.T, lower=True) ** 2, axis=0)
            log_det = 2.0 * np.sum(np.log(np.diag(cholesky)))
        out[:, m] = -0.5 * (n_features * np.log(2.0 * np.pi) + log_det + mahalanobis)
    return out


def sample_normal(
    means: np.ndarray,
    covariances: np.ndarray,
    covariance_type: str,
    components: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """One draw from ``N(mean_m, cov_m)`` for each entry ``m`` of ``components``.

    Args:
        means: ``(M, D)`` component means.
        covariances: Component covariances (see the module docstring).
        covariance_type: ``"diag"`` or ``"full"``.
        components: ``(n,)`` component index of each draw.
        rng: Source of the standard normal noise.

    Returns:
        ``(n, D)`` float64 samples.
    """
    noise = rng.standard_normal((len(components), means.shape[1]))
    if covariance_type == "diag":
        return means[components] + np.sqrt(covariances[components]) * noise
    out = np.empty_like(noise)
    for m in np.unique(components):
        rows = components == m
        out[rows] = means[m] + noise[rows] @ np.linalg.cholesky(covariances[m]).T
    return out
