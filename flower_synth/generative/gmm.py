"""A Gaussian mixture per class, fitted with scikit-learn's EM."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture

from flower_synth.generative.base import (
    DensityModel,
    check_choice,
    check_int,
    check_number,
    check_state_shape,
    require_keys,
)
from flower_synth.generative.normal import COVARIANCE_TYPES, log_normal_density, sample_normal

PARAMETER_KEYS = ("weights", "means", "covariances")


class ClassConditionalGMM(DensityModel):
    """``p(x | y=c)`` a Gaussian mixture on the flattened samples, ``p(y=c) = prior_c``.

    Each class with weight gets its own :class:`sklearn.mixture.GaussianMixture` with
    ``min(n_components, distinct rows of the class)`` components. GaussianMixture takes
    no sample weights, so weights are honoured by weighted resampling: within each
    class, as many rows as the class has with positive weight are drawn with
    replacement, with probabilities proportional to their weights (seeded by
    ``random_state``), and the mixture is fitted on them; rows with weight 0 are never
    drawn. Classes whose weights are all equal (e.g. ``sample_weight=None``) are
    fitted on their rows as they are. The class prior is exact: the weighted class
    frequency. A class with a single distinct row gets one component at that row with
    variance ``reg_covar``. Classes without weight keep the mixture of an earlier fit,
    like :class:`~flower_synth.generative.ClassConditionalGaussian`.

    Args:
        n_classes: Number of classes.
        n_components: Mixture components per class (at most).
        covariance_type: ``"diag"`` or ``"full"``.
        reg_covar: Non-negative value added to the variances.
        max_iter: EM iterations per fit.
        random_state: Seed of the resampling and of the EM initialisation.

    Attributes:
        weights_: ``(n_classes, n_components)`` mixture weights; unused components of a
            class (and every component of a never-fitted class) have weight 0.
        means_: ``(n_classes, n_components, D)`` component means.
        covariances_: ``(n_classes, n_components, D)`` variances (diag) or
            ``(n_classes, n_components, D, D)``.
    """

    weights_: np.ndarray
    means_: np.ndarray
    covariances_: np.ndarray

    def __init__(
        self,
        n_classes: int,
        n_components: int = 3,
        covariance_type: str = "diag",
        reg_covar: float = 1e-4,
        max_iter: int = 100,
        random_state: int = 0,
    ) -> None:
        self.n_classes = n_classes
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.random_state = random_state

    def class_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        """See :meth:`DensityModel.class_log_likelihood`."""
        X = self._flat_samples(X)
        n_classes, n_components, n_features = self.means_.shape
        log_density = log_normal_density(
            X,
            self.means_.reshape(-1, n_features),
            self.covariances_.reshape(n_classes * n_components, *self.covariances_.shape[2:]),
            self.covariance_type,
        ).reshape(len(X), n_classes, n_components)
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights_)
        return logsumexp(log_density + log_weights, axis=2)

    def _check_params(self) -> None:
        check_int("n_components", self.n_components, minimum=1)
        check_choice("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        check_number("reg_covar", self.reg_covar, positive=False)
        check_int("max_iter", self.max_iter, minimum=1)
        check_int("random_state", self.random_state, minimum=0)

    def _parameter_shapes(self, n_features: int) -> tuple[tuple[int, ...], ...]:
        """Shapes of ``weights_``, ``means_`` and ``covariances_``."""
        shape = (self.n_classes, self.n_components)
        covariance = (n_features,) if self.covariance_type == "diag" else (n_features,) * 2
        return shape, (*shape, n_features), (*shape, *covariance)

    def _blank_parameters(self, n_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Zero weights, zero means and unit covariances for every class and component."""
        weight_shape, mean_shape, covariance_shape = self._parameter_shapes(n_features)
        if self.covariance_type == "diag":
            covariances = np.ones(covariance_shape)
        else:
            covariances = np.tile(np.eye(n_features), (*weight_shape, 1, 1))
        return np.zeros(weight_shape), np.zeros(mean_shape), covariances

    def _fit(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray) -> None:
        X = X.reshape(len(X), -1).astype(np.float64, copy=False)
        blank = self._blank_parameters(X.shape[1])
        keep_previous = self.is_fitted and self.covariances_.shape == blank[2].shape
        previous = (self.weights_, self.means_, self.covariances_) if keep_previous else blank
        weights, means, covariances = (array.copy() for array in previous)
        rng = np.random.default_rng(self.random_state)
        for c in range(self.n_classes):
            rows = np.flatnonzero((y == c) & (weight > 0))
            if len(rows) == 0:
                continue
            if np.any(weight[rows] != weight[rows[0]]):
                rows = rng.choice(rows, size=len(rows), p=weight[rows] / weight[rows].sum())
            class_weights, class_means, class_covariances = self._fit_class(X[rows])
            k = len(class_weights)
            weights[c], means[c], covariances[c] = (array[c] for array in blank)
            weights[c, :k] = class_weights
            means[c, :k] = class_means
            covariances[c, :k] = class_covariances
        self.weights_, self.means_, self.covariances_ = weights, means, covariances

    def _fit_class(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mixture weights, means and covariances of one class's training rows."""
        n_distinct = len(np.unique(points, axis=0))
        if n_distinct == 1:  # GaussianMixture needs two distinct rows
            n_features = points.shape[1]
            covariance = self.reg_covar * (
                np.ones(n_features) if self.covariance_type == "diag" else np.eye(n_features)
            )
            return np.ones(1), points[:1].copy(), covariance[None]
        mixture = GaussianMixture(
            n_components=min(self.n_components, n_distinct),
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            random_state=self.random_state,
        ).fit(points)
        return mixture.weights_, mixture.means_, mixture.covariances_

    def _sample_rows(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n_classes, n_components, n_features = self.means_.shape
        cumulative = np.cumsum(self.weights_[y], axis=1)
        threshold = rng.random(len(y))[:, None] * cumulative[:, -1:]
        component = np.sum(cumulative < threshold, axis=1)
        return sample_normal(
            self.means_.reshape(-1, n_features),
            self.covariances_.reshape(n_classes * n_components, *self.covariances_.shape[2:]),
            self.covariance_type,
            y * n_components + component,
            rng,
        )

    def _model_state(self) -> dict[str, np.ndarray]:
        arrays = (self.weights_, self.means_, self.covariances_)
        return {key: array.copy() for key, array in zip(PARAMETER_KEYS, arrays, strict=True)}

    def _load_model_state(self, state: Mapping[str, np.ndarray]) -> None:
        require_keys(state, PARAMETER_KEYS)
        shapes = self._parameter_shapes(int(np.prod(self.sample_shape_)))
        arrays = [np.asarray(state[key], dtype=np.float64) for key in PARAMETER_KEYS]
        for key, array, shape in zip(PARAMETER_KEYS, arrays, shapes, strict=True):
            check_state_shape(key, array, shape)
        self.weights_, self.means_, self.covariances_ = arrays
