"""Synthetic samples on the wire: encoding, decoding and validation.

A payload is two arrays, ``[samples, labels]``: images as ``uint8`` (values 0..255
for pixel intensities in [0, 1]) or features as ``float16``, and ``int32`` labels.
The server validates every payload it receives before it enters a pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SAMPLE_DTYPES = ("uint8", "float16")
LABEL_DTYPE = np.dtype(np.int32)


class PayloadError(ValueError):
    """A client payload is malformed; the message says what is wrong with it."""


@dataclass(frozen=True)
class SampleBatch:
    """Decoded samples (float32, images in [0, 1]) with int64 labels."""

    samples: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, indices: np.ndarray) -> SampleBatch:
        """The samples at ``indices``."""
        return SampleBatch(self.samples[indices], self.labels[indices])

    @staticmethod
    def concatenate(batches: Sequence[SampleBatch], sample_shape: tuple[int, ...]) -> SampleBatch:
        """All ``batches`` in order (an empty batch of ``sample_shape`` if there are none)."""
        if not batches:
            return SampleBatch(np.zeros((0, *sample_shape), np.float32), np.zeros(0, np.int64))
        return SampleBatch(
            np.concatenate([b.samples for b in batches]),
            np.concatenate([b.labels for b in batches]),
        )


def encode_samples(samples: np.ndarray, labels: np.ndarray, dtype: str) -> list[np.ndarray]:
    """``[samples, labels]`` ready to send.

    Args:
        samples: float array; images in [0, 1].
        labels: integer class labels.
        dtype: ``"uint8"`` (clipped to [0, 1] and quantised to 256 levels: images) or
            ``"float16"`` (unclipped: features, or images whose moments must survive).
    """
    if dtype == "uint8":
        encoded = np.round(np.clip(samples, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif dtype == "float16":
        encoded = samples.astype(np.float16)
    else:
        choices = ", ".join(SAMPLE_DTYPES)
        raise ValueError(f"unknown sample dtype {dtype!r}; choose one of {choices}")
    return [encoded, labels.astype(LABEL_DTYPE)]


def decode_samples(arrays: Sequence[np.ndarray]) -> SampleBatch:
    """The inverse of :func:`encode_samples` (no validation: see :func:`validate_payload`)."""
    samples, labels = arrays
    decoded = samples.astype(np.float32) / 255.0 if samples.dtype == np.uint8 else samples
    return SampleBatch(decoded.astype(np.float32), labels.astype(np.int64))


def validate_payload(
    arrays: Sequence[np.ndarray],
    sample_shape: tuple[int, ...],
    num_classes: int,
    max_samples: int,
) -> SampleBatch:
    """Check a received payload and decode it.

    Raises:
        PayloadError: wrong number of arrays, dtypes or shapes; labels outside
            ``[0, num_classes)``; non-finite values; no samples or more than
            ``max_samples``.
    """
    if len(arrays) != 2:
        raise PayloadError(f"expected 2 arrays [samples, labels], got {len(arrays)}")
    samples, labels = arrays
    if samples.dtype.name not in SAMPLE_DTYPES:
        raise PayloadError(f"samples must be uint8 or float16, got {samples.dtype}")
    if tuple(samples.shape[1:]) != tuple(sample_shape):
        raise PayloadError(
            f"samples must have shape (N, {', '.join(map(str, sample_shape))}), got {samples.shape}"
        )
    if labels.dtype != LABEL_DTYPE or labels.shape != samples.shape[:1]:
        raise PayloadError(
            f"labels must be int32 of shape ({samples.shape[0]},), "
            f"got {labels.dtype} {labels.shape}"
        )
    if not 0 < len(labels) <= max_samples:
        raise PayloadError(f"payload holds {len(labels)} samples; allowed: 1 to {max_samples}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise PayloadError(
            f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    if samples.dtype == np.float16 and not np.isfinite(samples).all():
        raise PayloadError("samples contain NaN or infinite values")
    return decode_samples(arrays)
