"""Synthetic samples on the wire: encoding, decoding and validation.

A payload is a list of arrays in one of three layouts:

* ``[samples, labels]``: hard labels only;
* ``[samples, labels, probabilities]``: with soft labels, the generating client's
  class probabilities for every sample as ``float16`` ``(N, C)``, each row a
  distribution;
* ``[samples, labels, top_classes, top_probabilities]``: soft labels cut to the ``k``
  most probable classes (``uint8`` ``(N, k)`` class indices, distinct within a row,
  and their ``float16`` probabilities); the rest of each row's mass is spread evenly
  over the other classes when decoded.

``samples`` are images as ``uint8`` (values 0..255 for intensities in [0, 1]) or
``float16`` (features, or images whose moments must survive quantisation); ``labels``
are ``int32`` and name the class each sample was generated for. ``uint8`` images may
be quantised to fewer intensity levels (``levels``: 16 keeps every 17th value), which
costs a classifier nothing measurable and lets the payload compress: any layout may
travel deflated (:mod:`flower_synth.wire.deflate`, ``compression="deflate"``). Every payload
a server or client receives goes through :func:`validate_payload` before anything else
touches it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flower_synth.wire.deflate import (
    DeflateError,
    check_compression,
    deflate,
    inflate,
    is_deflated,
)

SAMPLE_DTYPES = ("uint8", "float16")
LABEL_DTYPE = np.dtype(np.int32)
PROBABILITY_DTYPE = np.dtype(np.float16)
TOP_CLASS_DTYPE = np.dtype(np.uint8)
# float16 rounding of a row of probabilities: its sum may miss 1 by this much.
PROBABILITY_SUM_TOLERANCE = 1e-2
# float16 images may leave [0, 1] (a Gaussian model's samples do), by at most this much
# on either side: room for honest samples, none for values that swamp a model.
FLOAT16_IMAGE_MARGIN = 8.0
# What is kept and passed on of float16 images lies within [0, 1] widened by this much
# (values beyond are clipped once accepted): a narrower band than the one accepted, so
# no client can drag the models that learn from its samples out of the accepted range
# and their senders' replies with them. A Gaussian model's honest samples hardly reach it.
FLOAT16_IMAGE_KEPT_MARGIN = 1.0


class PayloadError(ValueError):
    """A client payload is malformed; the message says what is wrong with it."""


def blend_targets(
    labels: np.ndarray, probabilities: np.ndarray | None, num_classes: int, hard_weight: float
) -> np.ndarray:
    """Training targets ``(N, num_classes)``, float32: the soft labels (rows
    renormalised) blended with the one-hot label each sample was generated for
    (``hard_weight`` of it), or one-hot labels where there are no soft labels."""
    one_hot = np.eye(num_classes, dtype=np.float32)[labels]
    if probabilities is None:
        return one_hot
    soft = probabilities.astype(np.float32)
    soft /= soft.sum(axis=1, keepdims=True)
    return (1.0 - hard_weight) * soft + hard_weight * one_hot


@dataclass(frozen=True)
class SampleBatch:
    """Decoded samples (float32, images in [0, 1]) with int64 labels and, where the
    sender gave them, float32 class probabilities ``(N, C)`` (soft labels)."""

    samples: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, indices: np.ndarray) -> SampleBatch:
        """The samples at ``indices``."""
        soft = None if self.probabilities is None else self.probabilities[indices]
        return SampleBatch(self.samples[indices], self.labels[indices], soft)

    def targets(self, num_classes: int, hard_weight: float = 0.0) -> np.ndarray:
        """Training targets (:func:`blend_targets`)."""
        return blend_targets(self.labels, self.probabilities, num_classes, hard_weight)

    @staticmethod
    def concatenate(batches: Sequence[SampleBatch], sample_shape: tuple[int, ...]) -> SampleBatch:
        """All ``batches`` in order (an empty batch of ``sample_shape`` if there are none).

        Soft labels are kept when some batch has them; batches without get one-hot rows.
        """
        if not batches:
            return SampleBatch(np.zeros((0, *sample_shape), np.float32), np.zeros(0, np.int64))
        soft = [b.probabilities for b in batches if b.probabilities is not None]
        probabilities = None
        if soft:
            num_classes = soft[0].shape[1]
            probabilities = np.concatenate([b.targets(num_classes) for b in batches])
        return SampleBatch(
            np.concatenate([b.samples for b in batches]),
            np.concatenate([b.labels for b in batches]),
            probabilities,
        )


@dataclass(frozen=True)
class WireBatch:
    """Samples as they travel: ``samples`` ``uint8`` (0..255 for intensities in [0, 1])
    or ``float16``, ``int32`` labels and, where the sender gave them, soft labels as
    ``float16`` rows ``(N, C)``.

    What the server keeps of every client's pool and cuts downloads from without
    decoding: a quarter of the memory of float32 samples for ``uint8`` images, and no
    re-quantisation on the way out.
    """

    samples: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held (samples, labels and soft labels)."""
        soft = 0 if self.probabilities is None else self.probabilities.nbytes
        return self.samples.nbytes + self.labels.nbytes + soft

    def targets(self, num_classes: int, hard_weight: float = 0.0) -> np.ndarray:
        """Training targets (:func:`blend_targets`)."""
        return blend_targets(self.labels, self.probabilities, num_classes, hard_weight)

    def take(self, indices: np.ndarray) -> WireBatch:
        """The samples at ``indices``."""
        soft = None if self.probabilities is None else self.probabilities[indices]
        return WireBatch(self.samples[indices], self.labels[indices], soft)

    def converted(self, dtype: str) -> WireBatch:
        """The batch with samples in ``dtype`` (``"uint8"`` or ``"float16"``): uint8
        images become float16 intensities; float16 ones are clipped to [0, 1] and
        quantised to 256 levels."""
        if self.samples.dtype.name == dtype:
            return self
        if dtype == "float16":
            samples = (self.samples.astype(np.float32) / 255.0).astype(np.float16)
        elif dtype == "uint8":
            samples = quantize(self.samples)
        else:
            raise ValueError(f"unknown sample dtype {dtype!r}; choose one of {SAMPLE_DTYPES}")
        return WireBatch(samples, self.labels, self.probabilities)

    def decode(self) -> SampleBatch:
        """float32 samples (images in [0, 1]), int64 labels and float32 soft labels,
        each row renormalised to sum to 1."""
        samples = self.samples.astype(np.float32)
        if self.samples.dtype == np.uint8:
            samples /= 255.0
        probabilities = None
        if self.probabilities is not None:
            probabilities = self.probabilities.astype(np.float32)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
        return SampleBatch(samples, self.labels.astype(np.int64), probabilities)

    def arrays(self, top_k: int = 0) -> list[np.ndarray]:
        """The payload layout (module docstring): soft labels as full rows, or cut to
        the ``top_k`` most probable classes (``0``, or ``k`` not below the number of
        classes: full rows)."""
        arrays = [self.samples, self.labels.astype(LABEL_DTYPE)]
        if self.probabilities is None:
            return arrays
        num_classes = self.probabilities.shape[1]
        if not 0 < top_k < num_classes:
            return [*arrays, self.probabilities.astype(PROBABILITY_DTYPE)]
        if num_classes > np.iinfo(TOP_CLASS_DTYPE).max + 1:
            raise ValueError(f"top-k soft labels need at most 256 classes, got {num_classes}")
        top = np.argsort(-self.probabilities.astype(np.float32), axis=1, kind="stable")[:, :top_k]
        top_probabilities = np.take_along_axis(self.probabilities, top, axis=1)
        return [*arrays, top.astype(TOP_CLASS_DTYPE), top_probabilities.astype(PROBABILITY_DTYPE)]

    @staticmethod
    def concatenate(
        batches: Sequence[WireBatch], sample_shape: tuple[int, ...], dtype: str = "uint8"
    ) -> WireBatch:
        """All ``batches`` in order, samples in the first batch's dtype (``dtype`` for
        an empty result); soft labels are kept when some batch has them, batches
        without get one-hot rows."""
        if not batches:
            return WireBatch(np.zeros((0, *sample_shape), dtype), np.zeros(0, LABEL_DTYPE))
        target = batches[0].samples.dtype.name
        soft = [b.probabilities for b in batches if b.probabilities is not None]
        probabilities = None
        if soft:
            eye = np.eye(soft[0].shape[1], dtype=PROBABILITY_DTYPE)
            probabilities = np.concatenate(
                [eye[b.labels] if b.probabilities is None else b.probabilities for b in batches]
            )
        return WireBatch(
            np.concatenate([b.converted(target).samples for b in batches]),
            np.concatenate([b.labels for b in batches]).astype(LABEL_DTYPE),
            probabilities,
        )


def quantize(images: np.ndarray, levels: int = 256) -> np.ndarray:
    """Intensities in [0, 1] (clipped) as ``uint8`` 0..255, rounded to ``levels``
    evenly spaced values (256: every value; 16: multiples of 17)."""
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must lie in [2, 256], got {levels}")
    steps = np.round(np.clip(images.astype(np.float32), 0.0, 1.0) * (levels - 1))
    return np.round(steps * (255.0 / (levels - 1))).astype(np.uint8)


def to_wire(batch: SampleBatch, dtype: str, levels: int = 256) -> WireBatch:
    """``batch`` in its wire form: samples as ``"uint8"`` (images clipped to [0, 1] and
    quantised to ``levels`` of 256 values) or ``"float16"`` (unclipped: features, or
    images whose moments must survive), soft labels as float16."""
    if dtype == "uint8":
        samples = quantize(batch.samples, levels)
    elif dtype == "float16":
        samples = batch.samples.astype(np.float16)
    else:
        choices = ", ".join(SAMPLE_DTYPES)
        raise ValueError(f"unknown sample dtype {dtype!r}; choose one of {choices}")
    soft = None if batch.probabilities is None else batch.probabilities.astype(PROBABILITY_DTYPE)
    return WireBatch(samples, batch.labels.astype(LABEL_DTYPE), soft)


def encode_samples(
    samples: np.ndarray,
    labels: np.ndarray,
    dtype: str,
    probabilities: np.ndarray | None = None,
    top_k: int = 0,
    levels: int = 256,
    compression: str = "none",
) -> list[np.ndarray]:
    """The arrays to send (layouts in the module docstring; see :func:`to_wire` for
    ``dtype`` and ``levels``, :meth:`WireBatch.arrays` for ``top_k``).

    Args:
        samples: float array; images in [0, 1].
        labels: integer class labels.
        dtype: ``"uint8"`` or ``"float16"``.
        probabilities: ``(N, C)`` soft labels to send with the samples, or None.
        top_k: send only the ``k`` most probable classes of each row.
        levels: intensity levels of ``uint8`` images (2 to 256).
        compression: ``"deflate"`` or ``"none"`` (:func:`compressed`).
    """
    wire = to_wire(SampleBatch(samples, labels, probabilities), dtype, levels)
    return compressed(wire.arrays(top_k), compression)


def compressed(arrays: Sequence[np.ndarray], compression: str) -> list[np.ndarray]:
    """A payload's ``arrays`` as they travel: deflated (``"deflate"``, see
    :mod:`flower_synth.wire.deflate`; an empty payload stays empty) or as they are
    (``"none"``). :func:`validate_wire` takes either."""
    check_compression(compression)
    if compression == "none" or not arrays:
        return list(arrays)
    return deflate(arrays)


def max_payload_bytes(max_samples: int, sample_shape: tuple[int, ...], num_classes: int) -> int:
    """The most data bytes a valid payload of ``max_samples`` samples can hold: float16
    samples, int32 labels and full float16 soft labels (top-k ones take less)."""
    per_sample = 2 * int(np.prod(sample_shape)) + LABEL_DTYPE.itemsize + 2 * num_classes
    return max_samples * per_sample


def decode_samples(arrays: Sequence[np.ndarray], num_classes: int | None = None) -> SampleBatch:
    """The inverse of :func:`encode_samples`, deflated payloads included (no
    validation and no size bound: see :func:`validate_payload` for what others send).

    ``num_classes`` is needed to decode top-k soft labels (full rows carry it).
    """
    if is_deflated(arrays):
        arrays = inflate(arrays, max_bytes=sys.maxsize)
    return wire_batch(arrays, num_classes).decode()


def wire_batch(arrays: Sequence[np.ndarray], num_classes: int | None = None) -> WireBatch:
    """A payload's arrays as a :class:`WireBatch`, top-k soft labels expanded to full
    rows (no validation: see :func:`validate_wire`)."""
    samples, labels = arrays[0], arrays[1]
    probabilities = None
    if len(arrays) == 3:
        probabilities = arrays[2].astype(PROBABILITY_DTYPE)
    elif len(arrays) == 4:
        if num_classes is None:
            raise ValueError("decoding top-k soft labels needs num_classes")
        full = expand_top_k(arrays[2], arrays[3], num_classes)
        probabilities = (full / full.sum(axis=1, keepdims=True)).astype(PROBABILITY_DTYPE)
    return WireBatch(samples, labels.astype(LABEL_DTYPE), probabilities)


def expand_top_k(classes: np.ndarray, probabilities: np.ndarray, num_classes: int) -> np.ndarray:
    """Full ``(N, num_classes)`` rows from top-k classes and probabilities: the mass
    the top ``k`` leave is spread evenly over the other classes."""
    rows, k = classes.shape
    full = np.zeros((rows, num_classes), np.float32)
    given = probabilities.astype(np.float32)
    rest = np.clip(1.0 - given.sum(axis=1, keepdims=True), 0.0, None) / max(num_classes - k, 1)
    full += rest
    np.put_along_axis(full, classes.astype(np.int64), given, axis=1)
    return full


def validate_payload(
    arrays: Sequence[np.ndarray],
    sample_shape: tuple[int, ...],
    num_classes: int,
    max_samples: int,
) -> SampleBatch:
    """Check a received payload and decode it (:func:`validate_wire`, then
    :meth:`WireBatch.decode`)."""
    return validate_wire(arrays, sample_shape, num_classes, max_samples).decode()


def validate_wire(
    arrays: Sequence[np.ndarray],
    sample_shape: tuple[int, ...],
    num_classes: int,
    max_samples: int,
) -> WireBatch:
    """Check a received payload; return it in its wire form.

    A deflated payload is inflated first (:func:`~flower_synth.wire.deflate.inflate`, refused
    if it announces more than :func:`max_payload_bytes` of ``max_samples``).

    Raises:
        PayloadError: a deflated payload that does not inflate to what its header
            announces; wrong number of arrays, dtypes or shapes; labels outside
            ``[0, num_classes)``; non-finite values; float16 images outside [0, 1]
            widened by :data:`FLOAT16_IMAGE_MARGIN` (accepted ones are clipped to [0, 1]
            widened by :data:`FLOAT16_IMAGE_KEPT_MARGIN`); no samples or more than
            ``max_samples``; soft labels that are not distributions over the classes.
    """
    if is_deflated(arrays):
        try:
            arrays = inflate(arrays, max_payload_bytes(max_samples, sample_shape, num_classes))
        except DeflateError as error:
            raise PayloadError(str(error)) from None
    if len(arrays) not in (2, 3, 4):
        raise PayloadError(
            f"expected 2 to 4 arrays [samples, labels, soft labels...], got {len(arrays)}"
        )
    samples, labels = arrays[0], arrays[1]
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
    if samples.dtype == np.float16:
        image = len(sample_shape) == 3
        _check_float16_samples(samples, image)
        if image:
            low, high = -FLOAT16_IMAGE_KEPT_MARGIN, 1.0 + FLOAT16_IMAGE_KEPT_MARGIN
            arrays = [np.clip(samples, low, high), *arrays[1:]]
    if len(arrays) == 3:
        _check_probability_rows(arrays[2], len(labels), num_classes)
    if len(arrays) == 4:
        _check_top_k(arrays[2], arrays[3], len(labels), num_classes)
    return wire_batch(arrays, num_classes)


def _check_float16_samples(samples: np.ndarray, image: bool) -> None:
    if not np.isfinite(samples).all():
        raise PayloadError("samples contain NaN or infinite values")
    low, high = -FLOAT16_IMAGE_MARGIN, 1.0 + FLOAT16_IMAGE_MARGIN
    if image and (samples.min() < low or samples.max() > high):
        raise PayloadError(
            f"float16 image samples must lie in [{low:g}, {high:g}] (intensities in [0, 1]), "
            f"got [{float(samples.min()):g}, {float(samples.max()):g}]"
        )


def _check_probability_values(probabilities: np.ndarray, shape: tuple[int, int]) -> None:
    if probabilities.dtype != PROBABILITY_DTYPE or probabilities.shape != shape:
        raise PayloadError(
            f"soft labels must be float16 of shape {shape}, "
            f"got {probabilities.dtype} {probabilities.shape}"
        )
    if not np.isfinite(probabilities).all():
        raise PayloadError("soft labels contain NaN or infinite values")
    if probabilities.min() < 0 or probabilities.max() > 1:
        raise PayloadError(
            f"soft labels must lie in [0, 1], got [{float(probabilities.min()):g}, "
            f"{float(probabilities.max()):g}]"
        )


def _check_probability_rows(probabilities: np.ndarray, rows: int, num_classes: int) -> None:
    _check_probability_values(probabilities, (rows, num_classes))
    sums = probabilities.astype(np.float64).sum(axis=1)
    worst = float(np.abs(sums - 1.0).max())
    if worst > PROBABILITY_SUM_TOLERANCE:
        raise PayloadError(
            f"every soft-label row must sum to 1 (within {PROBABILITY_SUM_TOLERANCE}); "
            f"a row is off by {worst:.3g}"
        )


def _check_top_k(
    classes: np.ndarray, probabilities: np.ndarray, rows: int, num_classes: int
) -> None:
    if classes.dtype != TOP_CLASS_DTYPE or classes.ndim != 2 or len(classes) != rows:
        raise PayloadError(
            f"top-k classes must be uint8 of shape ({rows}, k), got {classes.dtype} {classes.shape}"
        )
    k = classes.shape[1]
    if not 0 < k < num_classes:
        raise PayloadError(f"top-k soft labels need 0 < k < {num_classes}, got k={k}")
    if classes.max() >= num_classes:
        raise PayloadError(f"top-k classes must lie in [0, {num_classes}), got {classes.max()}")
    ordered = np.sort(classes, axis=1)
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        raise PayloadError("top-k classes must be distinct within a row")
    _check_probability_values(probabilities, (rows, k))
    excess = float(probabilities.astype(np.float64).sum(axis=1).max()) - 1.0
    if excess > PROBABILITY_SUM_TOLERANCE:
        raise PayloadError(
            f"top-k soft labels must sum to at most 1; a row sums to {1 + excess:.3g}"
        )
