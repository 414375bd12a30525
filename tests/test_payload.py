"""Payload codec and validation of synthetic samples."""

from __future__ import annotations

import numpy as np
import pytest

from flower_synth.payload import PayloadError, decode_samples, encode_samples, validate_payload

SHAPE = (1, 8, 8)


def valid_arrays(n: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8), np.arange(n, dtype=np.int32) % 10]


def test_uint8_images_round_trip_losslessly() -> None:
    images, labels = valid_arrays()
    batch = decode_samples([images, labels])
    again = encode_samples(batch.samples, batch.labels, "uint8")
    assert np.array_equal(again[0], images)
    assert np.array_equal(again[1], labels)
    assert again[0].nbytes == images.size  # one byte per pixel on the wire


def test_float16_keeps_values_within_half_precision() -> None:
    samples = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    decoded = decode_samples(encode_samples(samples, np.zeros(4, int), "float16"))
    assert np.allclose(decoded.samples, samples, atol=2e-3)
    assert decoded.samples.dtype == np.float32


def test_uint8_clips_to_unit_range() -> None:
    encoded, _ = encode_samples(np.array([[-0.5, 0.5, 1.5]]), np.zeros(1, int), "uint8")
    assert encoded.tolist() == [[0, 128, 255]]


def test_valid_payload_passes() -> None:
    batch = validate_payload(valid_arrays(), SHAPE, num_classes=10, max_samples=10)
    assert len(batch) == 5 and batch.samples.max() <= 1.0


def corrupt(kind: str) -> list[np.ndarray]:
    images, labels = valid_arrays()
    if kind == "count":
        return [images]
    if kind == "dtype":
        return [images.astype(np.float64), labels]
    if kind == "shape":
        return [images.reshape(5, 1, 4, 16), labels]
    if kind == "label-dtype":
        return [images, labels.astype(np.float32)]
    if kind == "label-length":
        return [images, labels[:3]]
    if kind == "label-range":
        return [images, labels + 7]
    if kind == "non-finite":
        floats = images.astype(np.float16)
        floats[0, 0, 0, 0] = np.nan
        return [floats, labels]
    if kind == "too-many":
        images, labels = valid_arrays(11)
        return [images, labels]
    if kind == "empty":
        return [images[:0], labels[:0]]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("count", "expected 2 arrays"),
        ("dtype", "uint8 or float16"),
        ("shape", r"shape \(N, 1, 8, 8\)"),
        ("label-dtype", "int32"),
        ("label-length", "int32 of shape"),
        ("label-range", r"labels must lie in \[0, 10\)"),
        ("non-finite", "NaN or infinite"),
        ("too-many", "allowed: 1 to 10"),
        ("empty", "allowed: 1 to 10"),
    ],
)
def test_each_malformed_kind_is_rejected(kind: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        validate_payload(corrupt(kind), SHAPE, num_classes=10, max_samples=10)
