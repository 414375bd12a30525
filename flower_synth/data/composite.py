"""A second modality made from the first: every item drawn over a procedural background.

A *composited* image ``x`` is a clean item ``s`` (a Fashion-MNIST image, say) laid over
a background ``b`` of one of :data:`BACKGROUNDS` kinds ``d`` (stripes at any angle, a
checkerboard, rings, smooth blobs, a grid of dots; random frequency, phase and centre),
pixel by pixel the brighter of the two: ``x = max(s, b)``. Backgrounds reach at most
:data:`BACKGROUND_PEAK`, so an item's bright pixels stay visible and its dim ones
(linings, shadows) may be hidden. The clean item is the latent variable a composited
client's model recovers; :func:`composite_images` is deterministic by seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache

import numpy as np

from flower_synth.data.client_data import ClientData
from flower_synth.data.federated import DataSource, load_global_test
from flower_synth.data.image_dataset import ImageDataset

BACKGROUND_PEAK = 0.6  # brightest background intensity, in [0, 1]
COMPOSITE_STREAM = 0xC0A1  # keeps the background draws apart from every other draw

Texture = Callable[[np.ndarray, np.ndarray, np.random.Generator, int], np.ndarray]


def _stripes(y: np.ndarray, x: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    angle, frequency = rng.uniform(0, np.pi, (n, 1, 1)), rng.uniform(0.08, 0.25, (n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    along = x * np.cos(angle) + y * np.sin(angle)
    return 0.5 + 0.5 * np.sin(2 * np.pi * frequency * along + phase)


def _checks(y: np.ndarray, x: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    size = rng.integers(3, 8, (n, 1, 1))
    dy, dx = rng.integers(0, size), rng.integers(0, size)
    return (((y + dy) // size + (x + dx) // size) % 2).astype(np.float64)


def _rings(y: np.ndarray, x: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    cy, cx = rng.uniform(-8, 36, (2, n, 1, 1))
    frequency, phase = rng.uniform(0.1, 0.3, (n, 1, 1)), rng.uniform(0, 2 * np.pi, (n, 1, 1))
    return 0.5 + 0.5 * np.sin(2 * np.pi * frequency * np.hypot(y - cy, x - cx) + phase)


def _blobs(y: np.ndarray, x: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform noise on a coarse grid (3 to 5 cells a side), bilinearly interpolated."""
    cells = rng.integers(3, 6, n)
    out = np.empty((n, *y.shape))
    for count in np.unique(cells):
        rows = np.flatnonzero(cells == count)
        grid = rng.uniform(0, 1, (len(rows), count + 1, count + 1))
        gy, gx = y * count / (y.max() + 1), x * count / (x.max() + 1)
        iy, ix = gy.astype(int), gx.astype(int)
        fy, fx = gy - iy, gx - ix
        top = grid[:, iy, ix] * (1 - fx) + grid[:, iy, ix + 1] * fx
        bottom = grid[:, iy + 1, ix] * (1 - fx) + grid[:, iy + 1, ix + 1] * fx
        out[rows] = top * (1 - fy) + bottom * fy
    return out


def _dots(y: np.ndarray, x: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    spacing = rng.integers(4, 8, (n, 1, 1))
    dy, dx = rng.uniform(0, spacing), rng.uniform(0, spacing)
    ry = (y + dy) % spacing - spacing / 2
    rx = (x + dx) % spacing - spacing / 2
    return (np.hypot(ry, rx) <= spacing / 4).astype(np.float64)


BACKGROUNDS: dict[str, Texture] = {
    "stripes": _stripes,
    "checks": _checks,
    "rings": _rings,
    "blobs": _blobs,
    "dots": _dots,
}


def backgrounds(
    count: int, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` backgrounds, float ``(count, height, width)`` in ``[0, BACKGROUND_PEAK]``,
    and the kind of each (an index into :data:`BACKGROUNDS`), drawn uniformly."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    kinds = rng.integers(0, len(BACKGROUNDS), count)
    images = np.empty((count, height, width), dtype=np.float32)
    for kind, texture in enumerate(BACKGROUNDS.values()):
        rows = np.flatnonzero(kinds == kind)
        images[rows] = BACKGROUND_PEAK * texture(y, x, rng, len(rows))
    return images, kinds


def composite_images(items: np.ndarray, seed: int | list[int]) -> np.ndarray:
    """Every ``uint8`` image of ``items`` ``(N, C, H, W)`` laid over its own background
    (the same background on every channel): ``max(item, background)``, ``uint8``."""
    rng = np.random.default_rng([COMPOSITE_STREAM, *np.atleast_1d(seed).tolist()])
    if items.dtype != np.uint8 or items.ndim != 4:
        raise ValueError(f"items must be uint8 (N, C, H, W), got {items.dtype} {items.shape}")
    drawn, _ = backgrounds(len(items), items.shape[2], items.shape[3], rng)
    levels = np.rint(drawn * 255).astype(np.uint8)[:, None]
    return np.maximum(items, levels)


def composite_dataset(dataset: ImageDataset, seed: int | list[int]) -> ImageDataset:
    """``dataset`` with every image composited (:func:`composite_images`), labels kept."""
    return replace(dataset, images=composite_images(dataset.images, seed))


GLOBAL_TEST_STREAM = 3  # a client's own streams are 0 (train), 1 (test), 2 (unlabelled)


@lru_cache(maxsize=2)
def composite_test(source: DataSource, seed: int) -> ImageDataset:
    """The global test set of ``source`` as every composited client of a run with
    ``seed`` sees it; composited once per process (Ray reuses its workers across
    clients and rounds, and every composited client scores the same images)."""
    return composite_dataset(load_global_test(source), [seed, GLOBAL_TEST_STREAM])


def composite_client_data(data: ClientData, seed: int) -> ClientData:
    """A client's training, local test and unlabelled images, each composited with
    its own stream of ``seed``: the client that sees only composited images."""
    unlabelled = data.unlabelled
    if unlabelled is not None:
        unlabelled = composite_images(unlabelled, [seed, 2])
    return replace(
        data,
        train=composite_dataset(data.train, [seed, 0]),
        test=composite_dataset(data.test, [seed, 1]),
        unlabelled=unlabelled,
    )
