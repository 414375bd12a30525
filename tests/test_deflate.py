"""Deflated payloads: exact round trip, fewer bytes, and every malformed blob refused
before it can allocate what it announces."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from flower_synth.wire.deflate import DeflateError, deflate, inflate, is_deflated
from flower_synth.wire.payload import PayloadError, encode_samples, quantize, validate_wire

SHAPE = (1, 8, 8)


def samples(n: int = 50) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.random((n, *SHAPE)) * (rng.random((n, *SHAPE)) > 0.6)  # mostly background
    probabilities = rng.dirichlet(np.ones(10), n)
    return encode_samples(images, rng.integers(0, 10, n), "uint8", probabilities, levels=16)


def test_deflate_round_trips_exactly_and_saves_bytes() -> None:
    arrays = samples()
    packed = deflate(arrays)
    assert is_deflated(packed) and not is_deflated(arrays)
    for original, back in zip(arrays, inflate(packed, max_bytes=10**6), strict=True):
        assert back.dtype == original.dtype and np.array_equal(back, original)
    assert sum(a.nbytes for a in packed) < 0.65 * sum(a.nbytes for a in arrays)
    assert deflate(arrays[:1])[1].nbytes < 0.5 * arrays[0].nbytes  # 16-level images


def test_sixteen_levels_are_multiples_of_seventeen() -> None:
    values = quantize(np.linspace(0, 1, 1000), levels=16)
    assert sorted(set(values.tolist())) == list(range(0, 256, 17))
    assert np.abs(values / 255.0 - np.linspace(0, 1, 1000)).max() <= 1 / 30 + 1e-6
    with pytest.raises(ValueError, match="levels"):
        quantize(np.zeros(3), levels=1)


def header_with(shape: tuple[int, ...]) -> np.ndarray:
    header, _ = deflate([np.zeros((1, *SHAPE), np.uint8)])
    header = header.copy()
    header[3 : 3 + len(shape)] = shape
    return header


@pytest.mark.parametrize(
    ("kind", "arrays", "reason"),
    [
        (
            "a bomb: 4 TB announced",
            [header_with((2**20, 1, 2**21, 2**21)), np.zeros(10, np.uint8)],
            "announces",
        ),
        (
            "a blob that is not deflate",
            [header_with((1, 1, 8, 8)), np.ones(9, np.uint8)],
            "inflate",
        ),
        (
            "a blob shorter than announced",
            [header_with((2, 1, 8, 8)), np.frombuffer(zlib.compress(bytes(64)), np.uint8)],
            "announced",
        ),
        (
            "an unknown dtype code",
            [
                np.array([deflate([np.zeros(1, np.uint8)])[0][0], 1, 9, 1, -1, -1, -1]),
                np.zeros(1, np.uint8),
            ],
            "bad array entry",
        ),
        (
            "a blob of another dtype",
            [header_with((1, 1, 8, 8)), np.zeros(3, np.float16)],
            "blob must be 1-D uint8",
        ),
    ],
)
def test_malformed_deflated_payloads_are_refused(kind, arrays, reason) -> None:
    with pytest.raises(DeflateError, match=reason):
        inflate(arrays, max_bytes=10**6)
    with pytest.raises(PayloadError, match=reason):  # as the server and clients see it
        validate_wire(arrays, SHAPE, 10, max_samples=100)


def test_a_deflated_payload_larger_than_its_cap_is_refused_before_inflating() -> None:
    packed = deflate(samples(50))
    assert len(validate_wire(packed, SHAPE, 10, max_samples=50)) == 50
    with pytest.raises(PayloadError, match="announces"):
        validate_wire(packed, SHAPE, 10, max_samples=5)
