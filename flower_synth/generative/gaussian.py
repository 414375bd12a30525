"""One Gaussian per class, fitted in closed form by weighted maximum likelihood."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from flower_synth.generative.base import (
    DensityModel,
    check_choice,
    check_number,
    check_state_shape,
    require_keys,
)
from flower_synth.generative.normal import COVARIANCE_TYPES, log_normal_density, sample_normal


class ClassConditionalGaussian(DensityModel):
    """``p(x | y=c) = N(mean_c, cov_c)`` on the flattened samples, ``p(y=c) = prior_c``.

    ``fit`` is the exact weighted maximum-likelihood estimate: with ``W_c`` the weight
    of class ``c``, ``prior_c = W_c / sum(W)``, ``mean_c`` is the weighted mean of the
    class and ``cov_c`` its weighted covariance divided by ``W_c`` (biased), plus
    ``reg_covar`` on the diagonal. The joint model's mean parameters therefore match
    the weighted data moments: ``sum_c prior_c mean_c`` is the weighted mean of ``X``.
    A class without weight keeps the parameters of an earlier fit (zeros and identity
    if it never had weight); it gets prior 0 and is sampled only when requested by
    ``labels`` (never-fitted classes raise ``ValueError``). Work is in float64.

    Args:
        n_classes: Number of classes.
        covariance_type: ``"diag"`` (per-feature variances) or ``"full"``.
        reg_covar: Non-negative value added to the variances; keeps ``cov`` invertible.

    Attributes:
        means_: ``(n_classes, D)`` class means.
        covariances_: ``(n_classes, D)`` variances (diag) or ``(n_classes, D, D)``.
    """

    means_: np.ndarray
    covariances_: np.ndarray

    def __init__(
        self, n_classes: int, covariance_type: str = "diag", reg_covar: float = 1e-4
    ) -> None:
        self.n_classes = n_classes
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar

    def class_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        """See :meth:`DensityModel.class_log_likelihood`."""
        log_likelihood = log_normal_density(
            self._flat_samples(X), self.means_, self.covariances_, self.covariance_type
        )
        log_likelihood[:, ~self.class_seen_] = -np.inf
        return log_likelihood

    def _check_params(self) -> None:
        check_choice("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        check_number("reg_covar", self.reg_covar, positive=False)

    def _covariance_shape(self, n_features: int) -> tuple[int, ...]:
        if self.covariance_type == "diag":
            return (self.n_classes, n_features)
        return (self.n_classes, n_features, n_features)

    def _fit(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray) -> None:
        X = X.reshape(len(X), -1).astype(np.float64, copy=False)
        n_features = X.shape[1]
        if self.is_fitted and self.covariances_.shape == self._covariance_shape(n_features):
            means, covariances = self.means_.copy(), self.covariances_.copy()
        else:
            means = np.zeros((self.n_classes, n_features))
            if self.covariance_type == "diag":
                covariances = np.ones((self.n_classes, n_features))
            else:
                covariances = np.tile(np.eye(n_features), (self.n_classes, 1, 1))
        for c in range(self.n_classes):
            rows = y == c
            class_weight = weight[rows]
            if class_weight.sum() <= 0:
                continue
            means[c] = class_weight @ X[rows] / class_weight.sum()
            diff = X[rows] - means[c]
            if self.covariance_type == "diag":
                covariances[c] = class_weight @ diff**2 / class_weight.sum() + self.reg_covar
            else:
                covariances[c] = (diff * class_weight[:, None]).T @ diff / class_weight.sum()
                covariances[c] += self.reg_covar * np.eye(n_features)
        self.means_, self.covariances_ = means, covariances

    def _sample_rows(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return sample_normal(self.means_, self.covariances_, self.covariance_type, y, rng)

    def _model_state(self) -> dict[str, np.ndarray]:
        return {"means": self.means_.copy(), "covariances": self.covariances_.copy()}

    def _load_model_state(self, state: Mapping[str, np.ndarray]) -> None:
        require_keys(state, ("means", "covariances"))
        n_features = int(np.prod(self.sample_shape_))
        means = np.asarray(state["means"], dtype=np.float64)
        covariances = np.asarray(state["covariances"], dtype=np.float64)
        check_state_shape("means", means, (self.n_classes, n_features))
        check_state_shape("covariances", covariances, self._covariance_shape(n_features))
        self.means_, self.covariances_ = means, covariances
