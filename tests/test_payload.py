"""Payload codec and validation of synthetic samples."""

from __future__ import annotations

import numpy as np
import pytest

from flower_synth.wire.payload import (
    PayloadError,
    SampleBatch,
    WireBatch,
    decode_samples,
    encode_samples,
    validate_payload,
    validate_wire,
)

SHAPE = (1, 8, 8)


def valid_arrays(n: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8), np.arange(n, dtype=np.int32) % 10]


def soft_labels(n: int = 5, classes: int = 10) -> np.ndarray:
    """Rows of a softmax: each a distribution, the true class (i % 10) most likely."""
    logits = np.random.default_rng(2).normal(size=(n, classes))
    logits[np.arange(n), np.arange(n) % classes] += 3.0
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


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


def test_soft_labels_round_trip_in_float16() -> None:
    images, labels = valid_arrays()
    probabilities = soft_labels()
    arrays = encode_samples(images / 255.0, labels, "uint8", probabilities)
    assert [a.dtype for a in arrays] == [np.uint8, np.int32, np.float16]
    assert arrays[2].nbytes == 5 * 10 * 2  # two bytes per class per sample
    batch = validate_payload(arrays, SHAPE, num_classes=10, max_samples=10)
    assert np.allclose(batch.probabilities, probabilities, atol=1e-3)
    assert np.allclose(batch.probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert np.allclose(batch.targets(10), batch.probabilities, atol=1e-6)


def test_top_k_soft_labels_keep_the_top_classes_and_spread_the_rest() -> None:
    images, labels = valid_arrays()
    probabilities = soft_labels()
    arrays = encode_samples(images / 255.0, labels, "uint8", probabilities, top_k=2)
    assert arrays[2].dtype == np.uint8 and arrays[2].shape == (5, 2)
    assert arrays[3].dtype == np.float16 and arrays[3].shape == (5, 2)
    batch = validate_payload(arrays, SHAPE, num_classes=10, max_samples=10)
    top = np.argsort(-probabilities, axis=1)[:, :2]
    assert np.array_equal(np.argsort(-batch.probabilities, axis=1)[:, :2], top)
    kept = np.take_along_axis(probabilities, top, axis=1)
    assert np.allclose(np.take_along_axis(batch.probabilities, top, axis=1), kept, atol=1e-3)
    rest = (1 - kept.sum(axis=1)) / 8
    others = np.ones_like(probabilities, dtype=bool)
    np.put_along_axis(others, top, False, axis=1)
    assert np.allclose(batch.probabilities[others].reshape(5, 8), rest[:, None], atol=1e-3)


def test_hard_and_soft_batches_concatenate_with_one_hot_rows() -> None:
    hard = decode_samples(valid_arrays(3))
    soft = decode_samples(encode_samples(hard.samples, hard.labels, "uint8", soft_labels(3)))
    both = SampleBatch.concatenate([hard, soft], SHAPE)
    assert both.probabilities.shape == (6, 10)
    assert np.array_equal(both.probabilities[:3], np.eye(10)[hard.labels])
    assert np.allclose(both.probabilities[3:], soft.probabilities)


def test_float16_images_may_leave_the_unit_range_within_the_margin() -> None:
    images = np.full((2, *SHAPE), -0.7, np.float16)
    batch = validate_payload([images, np.zeros(2, np.int32)], SHAPE, 10, max_samples=2)
    assert batch.samples.min() == pytest.approx(-0.7, abs=1e-3)


def corrupt(kind: str) -> list[np.ndarray]:
    images, labels = valid_arrays()
    probabilities = soft_labels().astype(np.float16)
    top = encode_samples(images / 255.0, labels, "uint8", soft_labels(), top_k=3)
    if kind == "count":
        return [images]
    if kind == "too-many-arrays":
        return [images, labels, probabilities, probabilities, probabilities]
    if kind == "float16-poison":
        return [np.full(images.shape, 6e4, np.float16), labels]
    if kind == "float16-negative-poison":
        return [np.full(images.shape, -1e4, np.float16), labels]
    if kind == "soft-dtype":
        return [images, labels, probabilities.astype(np.float32)]
    if kind == "soft-shape":
        return [images, labels, probabilities[:, :9]]
    if kind == "soft-nan":
        probabilities[1, 2] = np.nan
        return [images, labels, probabilities]
    if kind == "soft-negative":
        probabilities[0, 0] = -0.5
        probabilities[0, 1] += 0.5
        return [images, labels, probabilities]
    if kind == "soft-sum":
        return [images, labels, (probabilities * 0.8).astype(np.float16)]
    if kind == "top-duplicate":
        top[2][0, 1] = top[2][0, 0]
        return top
    if kind == "top-range":
        top[2][0, 0] = 12
        return top
    if kind == "top-sum":
        top[3][:] = 0.6
        return top
    if kind == "top-k-size":
        return [images, labels, np.tile(np.arange(10, dtype=np.uint8), (5, 1)), probabilities]
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
        ("count", "expected 2 to 4 arrays"),
        ("too-many-arrays", "expected 2 to 4 arrays"),
        ("float16-poison", r"must lie in \[-8, 9\]"),
        ("float16-negative-poison", r"must lie in \[-8, 9\]"),
        ("soft-dtype", "float16 of shape"),
        ("soft-shape", r"float16 of shape \(5, 10\)"),
        ("soft-nan", "soft labels contain NaN"),
        ("soft-negative", r"must lie in \[0, 1\]"),
        ("soft-sum", "must sum to 1"),
        ("top-duplicate", "distinct"),
        ("top-range", r"top-k classes must lie in \[0, 10\)"),
        ("top-sum", "at most 1"),
        ("top-k-size", "0 < k < 10"),
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


def test_targets_blend_soft_labels_with_the_generated_class() -> None:
    hard = decode_samples(valid_arrays(3))
    soft = decode_samples(encode_samples(hard.samples, hard.labels, "uint8", soft_labels(3)))
    blended = soft.targets(10, hard_weight=0.3)
    expected = 0.7 * soft.probabilities + 0.3 * np.eye(10)[soft.labels]
    assert np.allclose(blended, expected) and np.allclose(blended.sum(axis=1), 1.0)
    assert np.allclose(soft.targets(10), soft.probabilities, atol=1e-6)
    no_soft_labels = hard.targets(10, hard_weight=0.3)
    assert np.array_equal(no_soft_labels, np.eye(10)[hard.labels])


def test_a_wire_batch_is_sent_on_as_it_arrived() -> None:
    """The server keeps what it validated in the wire dtype and re-sends it unchanged,
    top-k soft labels recut from its float16 rows exactly as the sender cut them."""
    images, labels = valid_arrays()
    arrays = encode_samples(images / 255.0, labels, "uint8", soft_labels())
    kept = validate_wire(arrays, SHAPE, num_classes=10, max_samples=10)
    assert kept.samples.dtype == np.uint8 and kept.probabilities.dtype == np.float16
    for sent, original in zip(kept.arrays(), arrays, strict=True):
        assert np.array_equal(sent, original)
    top = encode_samples(images / 255.0, labels, "uint8", soft_labels(), top_k=3)
    for sent, original in zip(kept.arrays(top_k=3), top, strict=True):
        assert np.array_equal(sent, original)
    assert kept.nbytes == images.nbytes + 4 * 5 + 2 * 5 * 10


def test_wire_batches_of_both_dtypes_concatenate_and_convert() -> None:
    images, labels = valid_arrays(4)
    uint8 = WireBatch(images, labels)
    half = uint8.converted("float16")
    assert half.samples.dtype == np.float16
    assert np.array_equal(half.converted("uint8").samples, images)  # 256 levels survive
    both = WireBatch.concatenate([uint8, half], SHAPE)
    assert both.samples.dtype == np.uint8 and len(both) == 8
    expected = np.concatenate([images, images]).astype(np.float32) / 255.0
    assert np.array_equal(both.decode().samples, expected)
