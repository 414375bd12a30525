"""The interface of the local generative models, and the input checks they share."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import Self

import numpy as np
from scipy.special import logsumexp
from sklearn.exceptions import NotFittedError

RandomState = int | np.random.Generator | None

BASE_STATE_KEYS = ("class_prior", "class_seen", "sample_shape")


class GenerativeModel(abc.ABC):
    """A class-conditional generative model ``p(x | y) p(y)`` fitted on local data.

    ``fit`` validates the inputs, fits the model and sets the class prior; ``sample``
    draws labels (from the prior unless given) and then samples. Subclasses implement
    the hooks ``_check_params``, ``_fit``, ``_sample_rows``, ``_model_state`` and
    ``_load_model_state``.

    A class can be sampled once it has had positive weight in some fit (see
    ``class_seen_``): a class with no weight in the latest fit gets prior 0, so it is
    never drawn, but models keep its earlier parameters and sample it when asked for by
    ``labels``. Asking for a class that never had weight raises ``ValueError``.

    Attributes:
        n_classes: Number of classes; labels lie in ``[0, n_classes)``.
        sample_shape_: Shape of one sample, e.g. ``(C, H, W)`` or ``(D,)``; set by fit.
        class_prior_: ``(n_classes,)`` float64, the weighted class frequencies of the
            latest fit.
        class_seen_: ``(n_classes,)`` bool, the classes that had positive weight in
            some fit.
    """

    n_classes: int
    sample_shape_: tuple[int, ...]
    class_prior_: np.ndarray
    class_seen_: np.ndarray

    @property
    def is_private(self) -> bool:
        """Whether what the model generates is differentially private in its training
        data (it then keeps what it spent in ``privacy_``); False here."""
        return False

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` or ``set_state`` has been called."""
        return hasattr(self, "class_prior_")

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> Self:
        """Fit on ``(X, y)``; warm where the model has state (it continues from it).

        Args:
            X: ``(N, *sample_shape)`` finite floats, e.g. images ``(N, C, H, W)`` in
                [0, 1] or features ``(N, D)``.
            y: ``(N,)`` integer labels in ``[0, n_classes)``.
            sample_weight: ``(N,)`` non-negative weights with a positive sum; None
                weighs every row equally.

        Returns:
            The fitted model.

        Raises:
            ValueError: If a constructor parameter or an input is invalid, or if ``X``
                has another sample shape than the data of an earlier fit.
        """
        check_int("n_classes", self.n_classes, minimum=1)
        self._check_params()
        X, y, weight = check_fit_inputs(X, y, sample_weight, self.n_classes)
        if self.is_fitted and X.shape[1:] != self.sample_shape_:
            raise ValueError(
                f"X has sample shape {X.shape[1:]} but the model was fitted on "
                f"{self.sample_shape_}; fit a new model for data of another shape"
            )
        class_weight = np.bincount(y, weights=weight, minlength=self.n_classes)
        self._fit(X, y, weight)
        seen = self.class_seen_ if self.is_fitted else np.zeros(self.n_classes, dtype=bool)
        self.sample_shape_ = X.shape[1:]
        self.class_prior_ = class_weight / class_weight.sum()
        self.class_seen_ = seen | (class_weight > 0)
        return self

    def sample(
        self, n: int, labels: np.ndarray | None = None, random_state: RandomState = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` labelled samples.

        Args:
            n: Number of samples (>= 0).
            labels: ``(n,)`` classes to generate; None draws them from ``class_prior_``.
            random_state: Seed or generator; the same seed gives the same output.

        Returns:
            ``(X, y)``: X ``(n, *sample_shape_)`` float32 and y ``(n,)`` int64.

        Raises:
            NotFittedError: If the model is not fitted (a ``ValueError``).
            ValueError: If ``n`` or ``labels`` is invalid, ``labels`` asks for a
                class that never had weight in a fit, or a parameter set since the fit
                (e.g. an ODE model's ``steps`` or ``guidance_scale``) is invalid.
        """
        self._check_fitted()
        self._check_params()
        check_int("n", n, minimum=0)
        rng = np.random.default_rng(random_state)
        if labels is None:
            y = rng.choice(self.n_classes, size=n, p=self.class_prior_)
        else:
            y = self._check_labels(labels, n)
        X = self._sample_rows(y, rng)
        return np.asarray(X, dtype=np.float32).reshape(n, *self.sample_shape_), y

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class posterior ``p(y | x)``, ``(N, n_classes)``, for models that define one.

        Raises:
            NotImplementedError: Always here; models with a class posterior override it.
        """
        raise NotImplementedError(
            f"{type(self).__name__} defines no class posterior p(y | x); use a model "
            "that does, such as ClassConditionalGaussian or ClassConditionalGMM"
        )

    def parameter_count(self) -> int:
        """Numbers the fitted model holds (its state's arrays, less its class prior,
        its seen classes and its sample shape); torch models count their networks'
        parameters.

        Raises:
            NotFittedError: If the model is not fitted.
        """
        state = self.get_state()
        return int(sum(np.size(v) for k, v in state.items() if k not in BASE_STATE_KEYS))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class of each row of ``X``: argmax of :meth:`predict_proba`.

        Returns:
            ``(N,)`` int64 labels.
        """
        return np.argmax(self.predict_proba(X), axis=1).astype(np.int64)

    def get_state(self) -> dict[str, np.ndarray]:
        """Everything needed to restore the fitted model, as numpy arrays only.

        Returns:
            Arrays keyed by name (shapes and scalars are small arrays), fit for a Flower
            ``ArrayRecord``.

        Raises:
            NotFittedError: If the model is not fitted.
        """
        self._check_fitted()
        return {
            "class_prior": self.class_prior_.copy(),
            "class_seen": self.class_seen_.copy(),
            "sample_shape": np.asarray(self.sample_shape_, dtype=np.int64),
        } | self._model_state()

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a model saved by :meth:`get_state`.

        The instance must have been constructed with the same parameters as the saved
        one; it then samples exactly like it for the same ``random_state``.

        Args:
            state: Arrays returned by :meth:`get_state`.

        Raises:
            ValueError: If keys are missing or the arrays do not fit this model's
                parameters.
        """
        check_int("n_classes", self.n_classes, minimum=1)
        self._check_params()
        require_keys(state, BASE_STATE_KEYS)
        class_prior = np.asarray(state["class_prior"], dtype=np.float64)
        check_state_shape("class_prior", class_prior, (self.n_classes,))
        class_seen = np.asarray(state["class_seen"], dtype=bool)
        check_state_shape("class_seen", class_seen, (self.n_classes,))
        self.sample_shape_ = tuple(int(d) for d in np.asarray(state["sample_shape"]))
        self._load_model_state(state)
        self.class_prior_ = class_prior
        self.class_seen_ = class_seen

    @abc.abstractmethod
    def _check_params(self) -> None:
        """Validate the constructor parameters; raise ``ValueError`` naming the bad one."""

    @abc.abstractmethod
    def _fit(self, X: np.ndarray, y: np.ndarray, weight: np.ndarray) -> None:
        """Fit on validated float ``X`` (float32 or float64), int64 ``y`` and float64
        ``weight``."""

    @abc.abstractmethod
    def _sample_rows(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``len(y)`` samples of the classes ``y`` (any shape with ``len(y)`` rows)."""

    @abc.abstractmethod
    def _model_state(self) -> dict[str, np.ndarray]:
        """The model's own arrays for :meth:`get_state`."""

    @abc.abstractmethod
    def _load_model_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Load the model's own arrays; ``sample_shape_`` is already set."""

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted; call fit or set_state first"
            )

    def _check_labels(self, labels: np.ndarray, n: int) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels has shape {labels.shape}, expected (n,) = ({n},)")
        y = check_labels("labels", labels, self.n_classes)
        unseen = sorted(set(np.unique(y).tolist()) - set(np.flatnonzero(self.class_seen_)))
        if unseen:
            raise ValueError(
                f"labels asks for classes {unseen} that had no weight in any fit; "
                "request only classes the model was fitted on"
            )
        return y

    def _flat_samples(self, X: np.ndarray) -> np.ndarray:
        """Validated ``(N, *sample_shape_)`` input as a float64 ``(N, D)`` array."""
        self._check_fitted()
        X = np.asarray(X)
        if X.shape[1:] != self.sample_shape_:
            raise ValueError(
                f"X has shape {X.shape}, expected (N, *sample_shape_) = "
                f"(N, {', '.join(map(str, self.sample_shape_))})"
            )
        return check_finite("X", X).reshape(len(X), -1).astype(np.float64, copy=False)


class DensityModel(GenerativeModel):
    """A generative model with tractable class-conditional likelihoods, whose Bayes
    posterior ``p(y | x)`` serves as its classifier."""

    @abc.abstractmethod
    def class_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        """``log p(x | y=c)`` of each row of ``X`` under each class.

        Args:
            X: ``(N, *sample_shape_)`` finite values.

        Returns:
            ``(N, n_classes)`` float64; ``-inf`` for classes never fitted.
        """

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Bayes posterior ``p(y | x)`` from the class log-likelihoods and priors.

        Args:
            X: ``(N, *sample_shape_)`` finite values.

        Returns:
            ``(N, n_classes)`` float64 rows summing to 1.
        """
        return class_posterior(self.class_log_likelihood(X), self.class_prior_)


def check_fit_inputs(
    X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate training data.

    Args:
        X: ``(N, *sample_shape)`` numbers, N >= 1.
        y: ``(N,)`` integer labels in ``[0, n_classes)``.
        sample_weight: ``(N,)`` non-negative finite weights with a positive sum, or None.
        n_classes: Number of classes.

    Returns:
        ``(X, y, weight)``: X as floats (see :func:`check_finite`), y int64 and weight
        float64 (all ones if ``sample_weight`` is None).

    Raises:
        ValueError: Naming the first problem found.
    """
    X = np.asarray(X)
    if X.ndim < 2 or len(X) == 0:
        raise ValueError(
            f"X has shape {X.shape}, expected (N, *sample_shape) with N >= 1; "
            "reshape a single feature to (N, 1)"
        )
    X = check_finite("X", X)
    y = np.asarray(y)
    if y.shape != (len(X),):
        raise ValueError(
            f"y has shape {y.shape} but X has {len(X)} rows; pass one label per row of X"
        )
    y = check_labels("y", y, n_classes)
    if sample_weight is None:
        return X, y, np.ones(len(X))
    weight = np.asarray(sample_weight)
    if weight.shape != (len(X),):
        raise ValueError(
            f"sample_weight has shape {weight.shape} but X has {len(X)} rows; "
            "pass one weight per row of X"
        )
    weight = check_finite("sample_weight", weight).astype(np.float64, copy=False)
    if np.any(weight < 0):
        raise ValueError(
            f"sample_weight has {int(np.sum(weight < 0))} negative entries; weights must be >= 0"
        )
    if weight.sum() <= 0:
        raise ValueError("sample_weight sums to 0; give at least one row a positive weight")
    return X, y, weight


def check_finite(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` as floats (float32 and float64 kept, anything else as float64), or
    ``ValueError`` if not numeric or not all finite. Images stay float32: converting
    them costs more than the checks."""
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {values.dtype}")
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    bad = int(np.sum(~np.isfinite(values)))
    if bad:
        raise ValueError(
            f"{name} contains {bad} NaN or infinite values; remove or impute them first"
        )
    return values


def check_labels(name: str, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Integer ``labels`` in ``[0, n_classes)`` as int64, or ``ValueError``."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{name} must hold integer class labels, got dtype {labels.dtype}; "
            "cast with .astype(int)"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"{name} holds labels outside [0, n_classes={n_classes}) (min {labels.min()}, "
            f"max {labels.max()}); use labels 0..{n_classes - 1} or raise n_classes"
        )
    return labels.astype(np.int64)


def check_int(name: str, value: object, minimum: int) -> None:
    """``ValueError`` unless ``value`` is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_number(name: str, value: object, *, positive: bool) -> None:
    """``ValueError`` unless ``value`` is a finite number ``> 0`` (or ``>= 0``)."""
    valid = (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and np.isfinite(value)
        and (value > 0 if positive else value >= 0)
    )
    if not valid:
        raise ValueError(
            f"{name} must be a finite number {'>' if positive else '>='} 0, got {value!r}"
        )


def check_choice(name: str, value: object, choices: Iterable[str]) -> None:
    """``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def require_keys(state: Mapping[str, np.ndarray], keys: Iterable[str]) -> None:
    """``ValueError`` listing the ``keys`` missing from ``state``."""
    missing = [key for key in keys if key not in state]
    if missing:
        raise ValueError(
            f"state lacks {missing}; pass the dict returned by get_state of the same model type"
        )


def check_state_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    """``ValueError`` if a state array does not have the shape this model expects."""
    if array.shape != shape:
        raise ValueError(
            f"state[{name!r}] has shape {array.shape}, expected {shape}; construct the model "
            "with the same parameters as the one that produced the state"
        )


def class_posterior(log_likelihood: np.ndarray, class_prior: np.ndarray) -> np.ndarray:
    """Bayes' rule in log space: ``p(y | x)`` from ``log p(x | y)`` ``(N, K)`` and ``p(y)``.

    Classes with prior 0 (or log-likelihood ``-inf``) get posterior 0.
    """
    with np.errstate(divide="ignore"):
        joint = log_likelihood + np.log(class_prior)
    return np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
