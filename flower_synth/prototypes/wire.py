"""Prototypes on the wire: encoding, and validation of what arrives.

Gaussian-mixture prototypes are five arrays,
``[labels, weights, means, covariances, class_counts]``; FedProto prototypes three,
``[labels, means, counts]``. Labels and counts are ``int32``, the rest ``float16``
(default) or ``float32``. Decoding always validates, so a malformed payload raises
:class:`~flower_synth.wire.payload.PayloadError` naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flower_synth.prototypes.means import ClassPrototypes
from flower_synth.prototypes.mixtures import ClassMixtures
from flower_synth.wire.payload import LABEL_DTYPE, PayloadError

PROTOTYPE_DTYPES = ("float16", "float32")
WEIGHT_SUM_TOLERANCE = 1e-2  # float16 weights of a class sum to 1 within this
# Floats beyond float16's range would turn to inf in a float16 broadcast: rejected.
MAX_MAGNITUDE = float(np.finfo(np.float16).max)
# Variances below float16's smallest normal number vanish in a float16 broadcast (every
# client would refuse it): refused where they arrive, so one client's degenerate
# component never blocks the fused mixtures. Fitted mixtures add reg_covar (1e-3).
MIN_VARIANCE = float(np.finfo(np.float16).tiny)
# Slack on the bounds of features on a sphere (float16 rounding, fitted mixtures'
# reg_covar): means within 1.01 radii, variances summing to at most 1.1 radii squared.
SPHERE_MEAN_SLACK, SPHERE_VARIANCE_SLACK = 1.01, 1.1
MAX_COUNT = np.iinfo(np.int32).max


def encode_mixtures(mixtures: ClassMixtures, dtype: str = "float16") -> list[np.ndarray]:
    """``[labels, weights, means, covariances, class_counts]`` ready to send."""
    floats = _float_dtype(dtype)
    return [
        mixtures.labels.astype(LABEL_DTYPE),
        mixtures.weights.astype(floats),
        mixtures.means.astype(floats),
        mixtures.covariances.astype(floats),
        _counts(mixtures.class_counts),
    ]


def encode_prototypes(prototypes: ClassPrototypes, dtype: str = "float16") -> list[np.ndarray]:
    """``[labels, means, counts]`` ready to send."""
    return [
        prototypes.labels.astype(LABEL_DTYPE),
        prototypes.means.astype(_float_dtype(dtype)),
        _counts(prototypes.counts),
    ]


def decode_mixtures(
    arrays: Sequence[np.ndarray],
    num_classes: int,
    feature_dim: int,
    covariance: str = "diag",
    max_components_per_class: int | None = None,
    feature_radius: float | None = None,
) -> ClassMixtures:
    """Validate and decode mixture prototypes (float64 arrays, weights renormalised).

    With ``feature_radius`` (features on the sphere of that radius, as
    ``feature-norm`` puts them), a component must be one that a mixture of such
    features can have: its mean within the ball (``|mu| <= r``) and its variances
    summing to at most ``r**2`` (``trace(Sigma) = E|x|^2 - |mu|^2``), each with the slack
    of :data:`SPHERE_MEAN_SLACK` and :data:`SPHERE_VARIANCE_SLACK`.

    Raises:
        PayloadError: wrong array count, dtypes or shapes; ``covariance`` (``"diag"``
            or ``"full"``) not the one sent; labels out of range; non-finite values;
            weights outside (0, 1] or not summing to 1 per class; variances (or
            covariance eigenvalues) below :data:`MIN_VARIANCE`, or covariance matrices
            that are not symmetric; classes whose components and counts disagree;
            floats beyond float16's range; more than ``max_components_per_class``
            components in a class; with ``feature_radius``, components outside those
            bounds.
    """
    if len(arrays) != 5:
        raise PayloadError(
            f"expected 5 arrays [labels, weights, means, covariances, class_counts], "
            f"got {len(arrays)}"
        )
    labels, weights, means, covariances, counts = arrays
    size = _check_labels(labels, num_classes)
    _check_floats("weights", weights, (size,))
    _check_floats("means", means, (size, feature_dim))
    expected = (size, feature_dim) if covariance == "diag" else (size, feature_dim, feature_dim)
    _check_floats("covariances", covariances, expected)
    _check_counts(counts, (num_classes,))
    if not (weights.dtype == means.dtype == covariances.dtype):
        raise PayloadError("weights, means and covariances must share one float dtype")
    weights = weights.astype(np.float64)
    covariances = covariances.astype(np.float64)
    if size and ((weights <= 0) | (weights > 1 + WEIGHT_SUM_TOLERANCE)).any():
        raise PayloadError("component weights must lie in (0, 1]")
    present = np.unique(labels)
    if not np.array_equal(present, np.flatnonzero(counts)):
        raise PayloadError(
            f"classes with components {present.tolist()} must be exactly the classes with "
            f"nonzero class_counts {np.flatnonzero(counts).tolist()}"
        )
    for label in present:
        members = labels == label
        if abs(weights[members].sum() - 1) > WEIGHT_SUM_TOLERANCE:
            raise PayloadError(
                f"weights of class {label} sum to {weights[members].sum():.4f}, not 1"
            )
        if max_components_per_class is not None and members.sum() > max_components_per_class:
            raise PayloadError(
                f"class {label} has {members.sum()} components; at most "
                f"{max_components_per_class} allowed"
            )
        weights[members] /= weights[members].sum()
    _check_positive_definite(covariances)
    means = means.astype(np.float64)
    if feature_radius is not None:
        _check_within_sphere(means, covariances, feature_radius)
    return ClassMixtures(
        labels.astype(np.int64),
        weights,
        means,
        covariances,
        counts.astype(np.int64),
    )


def _check_within_sphere(means: np.ndarray, covariances: np.ndarray, radius: float) -> None:
    norms = np.linalg.norm(means, axis=1)
    if (norms > SPHERE_MEAN_SLACK * radius).any():
        raise PayloadError(
            f"component means must lie within the features' sphere of radius {radius:.3g}, "
            f"got a mean of norm {float(norms.max()):.3g}"
        )
    diagonal = covariances.ndim == 2
    traces = covariances.sum(axis=1) if diagonal else np.trace(covariances, axis1=1, axis2=2)
    if (traces > SPHERE_VARIANCE_SLACK * radius**2).any():
        raise PayloadError(
            f"component variances must sum to at most {radius**2:.3g} (the squared radius "
            f"of the features' sphere), got {float(traces.max()):.3g}"
        )


def decode_prototypes(
    arrays: Sequence[np.ndarray], num_classes: int, feature_dim: int
) -> ClassPrototypes:
    """Validate and decode FedProto prototypes.

    Raises:
        PayloadError: wrong array count, dtypes or shapes; labels out of range or
            repeated; non-finite means; counts that are not positive.
    """
    if len(arrays) != 3:
        raise PayloadError(f"expected 3 arrays [labels, means, counts], got {len(arrays)}")
    labels, means, counts = arrays
    size = _check_labels(labels, num_classes)
    if len(np.unique(labels)) != size:
        raise PayloadError("each class may carry one prototype; labels repeat")
    _check_floats("means", means, (size, feature_dim))
    _check_counts(counts, (size,))
    if (counts <= 0).any():
        raise PayloadError("prototype counts must be positive")
    order = np.argsort(labels)
    return ClassPrototypes(
        labels[order].astype(np.int64),
        means[order].astype(np.float64),
        counts[order].astype(np.int64),
    )


def _counts(counts: np.ndarray) -> np.ndarray:
    """Counts as int32 on the wire; fused counts beyond its range are clipped, never
    wrapped round to negatives."""
    return np.clip(counts, 0, MAX_COUNT).astype(LABEL_DTYPE)


def _float_dtype(dtype: str) -> np.dtype:
    if dtype not in PROTOTYPE_DTYPES:
        raise ValueError(f"unknown prototype dtype {dtype!r}; choose one of {PROTOTYPE_DTYPES}")
    return np.dtype(dtype)


def _check_labels(labels: np.ndarray, num_classes: int) -> int:
    if labels.dtype != LABEL_DTYPE or labels.ndim != 1:
        raise PayloadError(f"labels must be a 1-D int32 array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise PayloadError(
            f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    return int(labels.size)


def _check_floats(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.dtype.name not in PROTOTYPE_DTYPES:
        raise PayloadError(f"{name} must be float16 or float32, got {array.dtype}")
    if array.shape != shape:
        raise PayloadError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.isfinite(array).all():
        raise PayloadError(f"{name} contain NaN or infinite values")
    if array.size and np.abs(array).max() > MAX_MAGNITUDE:
        raise PayloadError(
            f"{name} must lie within +-{MAX_MAGNITUDE:g} (float16's range), "
            f"got {float(np.abs(array).max()):g}"
        )


def _check_counts(counts: np.ndarray, shape: tuple[int, ...]) -> None:
    if counts.dtype != LABEL_DTYPE or counts.shape != shape:
        raise PayloadError(
            f"counts must be int32 of shape {shape}, got {counts.dtype} {counts.shape}"
        )
    if (counts < 0).any():
        raise PayloadError("counts must be non-negative")


def _check_positive_definite(covariances: np.ndarray) -> None:
    if covariances.ndim == 3:
        if not np.allclose(covariances, covariances.transpose(0, 2, 1), rtol=1e-2, atol=1e-3):
            raise PayloadError("covariance matrices must be symmetric")
        if not len(covariances):
            return
        smallest = float(np.linalg.eigvalsh(covariances).min())
        what = "covariance matrices must be positive definite with eigenvalues"
    else:
        smallest = float(covariances.min()) if covariances.size else MIN_VARIANCE
        what = "variances must be"
    if not smallest >= MIN_VARIANCE:
        raise PayloadError(
            f"{what} at least {MIN_VARIANCE:.3g} (float16's smallest normal number: a float16 "
            f"broadcast loses smaller ones), got {smallest:.3g}; fit mixtures with "
            "reg_covar >= 1e-4"
        )
