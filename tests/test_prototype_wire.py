"""Prototype payloads: lossless-enough round trips and rejection of every malformed kind."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from flower_synth.prototypes import (
    ClassMixtures,
    ClassPrototypes,
    decode_mixtures,
    decode_prototypes,
    encode_mixtures,
    encode_prototypes,
)
from flower_synth.wire.payload import PayloadError

CLASSES, DIM = 4, 3


def sample_mixtures() -> ClassMixtures:
    return ClassMixtures(
        labels=np.array([0, 0, 2]),
        weights=np.array([0.25, 0.75, 1.0]),
        means=np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [-1.0, -2.0, -3.5]]),
        covariances=np.array([[0.5, 1.0, 2.0], [1.0, 1.0, 1.0], [0.1, 0.2, 0.3]]),
        class_counts=np.array([40, 0, 12, 0]),
    )


def sample_prototypes() -> ClassPrototypes:
    return ClassPrototypes(
        np.array([1, 3]), np.array([[0.5, 1.0, -2.0], [3.0, 0.0, 1.0]]), np.array([7, 9])
    )


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_mixtures_round_trip(dtype: str) -> None:
    original = sample_mixtures()
    arrays = encode_mixtures(original, dtype)
    assert [a.dtype.name for a in arrays] == ["int32", dtype, dtype, dtype, "int32"]
    decoded = decode_mixtures(arrays, CLASSES, DIM)
    np.testing.assert_array_equal(decoded.labels, original.labels)
    np.testing.assert_array_equal(decoded.class_counts, original.class_counts)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(decoded, name), getattr(original, name), rtol=1e-3)


def test_mixture_bytes_are_counted_per_component() -> None:
    arrays = encode_mixtures(sample_mixtures(), "float16")
    component = 4 + 2 + 2 * DIM + 2 * DIM  # label, weight, mean, variances
    assert sum(a.nbytes for a in arrays) == 3 * component + 4 * CLASSES


def test_prototypes_round_trip_sorted_by_class() -> None:
    original = sample_prototypes()
    arrays = encode_prototypes(original, "float32")
    decoded = decode_prototypes([a[::-1] for a in arrays], CLASSES, DIM)
    np.testing.assert_array_equal(decoded.labels, [1, 3])
    np.testing.assert_allclose(decoded.means, original.means)
    np.testing.assert_array_equal(decoded.counts, [7, 9])


def corrupt(index: int, change: Callable[[np.ndarray], np.ndarray]):
    def apply(arrays: list[np.ndarray]) -> list[np.ndarray]:
        arrays = list(arrays)
        arrays[index] = change(arrays[index].copy())
        return arrays

    return apply


def set_item(index, value):
    def change(array):
        array[index] = value
        return array

    return change


MIXTURE_DEFECTS = {
    "missing array": lambda arrays: arrays[:4],
    "float labels": corrupt(0, lambda a: a.astype(np.float32)),
    "label out of range": corrupt(0, set_item(2, CLASSES)),
    "negative label": corrupt(0, set_item(0, -1)),
    "wrong feature width": corrupt(2, lambda a: a[:, :2]),
    "float64 means": corrupt(2, lambda a: a.astype(np.float64)),
    "mixed float dtypes": corrupt(1, lambda a: a.astype(np.float32)),
    "nan mean": corrupt(2, set_item((1, 1), np.nan)),
    "infinite variance": corrupt(3, set_item((0, 0), np.inf)),
    "zero variance": corrupt(3, set_item((2, 1), 0.0)),
    "full covariances where diagonal expected": corrupt(
        3, lambda a: np.stack([np.diag(v) for v in a])
    ),
    "weights not summing to one": corrupt(1, set_item(0, 0.5)),
    "zero weight": corrupt(1, set_item(2, 0.0)),
    "components without class count": corrupt(4, set_item(2, 0)),
    "class count without components": corrupt(4, set_item(1, 5)),
    "negative count": corrupt(4, set_item(3, -3)),
    "counts of wrong length": corrupt(4, lambda a: a[:3]),
    "weights of wrong length": corrupt(1, lambda a: a[:2]),
}


@pytest.mark.parametrize("defect", list(MIXTURE_DEFECTS))
def test_malformed_mixtures_are_rejected(defect: str) -> None:
    arrays = MIXTURE_DEFECTS[defect](encode_mixtures(sample_mixtures(), "float16"))
    with pytest.raises(PayloadError):
        decode_mixtures(arrays, CLASSES, DIM)


def test_too_many_components_per_class_are_rejected() -> None:
    arrays = encode_mixtures(sample_mixtures(), "float16")
    decode_mixtures(arrays, CLASSES, DIM, max_components_per_class=2)
    with pytest.raises(PayloadError, match="at most 1 allowed"):
        decode_mixtures(arrays, CLASSES, DIM, max_components_per_class=1)


def test_variances_a_float16_broadcast_would_lose_are_refused() -> None:
    arrays = encode_mixtures(sample_mixtures(), "float32")
    arrays[3][1, 2] = 1e-30
    with pytest.raises(PayloadError, match="variances must be at least 6.1e-05"):
        decode_mixtures(arrays, CLASSES, DIM)
    arrays[3][1, 2] = 1e-3  # what fitted mixtures hold at least (reg_covar)
    assert decode_mixtures(arrays, CLASSES, DIM).covariances[1, 2] == pytest.approx(1e-3)


def test_with_a_feature_radius_components_must_fit_the_sphere() -> None:
    arrays = encode_mixtures(sample_mixtures(), "float32")  # means up to |(3, 4, 5)| = 7.07
    decode_mixtures(arrays, CLASSES, DIM, feature_radius=7.1)
    with pytest.raises(PayloadError, match="within the features' sphere of radius 5"):
        decode_mixtures(arrays, CLASSES, DIM, feature_radius=5.0)
    arrays[3][0] = [30.0, 30.0, 30.0]  # variances summing to 90 > 1.1 * 8**2
    with pytest.raises(PayloadError, match="sum to at most 64"):
        decode_mixtures(arrays, CLASSES, DIM, feature_radius=8.0)


def test_full_covariances_must_be_positive_definite() -> None:
    mixtures = sample_mixtures()
    full = ClassMixtures(
        mixtures.labels,
        mixtures.weights,
        mixtures.means,
        np.stack([np.diag(v) for v in mixtures.covariances]),
        mixtures.class_counts,
    )
    arrays = encode_mixtures(full, "float32")
    assert decode_mixtures(arrays, CLASSES, DIM, covariance="full").covariances.shape == (3, 3, 3)
    arrays[3][1] = -np.eye(DIM)
    with pytest.raises(PayloadError, match="positive definite"):
        decode_mixtures(arrays, CLASSES, DIM, covariance="full")
    arrays[3][1] = np.diag([1.0, 1.0, 1e-30]).astype(np.float32)  # vanishes in float16
    with pytest.raises(PayloadError, match="eigenvalues at least"):
        decode_mixtures(arrays, CLASSES, DIM, covariance="full")


PROTOTYPE_DEFECTS = {
    "missing array": lambda arrays: arrays[:2],
    "repeated class": corrupt(0, set_item(1, 1)),
    "label out of range": corrupt(0, set_item(0, 9)),
    "zero count": corrupt(2, set_item(0, 0)),
    "infinite mean": corrupt(1, set_item((0, 0), np.inf)),
    "wrong feature width": corrupt(1, lambda a: a[:, :1]),
    "int64 counts": corrupt(2, lambda a: a.astype(np.int64)),
}


@pytest.mark.parametrize("defect", list(PROTOTYPE_DEFECTS))
def test_malformed_prototypes_are_rejected(defect: str) -> None:
    arrays = PROTOTYPE_DEFECTS[defect](encode_prototypes(sample_prototypes(), "float16"))
    with pytest.raises(PayloadError):
        decode_prototypes(arrays, CLASSES, DIM)


def test_unknown_wire_dtype_is_named() -> None:
    with pytest.raises(ValueError, match="float16, float32|'float16', 'float32'"):
        encode_prototypes(sample_prototypes(), "bfloat16")
